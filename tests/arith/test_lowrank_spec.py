"""LowRankLocalSpec: params, MACs and the mix count against the torch module, argument messages,
the layer-string parser."""

from __future__ import annotations

import re
from math import prod

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import layerlab.nn as lnn
from layerlab.arith import LowRankLocalSpec, parse_layer, receptive_field
from layerlab.arith.stack import analyse_stack
from layerlab.errors import ArgumentError

# ndim, c_in, c_out, size, kernel, rank, stride, padding, dilation, groups
CONFIGS = [
    (1, 3, 8, (20,), 5, 3, 2, 1, 1, 1),
    (1, 4, 6, (9,), 3, 2, 1, "same", 2, 2),
    (2, 3, 16, (12, 10), 3, 4, 1, 1, 1, 1),
    (2, 6, 9, (11, 11), (3, 2), 2, (2, 1), (1, 0), (1, 2), 3),
    (3, 2, 4, (5, 6, 7), 3, 2, (1, 2, 2), 1, 1, 2),
]


class _MulCounter(TorchDispatchMode):
    """Elements written by element-wise products (the mix of the bases)."""

    PRODUCTS = (torch.ops.aten.mul.Tensor, torch.ops.aten.addcmul.default, torch.ops.aten.addcmul_.default)

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in self.PRODUCTS:
            self.elements += out.numel()
        return out


@pytest.mark.parametrize("ndim, c_in, c_out, size, kernel, rank, stride, padding, dilation, groups", CONFIGS)
@pytest.mark.parametrize("bias, combining", [("location", "factorized"), ("shared", "full"), (None, "factorized")])
def test_counts_match_the_torch_module(ndim, c_in, c_out, size, kernel, rank, stride, padding, dilation, groups,
                                       bias, combining):
    shape = (c_in, *size)
    spec = LowRankLocalSpec(ndim, c_out, kernel, rank, c_in, stride, padding, dilation, groups, bias, combining)
    module = getattr(lnn, f"LowRankLocallyConnected{ndim}d")(
        c_in, c_out, kernel, rank, stride, padding, dilation, groups,
        {"location": True, "shared": "shared", None: False}[bias], input_size=size, combining=combining)
    report = spec.analyse(shape)
    assert report.params == sum(p.numel() for p in module.parameters())
    x = torch.zeros(1, *shape)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = module(x)
    assert report.output_shape == tuple(out.shape[1:])
    assert report.macs == counter.get_total_flops() // 2  # the one convolution with R·C_out outputs
    with _MulCounter() as muls, torch.no_grad():
        module(x)
    assert report.other_ops["combine"] == muls.elements  # one product per basis, channel and position
    positions = prod(report.output_shape[1:])
    assert report.other_ops.get("bias_add", 0) == {"location": rank, "shared": 1, None: 0}[bias] * c_out * positions


def test_params_by_hand_and_redundant_rank_warning():
    report = LowRankLocalSpec(2, 8, 3, rank=4).analyse((1, 6, 6))  # out 4×4
    assert report.params == 4 * 8 * 9 + 4 * (4 + 4) + 4 * 8
    full = LowRankLocalSpec(2, 8, 3, rank=4, combining="full", bias="shared").analyse((1, 6, 6))
    assert full.params == 4 * 8 * 9 + 4 * 16 + 8
    assert full.warnings == ()
    assert LowRankLocalSpec(1, 2, 3, rank=8).analyse((1, 10)).warnings == ()  # rank = positions: the local end
    many = LowRankLocalSpec(1, 2, 3, rank=9).analyse((1, 10))  # 8 positions
    assert many.warnings == ("rank 9 > 8 output positions: a rank of 8 already gives every position its own "
                             "filter bank",)


def test_receptive_field_is_the_window():
    reports = analyse_stack([LowRankLocalSpec(2, 4, 3, rank=2, padding=1, stride=2),
                             LowRankLocalSpec(2, 4, 3, rank=2, dilation=2)], (1, 16, 16))
    field = receptive_field(reports, (1, 16, 16))
    # 3 taps at jump 1, then 3 taps of dilation 2 at jump 2: 3 + 2·(5 − 1) = 11 input pixels
    assert [d.size for d in field[-1].dims] == [11, 11]


@pytest.mark.parametrize("make, message", [
    (lambda: LowRankLocalSpec(2, 8, 3, rank=0),
     "LowRankLocallyConnected2d: rank must be a positive integer. Received: rank=0"),
    (lambda: LowRankLocalSpec(2, 8, 3, rank=2, combining="rows"),
     "LowRankLocallyConnected2d: combining must be one of 'factorized', 'full'. Received: combining='rows'"),
    (lambda: LowRankLocalSpec(2, 8, 3, rank=2, normalize="norm"),
     "LowRankLocallyConnected2d: normalize must be one of 'softmax', 'l2', None. Received: normalize='norm'"),
    (lambda: LowRankLocalSpec(2, 8, 3, rank=2, bias=True),
     "LowRankLocallyConnected2d: bias must be one of 'location', 'shared', None. Received: bias=True"),
    (lambda: LowRankLocalSpec(2, 9, 3, rank=2, groups=2),
     "LowRankLocallyConnected2d: groups must divide out_channels. Received: groups=2, out_channels=9"),
])
def test_argument_messages(make, message):
    with pytest.raises(ArgumentError, match=re.escape(message)):
        make()


def test_parse_layer():
    assert parse_layer("LowRankLocallyConnected2d(8, 3, rank=4)") == LowRankLocalSpec(2, 8, 3, rank=4)
    assert parse_layer("LowRankLocallyConnected1d(8, 3, 2, padding=1, bias='shared', combining='full', "
                       "normalize=None)") == LowRankLocalSpec(1, 8, 3, 2, padding=1, bias="shared", combining="full",
                                                              normalize=None)
    with pytest.raises(ArgumentError, match=re.escape(
            "LowRankLocallyConnected2d needs rank; positional order is out_channels, kernel_size, rank, stride, "
            "padding, dilation, groups, bias, e.g. LowRankLocallyConnected2d(64, 3, 4)")):
        parse_layer("LowRankLocallyConnected2d(8, 3)")
    with pytest.raises(ArgumentError, match=re.escape("argument normalize must be None or one of 'softmax', 'l2'")):
        parse_layer("LowRankLocallyConnected2d(8, 3, rank=4, normalize='norm')")
