"""``layerlab serve --model FILE.py:NAME --input SHAPE``: the page opens on the model's table, the
numbers of ``layerlab summary FILE.py:NAME --input SHAPE --json``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import pytest
from browser_page import ROOT, Page, stop

from layerlab.cli.main import main

MODEL = """
import torch.nn as nn


def build():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 13 * 13, 10))
"""


@pytest.fixture(scope="module")
def model_server(tmp_path_factory, driver):
    """A second server, started with ``--model`` (after the browser: no browser, no server)."""
    path = tmp_path_factory.mktemp("model") / "net.py"
    path.write_text(MODEL)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "layerlab", "serve", "--no-browser", "--port", "0", "--model",
                                f"{path}:build", "--input", "1x28x28"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=env)
    line = process.stdout.readline()
    assert line.startswith("layerlab serve: http://"), line
    yield f"{path}:build", line.split(": ", 1)[1].strip()
    stop(process)


def test_the_page_opens_on_the_models_table(driver, model_server):
    target, base = model_server
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["summary", target, "--input", "1x28x28", "--json"]) == 0
    expected = json.loads(out.getvalue())
    page = Page(driver, base)
    driver.get(base)
    page.wait_ready()
    assert page.text("params") == f"{expected['total']['params']:,}"
    assert page.text("macs") == f"{expected['total']['macs']:,}"
    assert page.text("output-shape") == "10"
    rows = page.js("return [...document.querySelectorAll('#stack-table tbody tr')].map(tr => tr.cells[2].textContent)")
    assert rows == ["×".join(map(str, layer["output_shape"][1:])) for layer in expected["layers"]]
    assert not page.testid("error")
