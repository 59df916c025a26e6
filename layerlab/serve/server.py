"""The HTTP server of ``layerlab serve`` (standard library only, works offline).

- Binds ``127.0.0.1`` by default; port 0 picks a free port.
- Answers only requests whose ``Host`` header names the bound address or ``localhost`` with the
  bound port (421 otherwise): a web page elsewhere cannot reach the server through DNS rebinding.
- Serves a fixed set of asset files, read once from the assets folder at start (regular files
  directly inside it, no symlinks): ``/`` is ``index.html``; any other path (``..``, encoded dots,
  absolute paths, unknown names) is 404. Nothing else on disk is ever read.
- ``GET``/``HEAD`` only (405 otherwise). The API (:mod:`layerlab.serve.api`) answers JSON with
  ``Content-Type: application/json; charset=utf-8`` and ``Cache-Control: no-store``.
- Quiet: no line per request unless ``verbose``.
"""

from __future__ import annotations

import json
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from layerlab.errors import ArgumentError
from layerlab.serve import api

__all__ = ["ASSETS", "CONTENT_TYPES", "make_server", "read_assets"]

# the package's own page
ASSETS = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon", ".json": "application/json; charset=utf-8",
}
MAX_ASSET_BYTES = 4 * 1024 * 1024  # a file larger than this is not an asset of the page


def read_assets(folder: Path, *, missing_ok: bool = False) -> dict[str, tuple[bytes, str]]:
    """``{"/name": (content, content type)}`` of the regular files directly in ``folder`` (symlinks,
    sub-folders, hidden files, unknown types and files over 4 MiB left out); ``"/"`` is ``index.html``.

    Raises:
        ArgumentError: ``folder`` is not a folder (``missing_ok``: then no assets, the API only).
    """
    folder = Path(folder)
    if not folder.is_dir() and missing_ok:
        return {}
    if not folder.is_dir():
        raise ArgumentError(f"layerlab serve: the assets folder {str(folder)!r} does not exist; reinstall layerlab "
                            "(the page's files ship with the package)")
    assets = {}
    for path in sorted(folder.iterdir()):
        kind = CONTENT_TYPES.get(path.suffix.lower())
        if path.name.startswith(".") or kind is None or path.is_symlink() or not path.is_file():
            continue
        if path.stat().st_size > MAX_ASSET_BYTES:
            continue
        assets[f"/{path.name}"] = (path.read_bytes(), kind)
    if "/index.html" in assets:
        assets["/"] = assets["/index.html"]
    return assets


class _Handler(BaseHTTPRequestHandler):
    server_version = "layerlab-serve"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds an idle connection is kept: one that never sends a request does not hold a thread forever
    # TCP_NODELAY: an answer's last small segment goes out at once instead of waiting for the
    # client's (delayed, up to 40 ms) acknowledgement of the one before
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def _refuse_method(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"405 method not allowed: layerlab serve answers GET and HEAD\n",
                   "text/plain; charset=utf-8", body=True, extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse_method  # noqa: N815

    def _answer(self, body: bool) -> None:
        if not self._host_allowed():
            self._send(HTTPStatus.MISDIRECTED_REQUEST, b"421 misdirected request: this server answers only "
                       b"requests for localhost\n", "text/plain; charset=utf-8", body=body)
            return
        parts = urlsplit(self.path)
        if parts.path.startswith("/api/"):
            try:
                status, document = api.answer(parts.path, parts.query, self.server.model)
            except Exception as err:  # a bug must not take the server down; the message says what failed
                status, document = 500, {"schema": api.SCHEMA, "error": {
                    "message": f"internal error ({type(err).__name__}: {str(err)[:300]}); please report it",
                    "layer": None, "parameter": None}}
            payload = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
            self._send(status, payload, "application/json; charset=utf-8", body=body)
            return
        asset = self.server.assets.get(parts.path)
        if asset is None:
            self._send(HTTPStatus.NOT_FOUND, b"404 not found\n", "text/plain; charset=utf-8", body=body)
            return
        self._send(HTTPStatus.OK, asset[0], asset[1], body=body)

    def _host_allowed(self) -> bool:
        host = self.headers.get("Host", "")
        return host.lower() in self.server.allowed_hosts

    def _send(self, status: int, payload: bytes, kind: str, *, body: bool, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        if self.server.verbose:
            sys.stderr.write(f"layerlab serve: {self.address_string()} {format % args}\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, assets, model, verbose) -> None:
        super().__init__(address, _Handler)
        self.assets = assets
        self.model = model
        self.verbose = verbose
        host, port = self.server_address[:2]
        self.allowed_hosts = {f"{name}:{port}" for name in (host, "localhost", f"[{host}]")}

    def handle_error(self, request, client_address) -> None:
        if self.verbose:
            super().handle_error(request, client_address)


def make_server(host: str = "127.0.0.1", port: int = 0, *, assets: Path | str | None = None,
                model: dict | None = None, verbose: bool = False, missing_ok: bool = False) -> ThreadingHTTPServer:
    """A bound (not yet serving) server; ``server.server_address`` has the port it got.

    Args:
        host: address to bind (default: "127.0.0.1").
        port: port to bind; 0 picks a free one (default: 0).
        assets: folder of the page's files (default: the package's ``layerlab/serve/static``).
        model: the ``--model``'s summary document served at ``/api/model`` (default: None).
        verbose: log one line per request on stderr (default: False).
        missing_ok: a missing assets folder serves the API alone instead of failing (default: False).

    Raises:
        ArgumentError: the assets folder is missing, or the address cannot be bound.
    """
    files = read_assets(Path(assets) if assets is not None else ASSETS, missing_ok=missing_ok)
    try:
        return _Server((host, port), files, model, verbose)
    except OSError as err:
        raise ArgumentError(f"layerlab serve cannot listen on {host}:{port} ({err.strerror or err}). Fix: another "
                            "--port (0 picks a free one) or --host") from None
