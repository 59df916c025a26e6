"""``layerlab serve`` as a user runs it: the address first on stdout, real requests, a clean stop."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

import layerlab.serve.server
from layerlab.cli.main import main
from layerlab.serve import api

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIRST_LINE = re.compile(r"layerlab serve: http://127\.0\.0\.1:(\d+)/\n")


def start(*argv: str, env: dict | None = None, cwd=None) -> tuple[subprocess.Popen, str]:
    """``layerlab serve *argv`` in a subprocess; returns it and the URL of its first stdout line."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    process = subprocess.Popen([sys.executable, "-m", "layerlab", "serve", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=environment, cwd=cwd)
    line = process.stdout.readline()
    match = FIRST_LINE.fullmatch(line)
    if match is None:
        process.kill()
        pytest.fail(f"first line {line!r}; stderr: {process.communicate(timeout=30)[1]}")
    return process, line.split(": ", 1)[1].strip()


def get(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, json.loads(response.read())


def stop(process: subprocess.Popen, signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    return process.returncode, err


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_prints_the_address_first_answers_and_stops_cleanly(signum, code):
    process, url = start("--no-browser", "--port", "0")
    try:
        status, document = get(url + "api/view?input=3x32x32&layer=Conv2d(8,3,stride=2)")
        assert status == 200 and document["layer"]["output_shape_text"] == "8×15×15"
    finally:
        returncode, err = stop(process, signum)
    assert returncode == code
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "layerlab serve: interrupted"


def test_opens_the_page_in_the_browser_the_environment_names(tmp_path):
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    process, url = start("--port", "0", env={"BROWSER": str(browser), "DISPLAY": ":0"})
    try:
        for _ in range(100):
            if opened.exists() and opened.read_text().strip():
                break
            get(url + "api/view?input=1x4&layer=ReLU()")  # the server answers while the browser starts
    finally:
        stop(process, signal.SIGINT)
    assert opened.read_text().strip() == url


def test_without_a_display_no_browser_is_started_and_the_server_answers(tmp_path):
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    environment = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    environment.update(BROWSER=str(browser), PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-m", "layerlab", "serve", "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=environment)
    try:
        url = process.stdout.readline().split(": ", 1)[1].strip()
        assert get(url + "api/view?input=1x4&layer=ReLU()")[0] == 200
    finally:
        stop(process, signal.SIGINT)
    assert not opened.exists()


def test_model_serves_the_summary_document(tmp_path, capsys, monkeypatch):
    """In-process (torch is imported once): the server ``layerlab serve --model`` builds holds the document
    ``layerlab summary --json`` prints, and the address is the first line."""
    (tmp_path / "net.py").write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))\n")
    monkeypatch.chdir(tmp_path)
    built = []

    def make_server(*args, **kwargs):
        server = real(*args, **kwargs)
        server.serve_forever = lambda: None  # answer nothing: the command returns at once
        built.append(server)
        return server

    real = layerlab.serve.server.make_server
    monkeypatch.setattr(layerlab.serve.server, "make_server", make_server)
    assert main(["serve", "--no-browser", "--model", "net.py:build", "--input", "3x8x8"]) == 0
    first = capsys.readouterr().out
    assert FIRST_LINE.fullmatch(first) and first.endswith(f":{built[0].server_address[1]}/\n")
    assert main(["summary", "net.py:build", "--input", "3x8x8", "--json"]) == 0
    assert built[0].model == json.loads(capsys.readouterr().out)
    assert api.answer("/api/model", "", built[0].model) == (200, built[0].model)


@pytest.mark.parametrize("argv, message", [
    (["--model", "net.py:build"], "--model needs --input SHAPE, the model's per-sample input, e.g. layerlab serve "
                                  "--model net.py:build --input 3x32x32"),
    (["--input", "3x32x32"], "--input is the input shape of --model; give --model FILE.py:NAME too (the page itself "
                             "takes any input, e.g. http://HOST:PORT/?input=3x32x32&layer=Conv2d(8,3))"),
    (["--port", "70000"], "--port must be 0 to 65535 (0 picks a free port). Received: --port 70000"),
    (["--model", "missing.py:build", "--input", "3x8x8"], "model file 'missing.py' does not exist"),
])
def test_bad_arguments_exit_2_with_a_message(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "--no-browser", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"layerlab serve: error: {message}")
