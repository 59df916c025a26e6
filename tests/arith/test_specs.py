"""Spec details: formulas filled with numbers, warnings, 'same' padding, describe(), upsample,
flatten, adaptive pooling and dense against torch."""

from __future__ import annotations

import pytest
import torch

from layerlab.arith import (
    GLOBAL,
    AdaptivePoolSpec,
    ConvSpec,
    ConvTransposeSpec,
    DenseSpec,
    FlattenSpec,
    LocalSpec,
    PoolSpec,
    UpsampleSpec,
    Window,
    elementwise,
    upsample,
)


def test_conv_formula_and_window():
    report = ConvSpec(2, 64, 3, padding=1).analyse((3, 32, 32))
    assert report.formulas == ("H: floor((32 + 2·1 − 1·(3−1) − 1)/1) + 1 = 32",
                               "W: floor((32 + 2·1 − 1·(3−1) − 1)/1) + 1 = 32")
    assert report.window == (Window(3, 1, 1), Window(3, 1, 1))
    # 64 filters of 3·9 taps at 32·32 positions
    assert (report.params, report.macs, report.flops) == (64 * 27 + 64, 64 * 1024 * 27, 2 * 64 * 1024 * 27)


def test_transposed_formula():
    report = ConvTransposeSpec(2, 256, 4, stride=2, padding=1).analyse((512, 4, 4))
    assert report.formulas[0] == "H: (4 − 1)·2 − 2·1 + 1·(4−1) + 0 + 1 = 8"
    assert report.window[0] == Window(4, 2, 1, 1, transposed=True)


def test_floor_drop_warning():
    report = ConvSpec(1, 1, 3, stride=2).analyse((1, 32))
    # windows start at 0, 2, ..., 28 and end at 30: input position 31 is never read
    assert report.output_shape == (1, 15)
    assert report.warnings == ("L: floor drops the last 1 position(s) of the input: (in + 2p − d(k−1) − 1) mod s = "
                               "(32 + 2·0 − 1·(3−1) − 1) mod 2 = 1",)
    # padding that covers the remainder drops no input row
    assert ConvSpec(1, 1, 3, stride=2, padding=1).analyse((1, 32)).warnings == ()


def test_ceil_mode_formulas_and_warnings():
    # 5 with k2 s2: ceil((5 − 1 − 1)/2) + 1 = 3; the last window covers 4..5, reading 1 past the edge
    report = PoolSpec(2, "max", 2, ceil_mode=True).analyse((1, 5, 4))
    assert report.output_shape == (1, 3, 2)
    assert report.formulas[0] == "H: ceil((5 + 2·0 − 1·(2−1) − 1)/2) + 1 = 3"
    assert report.warnings == ("H: ceil_mode: the last window reads 1 row(s) past the padded edge (it ends at 6, "
                               "the padded input has 5); those taps are ignored",)
    # 5 with k2 s2 p1 ceil: ceil((5 + 2 − 2)/2) + 1 = 4; window 3 starts at 6 ≥ 5 + 1: dropped → 3
    dropped = PoolSpec(1, "avg", 2, padding=1, ceil_mode=True).analyse((1, 5))
    assert dropped.output_shape == (1, 3) == tuple(torch.nn.AvgPool1d(2, padding=1, ceil_mode=True)(
        torch.zeros(1, 1, 5)).shape[1:])
    assert dropped.formulas == ("L: ceil((5 + 2·1 − 1·(2−1) − 1)/2) + 1 − 1 = 3 (the last window would start at 6 ≥ "
                                "in + p = 6, in the padding: dropped)",)


def _torch_same_pads(kernel: int, dilation: int) -> tuple[int, int]:
    """(left, right) zeros torch's Conv1d(padding='same') adds, read off its output: with the
    input 1..n and a one-hot filter on the first (last) tap, the output at ``i`` is the padded input
    at ``i`` (``i + d·(k−1)``), so the leading (trailing) zeros of the output count the left (right)
    padding."""
    n = 16
    x = torch.arange(1, n + 1, dtype=torch.float64).view(1, 1, n)
    pads = []
    for tap, count in ((0, lambda v: int((v.cumsum(0) == 0).sum())),
                       (kernel - 1, lambda v: int((v.flip(0).cumsum(0) == 0).sum()))):
        weight = torch.zeros(1, 1, kernel, dtype=torch.float64)
        weight[0, 0, tap] = 1
        out = torch.nn.functional.conv1d(x, weight, padding="same", dilation=dilation)[0, 0]
        pads.append(count(out))
    return pads[0], pads[1]


# (left, right) by hand: total d·(k − 1), floor of half on the left, the odd extra on the right
@pytest.mark.parametrize("kernel, dilation, pads", [
    (4, 1, (1, 2)), (3, 2, (2, 2)), (2, 3, (1, 2)), (5, 1, (2, 2)), (2, 1, (0, 1)), (4, 3, (4, 5)),
    (1, 4, (0, 0)),
])
def test_same_padding_puts_the_odd_extra_on_the_right(kernel, dilation, pads):
    spec = ConvSpec(1, 2, kernel, padding="same", dilation=dilation)
    assert spec.padding_pairs() == (pads,)
    assert _torch_same_pads(kernel, dilation) == pads
    report = spec.analyse((3, 11))
    torch_out = torch.nn.Conv1d(3, 2, kernel, padding="same", dilation=dilation)(torch.zeros(1, 3, 11))
    assert report.output_shape == tuple(torch_out.shape[1:]) == (2, 11)
    assert LocalSpec(1, 2, kernel, padding="same", dilation=dilation).analyse((3, 11)).output_shape == (2, 11)


def test_describe_is_torch_like_and_compact():
    assert ConvSpec(2, 128, 4, 64, stride=2, padding=1, bias=False).describe() == \
        "Conv2d(64 → 128, kernel_size=4, stride=2, padding=1, bias=False)"
    assert ConvSpec(2, 8, (3, 1)).describe() == "Conv2d(? → 8, kernel_size=(3, 1))"
    assert LocalSpec(1, 4, 3, bias="shared").describe() == "LocallyConnected1d(? → 4, kernel_size=3, bias='shared')"
    assert PoolSpec(2, "max", 2).describe() == "MaxPool2d(kernel_size=2)"
    assert DenseSpec(10, 4096).describe() == "Linear(4096 → 10)"
    assert FlattenSpec().describe() == "Flatten()"
    assert elementwise("ReLU").describe() == "ReLU()"


def test_specs_normalise_arguments():
    assert ConvSpec(2, 8, 3) == ConvSpec(2, 8, (3, 3), stride=(1, 1), padding=[0, 0])
    assert ConvSpec(2, 8, 3).kernel_size == (3, 3)
    assert PoolSpec(2, "max", 3).stride == (3, 3)  # stride None means kernel_size, as torch
    assert hash(ConvSpec(2, 8, 3)) == hash(ConvSpec(2, 8, (3, 3)))


@pytest.mark.parametrize("shape, size, scale, mode", [
    ((3, 7, 5), None, 2, "nearest"), ((3, 7, 5), None, 1.5, "bilinear"), ((3, 7, 5), None, (2.3, 0.5), "nearest"),
    ((3, 7, 5), (4, 9), None, "bicubic"), ((2, 9), None, 3, "linear"), ((2, 3, 4, 5), None, 2, "trilinear"),
    ((3, 7, 5), (3, 2), None, "area"), ((2, 9), None, 2.5, "nearest-exact"),
])
def test_upsample_matches_torch(shape, size, scale, mode):
    report = upsample(size=size, scale_factor=scale, mode=mode).analyse(shape)
    module = torch.nn.Upsample(size=size, scale_factor=scale, mode=mode)
    assert report.output_shape == tuple(module(torch.zeros(1, *shape)).shape[1:])
    assert report.kind == "Upsample" and report.params == 0


def test_upsample_windows():
    nearest = UpsampleSpec(2, scale_factor=2).analyse((1, 4, 4))
    assert nearest.window == (Window(2, 2, 0, transposed=True),) * 2
    assert nearest.other_ops == {"interpolate": 64}
    bilinear = UpsampleSpec(2, scale_factor=2, mode="bilinear").analyse((1, 4, 4))
    assert bilinear.window == (Window(4, 2, 1, transposed=True),) * 2  # the FCN bilinear kernel
    assert bilinear.other_ops == {"interpolate": 64 * 4}
    odd = UpsampleSpec(1, scale_factor=1.5).analyse((1, 4))
    assert odd.window is None and odd.warnings[0].endswith("later jumps are not exact")


@pytest.mark.parametrize("start, end, shape", [(1, -1, (64, 4, 4)), (2, -1, (3, 4, 5)), (1, 2, (3, 4, 5)),
                                               (-2, -1, (3, 4, 5)), (1, 1, (3, 4))])
def test_flatten_matches_torch(start, end, shape):
    report = FlattenSpec(start, end).analyse(shape)
    assert report.output_shape == tuple(torch.nn.Flatten(start, end)(torch.zeros(2, *shape)).shape[1:])
    assert report.window == (None if report.output_shape == shape else GLOBAL)


def test_flatten_formula():
    assert FlattenSpec().analyse((64, 16, 16)).formulas == ("features: 64·16·16 = 16384",)


@pytest.mark.parametrize("output_size, shape", [(3, (2, 7, 9)), ((None, 2), (2, 7, 9)), ((4, 1), (2, 5, 5))])
def test_adaptive_pool_matches_torch(output_size, shape):
    report = AdaptivePoolSpec(2, "avg", output_size).analyse(shape)
    assert report.output_shape == tuple(torch.nn.AdaptiveAvgPool2d(output_size)(torch.zeros(1, *shape)).shape[1:])


def test_adaptive_pool_uneven_windows_warn():
    report = AdaptivePoolSpec(1, "avg", 4).analyse((1, 10))
    # windows [0,3) [2,5) [5,8) [7,10): sizes 3, steps 2 and 3
    assert report.warnings == ("L: 10 → 4: windows are uneven (sizes 3, steps 2/3); the receptive field uses "
                               "window 3 and stride 3 (an upper bound)",)


def test_dense_on_last_dim_matches_torch():
    report = DenseSpec(5).analyse((4, 3, 7))
    assert report.output_shape == tuple(torch.nn.Linear(7, 5)(torch.zeros(1, 4, 3, 7)).shape[1:])
    assert report.macs == 4 * 3 * 7 * 5 and report.params == 7 * 5 + 5


def test_elementwise_counts():
    assert elementwise("ReLU").analyse((4, 2)).other_ops == {"activation": 8}
    assert elementwise("Identity").analyse((4, 2)).other_ops == {}
    assert elementwise("Dropout").analyse((4, 2)).window is None


def test_numpy_integers_are_plain_ints_after_construction():
    import numpy as np

    spec = ConvSpec(2, np.int64(8), np.int32(3), in_channels=np.int64(3), groups=np.int64(1))
    assert spec == ConvSpec(2, 8, 3, 3) and type(spec.out_channels) is int
    assert spec.describe() == "Conv2d(3 → 8, kernel_size=3)"
    assert spec.analyse((np.int64(3), np.int64(8), 8)).output_shape == (8, 6, 6)
    assert DenseSpec(np.int64(4)).analyse(torch.Size([5])).output_shape == (4,)


@pytest.mark.parametrize("spec, text", [
    (ConvTransposeSpec(1, 4, 3, stride=2, padding=1, output_padding=1, dilation=2, groups=2, bias=False),
     "ConvTranspose1d(? → 4, kernel_size=3, stride=2, padding=1, output_padding=1, dilation=2, groups=2, bias=False)"),
    (ConvSpec(2, 4, 3, padding=1, dilation=2, groups=2, bias=False),
     "Conv2d(? → 4, kernel_size=3, padding=1, dilation=2, groups=2, bias=False)"),
    (LocalSpec(2, 4, 3, padding=1, dilation=2, groups=2, bias="shared"),
     "LocallyConnected2d(? → 4, kernel_size=3, padding=1, dilation=2, groups=2, bias='shared')"),
])
def test_describe_lists_every_option_in_torchs_order(spec, text):
    assert spec.describe() == text
