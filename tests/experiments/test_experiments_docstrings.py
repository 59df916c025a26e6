"""The examples in the docstrings of layerlab.experiments run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["layerlab.experiments.permute", "layerlab.experiments.compare", "layerlab.experiments.defaults",
           "layerlab.experiments.estimate"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
