"""Every remaining error message of layerlab.convert, pinned: who, expected, received, fix."""

from __future__ import annotations

import pytest
from torch import nn

import layerlab.nn as lnn
from layerlab.arith import ConvSpec
from layerlab.convert import convert_model, dense_matrix, dense_to_conv
from layerlab.convert.geometry import geometry_of
from layerlab.errors import ArgumentError, ShapeError


class FakeConv(nn.Module):
    """A module describing itself with a spec (Contract 2), with settable odd attributes."""

    def __init__(self, spec, padding_mode="zeros"):
        super().__init__()
        self.spec, self.padding_mode = spec, padding_mode

    def layer_spec(self):
        return self.spec


def test_geometry_errors():
    with pytest.raises(ArgumentError, match=r"FakeConv\(\): padding_mode must be one of 'zeros', 'reflect', "
                       r"'replicate', 'circular'\. Received: padding_mode='mirror'"):
        geometry_of(FakeConv(ConvSpec(2, 4, 3, in_channels=2), padding_mode="mirror"))
    spec = ConvSpec(2, 4, 3, in_channels=2)
    object.__setattr__(spec, "stride", (1, 2, 3))
    with pytest.raises(ArgumentError, match=r"FakeConv\(\): stride must be an int or a tuple of 2 ints\. Received: stride=\(1, 2, 3\)"):
        geometry_of(FakeConv(spec))


def test_local_layer_on_another_input_size():
    local = lnn.LocallyConnected2d(1, 2, 3, input_size=(5, 5))
    with pytest.raises(ShapeError, match=r"this layer was built for spatial input size \(5, 5\). Received: "
                       r"input_shape=\(1, 6, 6\); build a new layer for this size"):
        dense_matrix(local, (1, 6, 6))


@pytest.mark.parametrize("layer, shape, match", [
    (nn.AvgPool2d(2), (3, 4), r"expected a per-sample input \(C, \*spatial\) with 2 spatial sizes. Received: "
                              r"input_shape=\(3, 4\)"),
    (nn.AvgPool2d(5), (1, 3, 3), r"the input \(1, 3, 3\) is too small for kernel_size=\(5, 5\); output would be "
                                 r"\(0, 0\). Use a larger input or a smaller kernel"),
    (nn.AdaptiveAvgPool1d(2), (1, 3, 3), r"expected a per-sample input \(C, \*spatial\) with 1 spatial sizes. "
                                         r"Received: input_shape=\(1, 3, 3\)"),
    (nn.BatchNorm1d(3).eval(), (4,), r"expected 3 channels first in the per-sample input shape. Received: "
                                     r"input_shape=\(4,\)"),
    (lnn.GlobalAvgPool(), (4,), r"expected a per-sample input \(C, \*spatial\) with 1 to 3 spatial sizes. "
                                r"Received: input_shape=\(4,\)"),
])
def test_shape_errors_of_constant_layers(layer, shape, match):
    with pytest.raises(ShapeError, match=match):
        dense_matrix(layer, shape)


def test_environment_limit_must_be_positive(monkeypatch):
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "0")
    with pytest.raises(ArgumentError, match=r"the environment variable LAYERLAB_MAX_BYTES must be positive. "
                       r"Received: '0'"):
        dense_matrix(nn.Conv1d(1, 1, 1), (1, 3))


def test_convert_model_argument_errors():
    with pytest.raises(ArgumentError, match=r"convert_model: expected a torch.nn.Module. Received: function"):
        convert_model(lambda x: x, to="local", input_shape=(1, 3))
    with pytest.raises(ShapeError, match=r"input_shape must be a per-sample shape of positive sizes, e.g. "
                       r"\(3, 32, 32\). Received: input_shape=\(0, 3\)"):
        convert_model(nn.Sequential(nn.Conv1d(1, 1, 1)), to="local", input_shape=(0, 3))


def test_dense_to_conv_of_a_lazy_dense():
    with pytest.raises(ArgumentError, match=r"dense_to_conv: Dense\(3, in_features=\?, bias=True\) is a lazy layer "
                       r"whose weight is not materialised yet. Run one forward pass first"):
        dense_to_conv(lnn.Dense(3), (2, 2, 2))
