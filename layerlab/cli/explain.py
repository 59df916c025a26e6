"""``layerlab explain``: pictures and numbers that make conv ⊂ local ⊂ dense visible.

Examples::

    layerlab explain conv2d --input 1x6x6 --out-channels 1 --kernel 3 --out runs/explain
    layerlab explain local2d --input 1x6x6 --out-channels 1 --kernel 3
    layerlab explain dense --input 9 --out-features 4
    layerlab explain convtranspose2d --input 1x4x4 --out-channels 1 --kernel 3 --stride 2
    layerlab explain localtranspose2d --input 1x4x4 --out-channels 1 --kernel 3 --stride 2
    layerlab explain lowrank2d --input 1x6x6 --out-channels 1 --kernel 3 --rank 2
    layerlab explain family --input 3x32x32 --out-channels 32 --kernel 3 --padding same
    layerlab explain rf model.py:build --input 1x28x28 --output-index 0,3,3
    layerlab explain coverage --kernel 3 --stride 2
    layerlab explain filters model.py:build --layer features.0

Every command prints its numbers as a table (or JSON with ``--json``), writes ``NAME.png`` (and
``NAME.svg`` with ``--svg``) into ``--out`` and, beside it, ``NAME.json`` with the resolved arguments
and the numbers. NAME is made of the command and the arguments that change the picture, e.g.
``conv2d-1x6x6-c1-k3`` or ``coverage-k4-s2-p1``, so different pictures never overwrite each other;
running the same command again replaces its files and says "replaced" instead of "wrote". Layers built here get random weights from ``--seed`` and, like torch's, padding 0
unless ``--padding`` says otherwise. Matrices larger than
``--max-pixels`` are aggregated (and, in ``family``, also cropped); the picture says so.
``rf`` and ``filters`` run your own code (``FILE.py:NAME``), exactly as importing it would: only point
them at files you trust.

``--out`` is checked (created, writable, room for the files) before anything is computed; if the
files still cannot be written, the numbers are printed anyway and the command exits 2 saying why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

from layerlab.cli.helptext import add_command

# room asked of --out before anything is computed: a 16x14-inch PNG at 100 dpi plus an SVG stay below this
OUTPUT_BYTES = 16 * 1024 * 1024

# the padding of every layer built here when --padding is not given: torch's
PADDING_DEFAULT = "0"

# old spellings, accepted (hidden from --help, with a note on stderr) for one release: old → new
RENAMED_OPTIONS = {"--in": "--input"}
RENAMED_COMMANDS = {"compare": "family"}

# the file name of a picture: the command, then these arguments where they differ from their default, in this
# order, each as PREFIX + value (a flag as PREFIX alone); an argument the command does not have is skipped
NAME_PARTS = (("target", ""), ("input", ""), ("out_channels", "c"), ("out_features", "f"), ("kernel", "k"),
              ("stride", "s"), ("padding", "p"), ("dilation", "d"), ("groups", "g"), ("output_padding", "op"),
              ("no_bias", "nobias"), ("seed", "seed"), ("layer", "layer"), ("output_index", "out"),
              ("input_index", "in"), ("channel", "ch"), ("max_tiles", "tiles"), ("max_pixels", "px"),
              ("rank", "r"))
# longest file name stem; a longer one is cut and ends in a hash of the whole, so names stay distinct
MAX_NAME = 120
# Namespace entries that are bookkeeping of the parser, not arguments of the record
INTERNAL = ("func", "renamed_command", "name_defaults")

HELP = "pictures and numbers: a layer's dense matrix, conv vs local vs dense, receptive fields, coverage, filters"

LAYER_COMMANDS = {
    "conv2d": "the dense-equivalent matrix of a Conv2d: tied weights share a colour, zeros blank",
    "local2d": "the dense-equivalent matrix of a LocallyConnected2d: a different weight at every position",
    "dense": "the weight matrix of a Dense layer on the flattened input",
    "convtranspose2d": "the dense-equivalent matrix of a ConvTranspose2d (the transpose of a conv's)",
    "localtranspose2d": "the dense-equivalent matrix of a LocallyConnectedTranspose2d (the transpose of a local layer's)",
    "lowrank2d": "the dense-equivalent matrix of a LowRankLocallyConnected2d: local connectivity from rank "
                 "conv kernels mixed per position",
}


def _common(parser: argparse.ArgumentParser, *, matrix: bool = False, limit: bool = True) -> None:
    output = parser.add_argument_group("output")
    output.add_argument("--out", default="runs/explain", metavar="DIR", help="folder for the PNG/SVG/JSON files (default: runs/explain)")
    output.add_argument("--svg", action="store_true", help="also write an SVG next to the PNG (default: off)")
    output.add_argument("--json", action="store_true", help="print the numbers as JSON on stdout instead of a table (default: off)")
    if matrix:
        output.add_argument("--max-pixels", type=int, default=512, help="largest picture side before aggregating large matrices (default: 512)")
    if limit:
        output.add_argument("--max-bytes", type=int, default=None, help="memory limit in bytes (default: $LAYERLAB_MAX_BYTES or 2 GiB)")


class _Renamed(argparse.Action):
    """The old spelling of an option (``RENAMED_OPTIONS``): stores its value like the new one and says so on stderr."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"layerlab explain: note: {option_string} is now called {RENAMED_OPTIONS[option_string]}; "
              f"{option_string} will be removed in the next release", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _input(group, *, help: str, metavar: str = "SHAPE", default: str | None = None) -> None:
    """``--input`` (required unless it has a default), and its old spelling ``--in`` hidden from the help."""
    choice = group.add_mutually_exclusive_group(required=default is None)
    choice.add_argument("--input", default=default, metavar=metavar, help=help)
    for old, new in RENAMED_OPTIONS.items():
        choice.add_argument(old, dest=new[2:], default=default, metavar=metavar, action=_Renamed, help=argparse.SUPPRESS)


def _window(parser: argparse.ArgumentParser, *, transposed: bool = False, rank: bool = False) -> None:
    layer = parser.add_argument_group("layer")
    _input(layer, help="per-sample input shape C×H×W, e.g. 1x6x6 (default: none, required)")
    layer.add_argument("--out-channels", type=int, required=True, help="number of filters (default: none, required)")
    layer.add_argument("--kernel", required=True, metavar="K", help="kernel size, K or KHxKW (default: none, required)")
    layer.add_argument("--stride", default="1", help="stride, S or SHxSW (default: 1)")
    layer.add_argument("--padding", default=PADDING_DEFAULT,
                       help=f"padding: P, PHxPW{'' if transposed else ', same or valid'} (default: {PADDING_DEFAULT})")
    layer.add_argument("--dilation", default="1", help="kernel dilation, D or DHxDW (default: 1)")
    layer.add_argument("--groups", type=int, default=1, help="channel groups (default: 1)")
    if transposed:
        layer.add_argument("--output-padding", default="0", help="extra output rows/columns, P or PHxPW (default: 0)")
    if rank:
        layer.add_argument("--rank", type=int, default=2, help="basis conv kernels mixed at every position (default: 2)")
    layer.add_argument("--no-bias", action="store_true", help="build the layer without bias (default: with bias)")
    layer.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "explain", HELP, __doc__)
    commands = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    for name, text in LAYER_COMMANDS.items():
        sub = commands.add_parser(name, help=text, description=text)
        if name == "dense":
            layer = sub.add_argument_group("layer")
            _input(layer, help="per-sample input shape, flattened first, e.g. 9 or 1x6x6 (default: none, required)")
            layer.add_argument("--out-features", type=int, required=True, help="output features (default: none, required)")
            layer.add_argument("--no-bias", action="store_true", help="build the layer without bias (default: with bias)")
            layer.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
        else:
            _window(sub, transposed=name in ("convtranspose2d", "localtranspose2d"), rank=name == "lowrank2d")
        _common(sub, matrix=True)
        sub.set_defaults(func=run)
    text = "the family of one geometry: conv, local and dense matrices side by side, weight counts in the titles"
    for name in ("family", *(old for old, new in RENAMED_COMMANDS.items() if new == "family")):
        shown = {"help": text} if name == "family" else {}  # an old name is not listed in the help
        sub = commands.add_parser(name, description=text, **shown)
        _window(sub)
        _common(sub, matrix=True)
        sub.set_defaults(func=run, what="family", renamed_command=None if name == "family" else name)
    text = "which input cells feed one output cell of a model (receptive field), and which outputs one input reaches"
    sub = commands.add_parser("rf", help=text, description=text + ". Runs your own code (FILE.py:NAME).")
    model = sub.add_argument_group("model")
    model.add_argument("target", metavar="TARGET", help="FILE.py:NAME or package.module:NAME; runs that code as an import would (default: none, required)")
    model.add_argument("--input", required=True, metavar="SHAPE", help="per-sample input shape, e.g. 1x28x28 (default: none, required)")
    model.add_argument("--output-index", default=None, metavar="C,I,J", help="output cell of the analysed layer, comma-separated (default: channel 0, centre)")
    model.add_argument("--input-index", default=None, metavar="C,I,J", help="input cell whose reach is drawn (default: channel 0, centre)")
    model.add_argument("--layer", default=None, metavar="NAME", help="analyse the output of this layer (default: the last layer)")
    _common(sub)
    sub.set_defaults(func=run)
    text = "taps per output pixel of a transposed conv (checkerboard for kernel 3 / stride 2, even for 4 / 2)"
    sub = commands.add_parser("coverage", help=text, description=text)
    layer = sub.add_argument_group("layer")
    layer.add_argument("--kernel", required=True, metavar="K", help="kernel size, K or KHxKW (default: none, required)")
    layer.add_argument("--stride", required=True, metavar="S", help="stride, S or SHxSW (default: none, required)")
    layer.add_argument("--padding", default=PADDING_DEFAULT, help=f"padding, P or PHxPW (default: {PADDING_DEFAULT})")
    layer.add_argument("--dilation", default="1", help="kernel dilation (default: 1)")
    layer.add_argument("--output-padding", default="0", help="extra output rows/columns (default: 0)")
    _input(layer, metavar="SIZE", default="8x8", help="spatial input size, e.g. 8x8 or 16 (default: 8x8)")
    _common(sub)
    sub.set_defaults(func=run)
    text = "the filters of a conv or locally connected layer of a model as an image grid"
    sub = commands.add_parser("filters", help=text, description=text + ". Runs your own code (FILE.py:NAME).")
    model = sub.add_argument_group("model")
    model.add_argument("target", metavar="TARGET", help="FILE.py:NAME or package.module:NAME; runs that code as an import would (default: none, required)")
    model.add_argument("--layer", required=True, metavar="NAME", help="the layer's name in model.named_modules(), e.g. features.0 (default: none, required)")
    model.add_argument("--channel", type=int, default=0, help="output channel shown for local/tiled layers (default: 0)")
    model.add_argument("--input", default=None, metavar="SHAPE", help="run one forward pass on this per-sample shape first, for lazy layers (default: none)")
    model.add_argument("--max-tiles", type=int, default=32, help="crop the grid to this many tiles per side (default: 32)")
    _common(sub, limit=False)
    sub.set_defaults(func=run)
    for sub in commands.choices.values():
        sub.set_defaults(name_defaults={dest: sub.get_default(dest) for dest, _ in NAME_PARTS})


def _ints(text: str, name: str, ndim: int) -> tuple[int, ...]:
    """``"3"`` → ``(3,)*ndim``; ``"3x5"`` → ``(3, 5)``: the text parsed here, broadcast and counted by
    :mod:`layerlab.arith` (the layer or picture checks the values)."""
    from layerlab.arith._args import ntuple
    from layerlab.errors import ArgumentError

    try:
        values = tuple(int(p) for p in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise ArgumentError(f"--{name} must be an integer or {ndim} integers joined by 'x'. "
                            f"Received: --{name} {text!r}") from None
    return ntuple("explain", f"--{name}", values[0] if len(values) == 1 else values, ndim, minimum=0)


def _index(text: str | None, name: str):
    from layerlab.errors import ArgumentError

    if text is None:
        return None
    try:
        return tuple(int(p) for p in text.split(","))
    except ValueError:
        raise ArgumentError(f"--{name} must be integers separated by commas, e.g. 0,3,3. Received: --{name} {text!r}") from None


def _shape(text: str, name: str, ndim: int | None = None) -> tuple[int, ...]:
    from layerlab.arith import parse_shape
    from layerlab.errors import ArgumentError

    shape = tuple(parse_shape(text))
    if ndim is not None and len(shape) != ndim + 1:
        raise ArgumentError(f"--{name} must be a C×H×W shape with {ndim} spatial sizes for this command. "
                            f"Received: --{name} {text!r}")
    return shape


def _padding(text: str, ndim: int, allow_words: bool = True):
    if allow_words and text in ("same", "valid"):
        return text
    return _ints(text, "padding", ndim)


def _build_layer(args):
    """The layer of conv2d / local2d / lowrank2d / dense / convtranspose2d / localtranspose2d / family and its input shape.

    Built once on the meta device to count its parameters against the memory limit, then for real.
    """
    import torch

    from layerlab.limits import check_size

    with torch.device("meta"):
        layer, shape = _new_layer(args)
    check_size(f"explain {args.what}: building {layer!r}", sum(p.numel() for p in layer.parameters()), 4,
               max_bytes=args.max_bytes, hint="Use a smaller layer")
    torch.manual_seed(args.seed)
    return _new_layer(args)


def _new_layer(args):
    from layerlab import nn as lnn

    bias = not args.no_bias
    if args.what == "dense":
        shape = _shape(args.input, "input")
        features = 1
        for n in shape:
            features *= n
        return lnn.Dense(args.out_features, in_features=features, bias=bias), (features,)
    shape = _shape(args.input, "input", 2)
    common = dict(stride=_ints(args.stride, "stride", 2), dilation=_ints(args.dilation, "dilation", 2),
                  groups=args.groups)
    kernel = _ints(args.kernel, "kernel", 2)
    if args.what == "convtranspose2d":
        layer = lnn.ConvTranspose2d(shape[0], args.out_channels, kernel, padding=_padding(args.padding, 2, False),
                                    output_padding=_ints(args.output_padding, "output-padding", 2), bias=bias, **common)
    elif args.what == "localtranspose2d":
        layer = lnn.LocallyConnectedTranspose2d(
            shape[0], args.out_channels, kernel, padding=_padding(args.padding, 2, False),
            output_padding=_ints(args.output_padding, "output-padding", 2), bias=bias, input_size=shape[1:], **common)
    elif args.what == "lowrank2d":
        layer = lnn.LowRankLocallyConnected2d(shape[0], args.out_channels, kernel, args.rank,
                                              padding=_padding(args.padding, 2), bias=bias, input_size=shape[1:],
                                              **common)
    elif args.what == "local2d":
        layer = lnn.LocallyConnected2d(shape[0], args.out_channels, kernel, padding=_padding(args.padding, 2),
                                       bias=bias, input_size=shape[1:], **common)
    else:
        layer = lnn.Conv2d(shape[0], args.out_channels, kernel, padding=_padding(args.padding, 2), bias=bias, **common)
    return layer, shape


def _matrix(args):
    from layerlab.convert.matrix import estimate_entries, layer_entries
    from layerlab.viz.figure import new_figure
    from layerlab.viz.matrix import draw_matrix, matrix_picture

    layer, shape = _build_layer(args)
    picture = matrix_picture(layer, shape, max_pixels=args.max_pixels, max_bytes=args.max_bytes)
    entries, (out_f, in_f) = estimate_entries(layer, shape)
    if picture.mode == "exact":
        entries = int(layer_entries(layer, shape, max_bytes=args.max_bytes).rows.numel())
    height, width = picture.rgba.shape[:2]
    figure = new_figure(min(3 + width / 12, 16), min(2.5 + height / 12, 12))
    draw_matrix(picture, figure.subplots())
    numbers = {
        "layer": repr(layer), "input_shape": list(shape), "matrix_shape": [out_f, in_f],
        "weights": picture.weights, "params": sum(p.numel() for p in layer.parameters()),
        "structural_nonzeros": entries, "density": entries / (out_f * in_f),
        "distinct_colours": picture.colors, "picture": picture.mode, "caption": picture.caption,
    }
    return figure, numbers


def _family(args):
    from layerlab.viz.family import draw_family, family_pictures
    from layerlab.viz.figure import new_figure

    args.what = "conv2d"  # build the conv of the family
    conv, shape = _build_layer(args)
    args.what = "family"
    family = family_pictures(conv, shape, max_pixels=args.max_pixels, max_bytes=args.max_bytes)
    out_f, in_f = family.rows[0][0].shape
    height = 5 * len(family.rows) if len(family.rows) > 1 else 2.5 + 4.5 * min(1.0, out_f / in_f)
    figure = new_figure(15, height)
    draw_family(family, figure)
    numbers = family.as_dict()
    numbers["ratio_dense_to_conv"] = family.weights["dense"] / family.weights["conv"]
    numbers["ratio_local_to_conv"] = family.weights["local"] / family.weights["conv"]
    return figure, numbers


def _load(target: str, input_text: str | None):
    import torch

    from layerlab.cli.loading import load_model

    model = load_model(target)
    if input_text is not None:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *_shape(input_text, "input")))
    return model


def _rf(args):
    from layerlab.viz.figure import new_figure
    from layerlab.viz.receptive import draw_receptive, receptive_map

    model = _load(args.target, None)
    rmap = receptive_map(model, _shape(args.input, "input"), output_index=_index(args.output_index, "output-index"),
                         input_index=_index(args.input_index, "input-index"), layer=args.layer, max_bytes=args.max_bytes)
    figure = new_figure(12, 5)
    draw_receptive(rmap, figure.subplots(1, 2))
    numbers = {
        "layer": rmap.layer, "input_shape": list(rmap.input_shape), "output_shape": list(rmap.output_shape),
        "output_index": list(rmap.output_index), "field_cells": int(rmap.field.sum()),
        "field_extent": None if rmap.extent is None else [list(e) for e in rmap.extent],
        "field_size": list(rmap.size), "formula": rmap.arith,
        "input_index": list(rmap.input_index), "reached_outputs": int(rmap.reach.sum()),
    }
    return figure, numbers


def _coverage(args):
    from layerlab.viz.coverage import coverage_map, draw_coverage
    from layerlab.viz.figure import new_figure

    size = _ints(args.input, "input", len(args.input.lower().split("x")))
    ndim = len(size)
    coverage = coverage_map(_ints(args.kernel, "kernel", ndim), _ints(args.stride, "stride", ndim),
                            padding=_ints(args.padding, "padding", ndim), dilation=_ints(args.dilation, "dilation", ndim),
                            output_padding=_ints(args.output_padding, "output-padding", ndim), input_size=size,
                            max_bytes=args.max_bytes)
    figure = new_figure(8, 7)
    draw_coverage(coverage, figure.subplots())
    return figure, coverage.as_dict()


def _filters(args):
    from layerlab.errors import ArgumentError
    from layerlab.viz.figure import new_figure
    from layerlab.viz.filters import draw_filters, filter_grid

    model = _load(args.target, args.input)
    names = dict(model.named_modules())
    if args.layer not in names:
        near = [n for n in names if n][:20]
        raise ArgumentError(f"explain filters: the model has no layer named {args.layer!r}. Received: --layer "
                            f"{args.layer!r}; layers: {', '.join(near)}")
    grid = filter_grid(names[args.layer], channel=args.channel, max_tiles=args.max_tiles, name=args.layer)
    height, width = grid.image.shape[:2]
    figure = new_figure(min(3 + width / 8, 16), min(2.5 + height / 8, 14))
    draw_filters(grid, figure.subplots())
    return figure, {"layer": args.layer, "module": repr(names[args.layer]), **grid.as_dict()}


HANDLERS = {"conv2d": _matrix, "local2d": _matrix, "dense": _matrix, "convtranspose2d": _matrix,
            "localtranspose2d": _matrix, "lowrank2d": _matrix, "family": _family, "rf": _rf, "coverage": _coverage,
            "filters": _filters}


def _rows(numbers: dict, prefix: str = ""):
    for key, value in numbers.items():
        if isinstance(value, dict):
            yield from _rows(value, f"{prefix}{key}.")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for i, item in enumerate(value):
                yield from _rows(item, f"{prefix}{key}[{i}].")
        else:
            shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else (
                f"{value:.6g}" if isinstance(value, float) else str(value))
            yield f"{prefix}{key}", shown


def picture_name(args: argparse.Namespace) -> str:
    """The file name stem of the picture ``args`` draws, e.g. ``conv2d-1x6x6-c1-k3``, from ``NAME_PARTS``."""
    parts = [args.what]
    for dest, prefix in NAME_PARTS:
        if not hasattr(args, dest) or getattr(args, dest) == args.name_defaults[dest]:
            continue
        value = getattr(args, dest)
        if dest == "target":  # dir/model.py:build -> model.build
            file, _, attribute = value.rpartition(":")
            value = f"{os.path.basename(file).removesuffix('.py')}.{attribute}"
        parts.append(prefix if value is True else prefix + re.sub(r"[^\w.-]+", "_", str(value).replace("×", "x")))
    name = "-".join(parts)
    if len(name) > MAX_NAME:
        name = f"{name[:MAX_NAME - 9]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return name


def run(args: argparse.Namespace) -> int:
    from layerlab.train.rundir import prepare_out_dir
    from layerlab.viz.figure import save_figure

    if getattr(args, "renamed_command", None):
        print(f"layerlab explain: note: explain {args.renamed_command} is now called explain {args.what}; "
              f"explain {args.renamed_command} will be removed in the next release", file=sys.stderr)
    prepare_out_dir(args.out, needed_bytes=OUTPUT_BYTES)
    figure, numbers = HANDLERS[args.what](args)
    arguments = {k: v for k, v in vars(args).items() if k not in INTERNAL}
    stem = picture_name(args)
    document = {"command": f"explain {args.what}", "arguments": arguments, "numbers": numbers, "files": [],
                "replaced": []}
    lost = None
    try:
        document["replaced"] = [str(p) for p in (Path(args.out) / f"{stem}.{suffix}" for suffix in ("png", "svg", "json"))
                                if p.exists() and (args.svg or p.suffix != ".svg")]
        paths = save_figure(figure, args.out, stem, svg=args.svg)
        document["files"] = [str(p) for p in paths]
        record = paths[0].with_suffix(".json")
        record.write_text(json.dumps(document, indent=2, default=str) + "\n")
        document["files"].append(str(record))
    except OSError as err:  # the folder broke after the check: the numbers are printed, the files are not
        lost = (f"could not write the files into --out {args.out!r} ({err.strerror or type(err).__name__}); the numbers "
                "are printed above; free disk space or choose another --out, then run the command again")
    if args.json:
        print(json.dumps(document, indent=2, default=str))
    else:
        _print_table(args.what, numbers, document["files"], document["replaced"])
    if lost is not None:
        print(f"layerlab explain: error: {lost}", file=sys.stderr)
        return 2
    return 0


def _print_table(what: str, numbers: dict, files: list[str], replaced: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"layerlab explain {what}")
    table.add_column("quantity")
    table.add_column("value", overflow="fold")
    for key, value in _rows(numbers):
        table.add_row(key, value)
    console = Console()
    console.print(table)
    for path in files:
        console.print(f"{'replaced' if path in replaced else 'wrote'} {path}", soft_wrap=True)  # a path stays one line
