"""Entry point of the ``layerlab`` command.

Each subcommand lives in its own module ``layerlab.cli.<name>`` exposing
``register(subparsers) -> None``; the module's parser sets ``func(args) -> int`` as default.
Modules are imported only to build the parser, and heavy imports (torch) happen inside ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from layerlab import __version__
from layerlab.errors import LayerlabError

# subcommand modules, in the order `layerlab --help` lists them
COMMANDS = ("shape", "summary", "train", "compare", "explain")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand, or only ``command`` when it is one (so that e.g.
    ``layerlab shape`` never imports what other subcommands need to build their options)."""
    parser = argparse.ArgumentParser(
        prog="layerlab",
        description="Layer types of neural networks: shapes, parameters, MACs, receptive fields, "
        "exact conversions, pictures, and the experiment that says which layer to use.",
    )
    parser.add_argument("--version", action="version", version=f"layerlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (command,) if command in COMMANDS else COMMANDS:
        importlib.import_module(f"layerlab.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LayerlabError as err:
        print(f"layerlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"layerlab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
