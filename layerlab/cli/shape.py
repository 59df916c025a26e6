"""``layerlab shape``: output shapes, formulas, params, MACs and receptive fields of a layer stack.

Pure arithmetic (:mod:`layerlab.arith`): this command never imports torch, so it answers at once.

Examples::

    layerlab shape 3x64x64 "Conv2d(64, 4, stride=2, padding=1)" "LeakyReLU(0.2)" "Conv2d(128, 4, 2, 1)"
    layerlab shape 1x28x28 "Conv2d(8, 3)" "MaxPool2d(2)" "Flatten()" "Linear(10)" --json
    layerlab shape --solve 32 64 --kernel 4

Layer strings are torch constructor calls whose *input* size is inferred from the running shape:
positional arguments start at the output size (``Linear(10)``, ``Conv2d(128, 4, 2, 1)`` = out,
kernel, stride, padding); pin an input size by keyword (``Linear(10, in_features=4096)``). They are
parsed safely (literals only, never evaluated). A stack that does not fit exits with status 2 and
arith's explanation of which layer, what it expected and why.
"""

from __future__ import annotations

import argparse
import json
import re

from layerlab.cli.helptext import add_command

HELP = "shapes, formulas, params, MACs and receptive fields of a layer stack (no torch)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "shape", HELP, __doc__)
    stack = parser.add_argument_group("layer stack")
    stack.add_argument("input", nargs="?", metavar="INPUT", help="per-sample input shape, e.g. 3x64x64 (C×H×W) or 784 (default: none)")
    stack.add_argument(
        "layers", nargs="*", metavar="LAYER",
        help="layer strings such as 'Conv2d(64, 3, padding=1)' 'ReLU()' 'Flatten()' 'Linear(10)' (default: none)",
    )
    stack.add_argument(
        "--batch-size", type=int, default=1,
        help="batch dimension of the JSON rows and the memory; the table shows one sample (default: 1)",
    )
    stack.add_argument("--dtype", default="float32", help="element type for the memory (default: float32)")
    inverse = parser.add_argument_group("inverse problem")
    inverse.add_argument(
        "--solve", nargs=2, type=int, metavar=("IN", "OUT"),
        help="find (stride, padding[, output_padding]) that map size IN to size OUT (default: off)",
    )
    inverse.add_argument("--kernel", type=int, help="kernel size for --solve (default: none, required with --solve)")
    inverse.add_argument("--dilation", type=int, default=1, help="kernel dilation for --solve (default: 1)")
    inverse.add_argument(
        "--kind", choices=("both", "conv", "transposed"), default="both",
        help="search convolutions, transposed convolutions or both (default: both)",
    )
    inverse.add_argument("--max-stride", type=int, help="largest stride tried by --solve (default: the larger size)")
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table (default: off)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from layerlab.errors import ArgumentError

    if args.solve is not None:
        if args.input is not None:
            raise ArgumentError("--solve takes no INPUT/LAYER arguments; give either a stack or --solve IN OUT --kernel K")
        if args.kernel is None:
            raise ArgumentError("--solve needs --kernel K, e.g. layerlab shape --solve 32 64 --kernel 4")
        return _solve(args)
    if args.input is None:
        raise ArgumentError(
            "give an input shape and layers, e.g. layerlab shape 3x32x32 'Conv2d(16, 3)' 'ReLU()', "
            "or --solve IN OUT --kernel K"
        )
    return _stack(args)


def _solve(args: argparse.Namespace) -> int:
    from layerlab.arith import solve, unsolvable_reason

    transposed = {"both": None, "conv": False, "transposed": True}[args.kind]
    in_size, out_size = args.solve
    options = dict(transposed=transposed, dilation=args.dilation, max_stride=args.max_stride)
    solutions = solve(in_size, out_size, args.kernel, **options)
    reason = "" if solutions else unsolvable_reason(in_size, out_size, args.kernel, **options)
    if args.json:
        print(json.dumps({
            "in_size": in_size, "out_size": out_size, "kernel_size": args.kernel, "dilation": args.dilation,
            "kind": args.kind, "solutions": [s.as_dict() for s in solutions], "reason": reason,
        }, indent=2))
        return 0 if solutions else 1
    from rich.console import Console

    console = Console()
    if not solutions:
        console.print(reason, markup=False, soft_wrap=True)
        return 1
    console.print(f"{in_size} → {out_size} with kernel_size={args.kernel}: {len(solutions)} solution(s)", soft_wrap=True)
    for s in solutions:
        unused = f"  (floor leaves {s.dropped} input position(s) unused)" if s.dropped else ""
        console.print(f"  {s.describe()}: {s.formula}{unused}", markup=False, soft_wrap=True)
    return 0


def _stack(args: argparse.Namespace) -> int:
    from layerlab.analysis.stack import shape_document

    document = shape_document(args.input, args.layers, batch_size=args.batch_size, dtype=args.dtype)
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        _print_table(document)
    return 0


def _breakable(text: str) -> str:
    """``text`` with a space after every comma, so a narrow table wraps between arguments and never
    inside a number: ``'Conv2d(64,3,padding=1)'`` -> ``'Conv2d(64, 3, padding=1)'``."""
    return re.sub(r",(?=\S)", ", ", text)


def _print_table(document: dict) -> None:
    """The table of the stack, per sample (the document's rows and totals are for the whole batch)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from layerlab.analysis.render import format_rf, fractional_rf_note

    batch = document["batch_size"]
    console = Console()
    table = Table(title=f"input {'×'.join(map(str, document['input_shape']))} (per sample)", title_justify="left")
    table.add_column("#", justify="right")
    # wraps between arguments only; a single argument wider than the column ends in "…"
    table.add_column("layer", overflow="ellipsis")
    table.add_column("output shape")
    table.add_column("params", justify="right")
    table.add_column("MACs", justify="right")
    table.add_column("RF", justify="right")
    for layer in document["layers"]:
        table.add_row(
            str(layer["index"]), Text(_breakable(layer["text"])), "×".join(map(str, layer["output_shape"][1:])),
            f"{layer['params']:,}", f"{layer['macs'] // batch:,}", format_rf(layer["receptive_field"]),
        )
    console.print(table)
    rf_note = fractional_rf_note(layer["receptive_field"] for layer in document["layers"])
    if rf_note:
        console.print(Text(rf_note), soft_wrap=True)
    console.print(Text("Formulas:", style="bold"))
    for layer in document["layers"]:
        console.print(Text(f"  {layer['index']} {layer['layer']}: " + "; ".join(layer["formulas"])), soft_wrap=True)
    for layer in document["layers"]:
        for warning in layer["warnings"]:
            console.print(Text(f"warning: layer {layer['index']} {layer['layer']}: {warning}", style="yellow"), soft_wrap=True)
    total = document["total"]
    memory = total["activation_memory"]
    lines = [
        f"Total params: {total['params']:,}  ·  Buffers: {total['buffers']:,}",
        f"MACs: {total['macs'] // batch:,}  ·  FLOPs: {total['flops'] // batch:,}  (per sample)",
        f"Activation memory ({memory['dtype']}, batch {memory['batch_size']}): {memory['training']:,} B training, "
        f"{memory['inference']:,} B inference",
        document["conventions"]["macs"],
        f"Memory: {document['conventions']['memory']}",
    ]
    for line in lines:
        console.print(Text(line), soft_wrap=True)
