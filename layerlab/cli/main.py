"""Entry point of the ``layerlab`` command.

Each subcommand lives in its own module ``layerlab.cli.<name>`` exposing
``register(subparsers) -> None``; the module's parser sets ``func(args) -> int`` as default.
Modules are imported only to build the parser, and heavy imports (torch) happen inside ``func``.

The boundary: a :class:`~layerlab.errors.LayerlabError` becomes ``layerlab COMMAND: error: …`` and
exit 2. So does a failed allocation that slipped past the estimates (``MemoryError``, torch's
"can't allocate memory", a size that overflows int64): the message gives the size that was asked
for and the process's address-space limit. Output streams print undecodable file-name bytes as
``\\xNN`` instead of failing. A reader that goes away (``layerlab train --json | head``) ends the command
quietly with exit 141 (128 + SIGPIPE, what a shell reports for a command killed by SIGPIPE); a rich
table stops as quietly, by rich's own handling, with exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import resource
import signal
import sys
import time

from layerlab import __version__
from layerlab.arith.counts import format_bytes
from layerlab.errors import LayerlabError, SizeLimitError
from layerlab.limits import size_limit_message

# subcommand modules, in the order `layerlab --help` lists them
COMMANDS = ("shape", "summary", "train", "compare", "explain", "serve")

# torch's and numpy's words for an allocation that failed, and for a size that does not fit in int64
_OUT_OF_MEMORY = re.compile(r"can't allocate memory|not enough memory|out of memory|Unable to allocate", re.IGNORECASE)
_TOO_LARGE = re.compile(r"Storage size calculation overflowed|integer multiplication overflow|"
                        r"Overflow when unpacking long", re.IGNORECASE)


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
    started = time.perf_counter()  # a command's wall time counts from here: imports (torch) and loading included
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    args.started = started
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe is handled, not at the interpreter's exit
        return code
    except LayerlabError as err:
        message = str(err)
        if isinstance(err, SizeLimitError):  # name the command's flag, not the Python argument
            message = size_limit_message(message, "--max-bytes" if hasattr(args, "max_bytes") else None)
        print(f"layerlab {args.command}: error: {message}", file=sys.stderr)
        return 2
    except (MemoryError, OverflowError, RuntimeError, ValueError, TypeError) as err:
        message = _resource_message(err)
        if message is None:
            raise
        print(f"layerlab {args.command}: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _silence_stdout()
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt as err:  # Ctrl-C, or a SIGTERM the command could not honour in time
        print(f"layerlab {args.command}: interrupted", file=sys.stderr)
        return 128 + getattr(err, "signal_number", signal.SIGINT)


def _silence_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's final flush does not fail again on the
    closed pipe (Python's documented remedy for SIGPIPE)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor has nothing to flush
        pass


def _resource_message(err: BaseException) -> str | None:
    """The message for a failed allocation or an int64 overflow (what was asked, the limit, the way out), or
    ``None`` when ``err`` is neither (then it is a bug and keeps its traceback)."""
    text = (str(err).splitlines() or [""])[0][:300]
    fix = "use smaller sizes (--input, --batch-size, --width, the layer)"
    if isinstance(err, OverflowError) or _TOO_LARGE.search(str(err)):
        return f"a size is too large to represent ({type(err).__name__}: {text}); nothing was computed; {fix}"
    if not isinstance(err, MemoryError) and not _OUT_OF_MEMORY.search(str(err)):
        return None
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    where = (f"this process may use at most {format_bytes(limit)} of address space (ulimit -v / RLIMIT_AS)"
             if limit != resource.RLIM_INFINITY else "the machine has no memory left for it")
    return f"out of memory ({type(err).__name__}: {text}); {where}; nothing more was computed; {fix}, or give the " \
           "process more memory"


if __name__ == "__main__":
    raise SystemExit(main())
