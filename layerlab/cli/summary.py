"""``layerlab summary``: the per-layer table of a real PyTorch model.

Examples::

    layerlab summary path/to/model.py:build --input 3x32x32
    layerlab summary mypkg.models:Net --input 1x28x28 --depth 1 --json
    layerlab summary model.py:build --input 3x32x32 --format markdown --columns shape,params,macs,rf
    layerlab summary model.py:build --input 3x32x32 --batch-size 32 --memory measure

``TARGET`` is ``FILE.py:NAME`` or ``package.module:NAME``; ``NAME`` is an ``nn.Module`` instance, a
class, or a zero-argument function returning the model. **This runs your own code**, exactly as
importing the file would (its top level, then ``NAME()``): only point it at files you trust.

The model is built under ``torch.device("meta")`` (``--device meta``, the default), so parameters
take no memory and huge models work; if your builder needs real tensors (it reads weights, calls
``.item()`` ...) use ``--device cpu``. Shapes come from one forward pass on meta tensors.
``--memory measure`` also runs one real forward+backward at the batch size, so the model is built
on cpu unless ``--device`` says otherwise.

``TARGET`` may also be a Keras 2 model file, ``model.h5`` or ``model.keras`` (read with h5py, no
TensorFlow, no code run: ``pip install 'layerlab[keras]'``): the table is the one of its layerlab
conversion (``layerlab.convert.from_keras``) taking channels-first input, as every summary shows
``(C, H, W)``. ``--input`` is then optional: it defaults to the Keras model's input shape with the
channels moved first (``28x28x1`` in Keras is ``1x28x28`` here).
"""

from __future__ import annotations

import argparse

from layerlab.analysis.formats import COLUMNS, DEFAULT_COLUMNS, FORMATS
from layerlab.cli.helptext import add_command

HELP = "per-layer shapes, params, MACs and receptive fields of a PyTorch model (FILE.py:NAME)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "summary", HELP, __doc__)
    model = parser.add_argument_group("model")
    model.add_argument(
        "target", metavar="TARGET",
        help="FILE.py:NAME or package.module:NAME (runs that code as an import would), or a Keras model.h5 / "
        "model.keras file (default: none, required)",
    )
    model.add_argument(
        "--input", metavar="SHAPE",
        help="per-sample input shape, channels first, e.g. 3x32x32 (default: a Keras file's input shape; required "
        "for a Python model)",
    )
    model.add_argument(
        "--device", choices=("meta", "cpu"), default=None,
        help="device the model is built on: meta allocates nothing (default: meta; cpu with --memory measure)",
    )
    table = parser.add_argument_group("table")
    table.add_argument("--batch-size", type=int, default=1, help="batch dimension; MACs and memory are per batch (default: 1)")
    table.add_argument(
        "--depth", type=int, default=None,
        help="fold layers deeper than this into their ancestor at this depth, counts summed; 0: one row (default: all layers)",
    )
    table.add_argument(
        "--format", choices=FORMATS, default="table",
        help="table, json (the full document, docs/summary.md), markdown or csv (default: table)",
    )
    table.add_argument("--json", action="store_const", dest="format", const="json", help="same as --format json (default: off)")
    table.add_argument(
        "--columns", metavar="LIST", default=None,
        help=f"comma-separated columns of the table, markdown and csv: {', '.join(COLUMNS)}; shape = input,output "
             f"(default: {','.join(DEFAULT_COLUMNS)})",
    )
    table.add_argument(
        "--memory", choices=("estimate", "measure"), default="estimate",
        help="estimate from the shapes, or also measure one real forward+backward on cpu (default: estimate)",
    )
    parser.set_defaults(func=run)


# file suffixes read as Keras 2 model files instead of Python targets
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


def run(args: argparse.Namespace) -> int:
    from layerlab.analysis.formats import parse_columns
    from layerlab.arith import parse_shape
    from layerlab.errors import ArgumentError

    keras = args.target.lower().endswith(KERAS_SUFFIXES)
    if args.input is None and not keras:
        raise ArgumentError(f"--input is required for a Python model ({args.target}): give the per-sample input "
                            "shape, e.g. --input 3x32x32")
    shape = None if args.input is None else parse_shape(args.input)  # before importing torch: a typo fails at once
    parse_columns(args.columns)
    device = args.device or ("cpu" if args.memory == "measure" else "meta")

    import torch
    from rich.console import Console

    from layerlab.analysis import summary
    from layerlab.analysis.render import render
    from layerlab.cli.loading import load_model
    from layerlab.convert.keras.model import load_keras

    if keras:
        model, keras_shape = load_keras(args.target, input_layout="channels_first")
        shape = shape or keras_shape
    else:
        try:
            with torch.device(device):
                model = load_model(args.target)
        except ArgumentError as err:
            if device == "meta" and "meta" in str(err.__cause__):
                raise ArgumentError(f"{err} (the model is built on the meta device; if it needs real tensors, add --device cpu)") from err
            raise
    result = summary(model, shape, batch_size=args.batch_size, depth=args.depth, memory=args.memory)
    if args.format == "table":
        Console().print(render(result, args.columns), soft_wrap=True)
    else:
        print(result.render(args.format, args.columns), end="")
    return 0
