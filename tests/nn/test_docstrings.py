"""The ``Examples:`` in the docstrings of the layer modules, init and the reference ops run as written."""

import doctest
import importlib

import pytest

MODULES = [
    "layerlab.nn.conv", "layerlab.nn.dense", "layerlab.nn.pooling", "layerlab.nn.normalization",
    "layerlab.nn.flatten", "layerlab.nn.activation", "layerlab.nn.local", "layerlab.nn.tiled",
    "layerlab.init", "layerlab.functional.reference", "layerlab.functional.tiled",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
