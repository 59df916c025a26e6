"""The HTTP server of ``layerlab serve``: Host check, only its own files, GET/HEAD, JSON headers, quiet."""

from __future__ import annotations

import http.client
import json
import os
import threading

import pytest

from layerlab.errors import ArgumentError
from layerlab.serve import api
from layerlab.serve.server import make_server, read_assets


@pytest.fixture
def assets(tmp_path):
    folder = tmp_path / "static"
    folder.mkdir()
    (folder / "index.html").write_text("<!doctype html><title>layerlab</title>")
    (folder / "app.js").write_text("console.log('hi');")
    (folder / "style.css").write_text("body {}")
    (folder / "notes.txt").write_text("not an asset type")
    (folder / ".hidden.js").write_text("hidden")
    (folder / "sub").mkdir()
    (folder / "sub" / "inner.js").write_text("inner")
    (tmp_path / "secret.js").write_text("secret")
    os.symlink(tmp_path / "secret.js", folder / "link.js")
    return folder


@pytest.fixture
def server(assets):
    server = make_server("127.0.0.1", 0, assets=assets, model={"schema": "layerlab.summary/1", "model": "Net"})
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def request(server, method: str, target: str, host: str | None = None):
    """``(status, headers, body)`` of one raw request (the target is sent exactly as given)."""
    port = server.server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
    connection.putheader("Host", host if host is not None else f"127.0.0.1:{port}")
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


def test_index_and_assets_are_served(server):
    status, headers, body = request(server, "GET", "/")
    assert (status, headers["Content-Type"], body) == (200, "text/html; charset=utf-8",
                                                       b"<!doctype html><title>layerlab</title>")
    assert request(server, "GET", "/?input=3x32x32&layer=Conv2d(8,3)")[2] == body  # the page's state in the URL
    status, headers, body = request(server, "GET", "/app.js")
    assert (status, headers["Content-Type"], body) == (200, "text/javascript; charset=utf-8", b"console.log('hi');")
    assert request(server, "GET", "/style.css")[1]["Content-Type"] == "text/css; charset=utf-8"


@pytest.mark.parametrize("target", [
    "/../pyproject.toml", "/%2e%2e/pyproject.toml", "/%2E%2E%2Fsecret.js", "/..%2fsecret.js", "//etc/passwd",
    "/etc/passwd", "/static/app.js", "/sub/inner.js", "/link.js", "/.hidden.js", "/notes.txt", "/index.html/",
    "/app.js%00.html", "http://127.0.0.1/../secret.js",
])
def test_no_file_outside_the_fixed_assets_is_served(server, target):
    status, _, body = request(server, "GET", target)
    assert (status, body) == (404, b"404 not found\n")


def test_assets_are_read_once_at_start(server, assets):
    (assets / "late.js").write_text("added after the start")
    (assets / "app.js").write_text("changed")
    assert request(server, "GET", "/late.js")[0] == 404
    assert request(server, "GET", "/app.js")[2] == b"console.log('hi');"


def test_read_assets_keeps_regular_files_of_known_types(assets):
    assert sorted(read_assets(assets)) == ["/", "/app.js", "/index.html", "/style.css"]
    with pytest.raises(ArgumentError, match=r"the assets folder '.*missing' does not exist; reinstall layerlab"):
        read_assets(assets / "missing")
    assert read_assets(assets / "missing", missing_ok=True) == {}


@pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1", "localhost", "127.0.0.1:1", "localhost:{port}.evil",
                                  "", "LOCALHOST.:{port}", "0.0.0.0:{port}"])
def test_requests_for_another_host_are_refused(server, host):
    port = server.server_address[1]
    status, headers, body = request(server, "GET", "/api/view?input=1x4x4&layer=Conv2d(1,3)", host.format(port=port))
    assert status == 421
    assert body == b"421 misdirected request: this server answers only requests for localhost\n"


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LocalHost:{port}"])
def test_the_bound_address_and_localhost_are_answered(server, host):
    port = server.server_address[1]
    assert request(server, "GET", "/", host.format(port=port))[0] == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_only_get_and_head_are_answered(server, method):
    status, headers, body = request(server, method, "/")
    assert (status, headers["Allow"]) == (405, "GET, HEAD")
    assert body == b"405 method not allowed: layerlab serve answers GET and HEAD\n"


def test_head_sends_the_headers_without_the_body(server):
    status, headers, body = request(server, "HEAD", "/api/view?input=1x4x4&layer=Conv2d(1,3)")
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) > 0


def test_api_answers_json_that_is_not_cached(server):
    status, headers, body = request(server, "GET", "/api/view?input=1x5x5&layer=Conv2d(2,3,stride=2)")
    assert status == 200
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
    document = json.loads(body)
    assert document == api.answer("/api/view", "input=1x5x5&layer=Conv2d(2,3,stride=2)")[1]
    assert document["layer"]["output_shape_text"] == "2×2×2"


def test_api_errors_answer_400_with_the_message(server):
    status, headers, body = request(server, "GET", "/api/view?input=1x5x5&layer=Conv2d(2,7)")
    assert (status, headers["Content-Type"]) == (400, "application/json; charset=utf-8")
    assert json.loads(body)["error"]["message"].startswith("layer 1: Conv2d(? → 2, kernel_size=7): H: the kernel spans")
    status, _, body = request(server, "GET", "/api/view?" + "a" * 5000)
    assert status == 400 and json.loads(body)["error"]["message"].startswith("the query string has 5,000 characters")
    assert request(server, "GET", "/api/model")[2] == b'{"schema":"layerlab.summary/1","model":"Net"}'


def test_an_internal_error_answers_500_and_the_server_goes_on(server, monkeypatch):
    def broken(params):
        raise RuntimeError("boom")

    monkeypatch.setitem(api.ENDPOINTS, "/api/view", broken)
    status, _, body = request(server, "GET", "/api/view?input=1x4")
    assert (status, json.loads(body)["error"]["message"]) == (500, "internal error (RuntimeError: boom); please report it")
    monkeypatch.undo()
    assert request(server, "GET", "/api/view?input=1x4")[0] == 200


def test_quiet_by_default_and_one_line_per_request_when_verbose(assets, capfd):
    for verbose in (False, True):
        server = make_server(assets=assets, verbose=verbose)
        thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
        thread.start()
        request(server, "GET", "/")
        request(server, "GET", "/missing")
        server.shutdown()
        server.server_close()
        lines = capfd.readouterr().err.splitlines()
        if verbose:
            assert len(lines) == 2 and lines[0].startswith("layerlab serve: 127.0.0.1") and '"GET / HTTP/1.1" 200' \
                in lines[0]
        else:
            assert lines == []


def test_binds_127_0_0_1_and_a_free_port_by_default(assets):
    server = make_server(assets=assets)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1" and port > 0
        with pytest.raises(ArgumentError, match=rf"layerlab serve cannot listen on 127.0.0.1:{port} \(.*\)\. Fix: "
                                                r"another --port \(0 picks a free one\) or --host"):
            make_server(port=port, assets=assets)
    finally:
        server.server_close()
