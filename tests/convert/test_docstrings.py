"""The Examples in the docstrings of layerlab.convert and layerlab.viz run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

import layerlab.convert

MODULES = ["layerlab.convert.matrix", "layerlab.convert.layers", "layerlab.convert.model", "layerlab.convert.project",
           "layerlab.viz.matrix", "layerlab.viz.coverage", "layerlab.viz.filters", "layerlab.viz.family",
           "layerlab.viz.receptive"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    globs = {**vars(module), "torch": torch, **{n: getattr(layerlab.convert, n) for n in layerlab.convert.__all__}}
    result = doctest.testmod(module, extraglobs=globs, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
