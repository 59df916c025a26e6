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


def test_public_names_resolve_lazily():
    import layerlab

    ours = [n for n, m in layerlab._EXPORTS.items() if m.startswith(("layerlab.convert", "layerlab.viz"))]
    functions = {"dense_matrix", "convert_model", "dense_to_local", "matrix_picture", "receptive_map"}
    assert functions <= set(ours)
    assert all(callable(getattr(layerlab, n)) for n in functions)
