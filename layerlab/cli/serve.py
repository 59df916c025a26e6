"""``layerlab serve``: an interactive explorer of the layer family in your browser (local server).

Examples::

    layerlab serve
    layerlab serve --no-browser --port 8765
    layerlab serve --model path/to/model.py:build --input 3x32x32

Starts a web server on this machine, prints ``layerlab serve: http://HOST:PORT/`` as the first line
and opens that page in a browser (when there is one). The page shows a layer or a stack of layers
typed as in ``layerlab shape``: output shapes with their formulas, params and MACs of conv / tiled /
locally connected / dense side by side, which input cells feed each output cell, the
dense-equivalent matrix, a transposed convolution's checkerboard, receptive fields. Every number
comes from layerlab's engine through a small JSON API (``docs/serve.md``). Everything is served from
the package: no network is needed. Stop it with Ctrl-C.

The server listens on 127.0.0.1 (this machine only) unless ``--host`` says otherwise, and answers
only requests addressed to that address or ``localhost``. ``--model`` shows the per-layer table of
your own model (as ``layerlab summary``); **this runs your own code**, exactly as importing the file
would (its top level, then ``NAME()``): only point it at files you trust.
"""

from __future__ import annotations

import argparse
import os
import sys

from layerlab.cli.helptext import add_command

HELP = "interactive explorer of layers and stacks in the browser (local server)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "serve", HELP, __doc__)
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; other machines can reach anything but 127.0.0.1 (default: 127.0.0.1)")
    server.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free port (default: 0)")
    server.add_argument("--no-browser", action="store_true", help="do not open a browser, only print the address (default: off)")
    server.add_argument("--verbose", action="store_true", help="log one line per request on stderr (default: off)")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model", metavar="TARGET",
        help="FILE.py:NAME or package.module:NAME whose per-layer table the page shows; runs that code as an "
             "import would (default: none)",
    )
    model.add_argument("--input", metavar="SHAPE",
                       help="per-sample input shape of --model, e.g. 3x32x32 (default: none, required with --model)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import signal
    import threading
    import webbrowser

    from layerlab.arith import parse_shape
    from layerlab.errors import ArgumentError
    from layerlab.serve.server import ASSETS, make_server

    if not 0 <= args.port <= 65535:
        raise ArgumentError(f"--port must be 0 to 65535 (0 picks a free port). Received: --port {args.port}")
    if args.model is not None and args.input is None:
        raise ArgumentError("--model needs --input SHAPE, the model's per-sample input, e.g. "
                            f"layerlab serve --model {args.model} --input 3x32x32")
    if args.input is not None and args.model is None:
        raise ArgumentError("--input is the input shape of --model; give --model FILE.py:NAME too (the page itself "
                            "takes any input, e.g. http://HOST:PORT/?input=3x32x32&layer=Conv2d(8,3))")
    document = None
    if args.model is not None:
        document = _model_document(args.model, parse_shape(args.input))
    server = make_server(args.host, args.port, model=document, verbose=args.verbose, missing_ok=True)
    if not server.assets:
        print(f"layerlab serve: warning: the page's files are missing from {ASSETS}; only the JSON API answers "
              "(reinstall layerlab)", file=sys.stderr)
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    print(f"layerlab serve: {url}", flush=True)

    def stop(signum, frame):
        err = KeyboardInterrupt(signal.Signals(signum).name)
        err.signal_number = signum
        raise err

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        if not args.no_browser:
            # webbrowser may block on a text-mode browser or wait for a desktop one: never in the way of serving
            threading.Thread(target=_open, args=(webbrowser, url), name="layerlab-browser", daemon=True).start()
        server.serve_forever()
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    return 0


def _open(webbrowser, url: str) -> None:
    """Open ``url`` in a browser; a machine without one only has the printed address. Without a
    display (Linux, BSD) nothing is opened: a text browser would take over this terminal."""
    if sys.platform not in ("darwin", "win32") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return
    try:
        webbrowser.open(url)
    except Exception:  # noqa: BLE001 (no browser, no display: the address was printed)
        pass


def _model_document(target: str, shape: tuple[int, ...]) -> dict:
    """The ``layerlab summary --json`` document of the user's model (built on the meta device)."""
    import torch

    from layerlab.analysis import summary
    from layerlab.cli.loading import load_model
    from layerlab.errors import ArgumentError

    try:
        with torch.device("meta"):
            model = load_model(target)
    except ArgumentError as err:
        if "meta" in str(err.__cause__):
            raise ArgumentError(f"{err} (the model is built on the meta device, as layerlab summary does)") from err
        raise
    return summary(model, shape).to_dict()
