"""arith's element-wise table against torch: which input elements each output element reads
(counted on the Jacobian of the real module), and how ``spec_of`` maps the torch classes onto it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import layerlab.nn as lnn
from layerlab.analysis import spec_of
from layerlab.arith import ElementwiseSpec
from layerlab.arith.elementwise import ALONG_DIM, OPS_PER_ELEMENT, is_pointwise

SHAPE = (3, 4, 5)  # per sample (Dropout1d takes one spatial dim: 3×20)


def _module(name: str) -> nn.Module:
    cls = getattr(nn, name)
    return (cls(dim=1) if name in ALONG_DIM else cls()).double().eval()


def _inputs_read(module: nn.Module) -> torch.Tensor:
    """Per output element, the number of input elements with a non-zero derivative."""
    shape = (SHAPE[0], SHAPE[1] * SHAPE[2]) if isinstance(module, nn.Dropout1d) else SHAPE
    x = torch.rand(1, *shape, dtype=torch.float64) * 0.8 + 0.1  # inside every function's non-flat range
    jac = torch.autograd.functional.jacobian(module, x).reshape(x.numel(), x.numel())
    return (jac != 0).sum(dim=1)


@pytest.mark.parametrize("name", sorted(OPS_PER_ELEMENT))
def test_table_matches_the_jacobian_of_the_torch_layer(name):
    reads = _inputs_read(_module(name))
    expected = SHAPE[0] if name in ALONG_DIM else 1  # softmax over dim=1 (channels) reads 3 inputs
    assert reads.tolist() == [expected] * reads.numel()
    assert is_pointwise(name) == (expected == 1)


@pytest.mark.parametrize("name", sorted(OPS_PER_ELEMENT))
def test_spec_of_maps_every_table_entry(name):
    spec = spec_of(_module(name))
    assert isinstance(spec, ElementwiseSpec) and spec.name == name
    assert spec.ops_per_element == OPS_PER_ELEMENT[name] == (0 if name == "Identity" else 1)


def test_layerlab_layers_count_like_their_torch_classes():
    for name in lnn.activation.__all__:
        ours, theirs = spec_of(getattr(lnn, name)()), spec_of(getattr(nn, name)())
        assert ours == theirs, name
