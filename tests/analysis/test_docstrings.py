"""The Examples in the docstrings of layerlab.analysis run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["layerlab.analysis", "layerlab.analysis.modules", "layerlab.analysis.summary", "layerlab.analysis.stack",
           "layerlab.analysis.trace"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
