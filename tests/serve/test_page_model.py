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
from layerlab.serve.api import answer

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


def test_a_unit_of_a_models_row_lights_its_receptive_field(driver, model_server):
    target, base = model_server
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["summary", target, "--input", "1x28x28", "--json"]) == 0
    document = json.loads(out.getvalue())
    page = Page(driver, base)
    driver.get(base)
    page.wait_ready()
    page.click_row(3)  # MaxPool2d(2) after Conv2d(3): a 4×4 field, 2 apart
    page.click_cell("rf-out-cell", "5,2")
    lit = page.js("return [...document.querySelectorAll('[data-testid=\"rf-in-cell\"].rf')].map(c => c.dataset.pos)")
    status, field = answer("/api/rf", "model=1&index=3&out=5,2", document)
    assert status == 200 and field["box"] == [[10, 13], [4, 7]]
    assert set(lit) == {f"{i},{j}" for i in range(10, 14) for j in range(4, 8)}
    assert "model=1&index=3&out=5,2" in driver.current_url  # the URL keeps the chosen unit
    driver.get(driver.current_url)
    page.wait_ready()
    assert set(page.js("return [...document.querySelectorAll('[data-testid=\"rf-in-cell\"].rf')].map(c => c.dataset.pos)")) == set(lit)
