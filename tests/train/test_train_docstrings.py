"""The examples in the docstrings of layerlab.train run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["layerlab.train", "layerlab.train.config", "layerlab.train.schedule", "layerlab.train.signals",
           "layerlab.train.loop"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
