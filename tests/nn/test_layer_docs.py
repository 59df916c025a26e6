"""The examples in docs/layers/*.md and docs/dense-vs-conv-vs-local.md run and print what the docs show."""

import contextlib
import io
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted((DOCS / "layers").glob("*.md")) + [DOCS / "dense-vs-conv-vs-local.md"]
BLOCK = re.compile(r"```python\n(.*?)\n```\n\nOutput:\n\n```text\n(.*?)\n```", re.S)


def test_every_layer_kind_has_a_page():
    names = {page.stem for page in PAGES}
    assert {"dense", "conv", "local", "tiled", "transposed", "pooling", "normalisation", "flatten"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_examples_print_what_the_page_shows(page):
    blocks = BLOCK.findall(page.read_text())
    assert blocks, f"{page.name} has no runnable example with its output"
    for code, shown in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(page), "exec"), {"__name__": "__doc_example__"})
        assert out.getvalue().rstrip() == shown
