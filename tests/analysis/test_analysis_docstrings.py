"""The Examples in the docstrings of layerlab.analysis run and print what they say; docs/summary.md
lists every key of the JSON document."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

from layerlab.analysis import stack_summary
from layerlab.arith import parse_stack

MODULES = ["layerlab.analysis", "layerlab.analysis.modules", "layerlab.analysis.summary", "layerlab.analysis.stack", "layerlab.analysis.ops",
           "layerlab.analysis.trace"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def _documented_keys(heading: str) -> set[str]:
    """The backticked keys in the first column of the table under ``heading`` in docs/summary.md."""
    text = (Path(__file__).parents[2] / "docs" / "summary.md").read_text()
    table = text.split(heading, 1)[1].split("\n\n", 2)[1]
    return {key for line in table.splitlines()[2:] for key in re.findall(r"`([a-z_]+)`", line.split("|")[1])}


def test_json_schema_is_documented():
    data = stack_summary(parse_stack(["Conv2d(4, 3)", "ReLU()"]), (1, 8, 8)).to_dict()
    assert _documented_keys("Each entry of `layers`:") == set(data["layers"][0])
    assert _documented_keys("`total`:") == set(data["total"])
    assert _documented_keys("Schema id `\"layerlab.summary/1\"`") == set(data)
