"""Every error message of layerlab.arith, pinned: who, what was expected, what was received, fix."""

from __future__ import annotations

import re

import pytest

from layerlab.arith import (
    AdaptivePoolSpec,
    ConvSpec,
    ConvTransposeSpec,
    DenseSpec,
    ElementwiseSpec,
    FlattenSpec,
    LocalSpec,
    NormSpec,
    PoolSpec,
    TiledSpec,
    UpsampleSpec,
    analyse_stack,
    global_pool,
    receptive_field,
    solve,
    upsample,
)
from layerlab.errors import ArgumentError, LayerlabError, ShapeError

CASES = [
    # (id, call, error type, exact text expected in the message)
    ("ndim", lambda: ConvSpec(4, 8, 3), ArgumentError, "ConvSpec: ndim must be 1, 2 or 3. Received: ndim=4"),
    ("kernel 0", lambda: ConvSpec(2, 8, (0, 3)), ArgumentError,
     "Conv2d: kernel_size must be positive integers. Received: kernel_size=(0, 3)"),
    ("kernel length", lambda: ConvSpec(2, 8, (3, 3, 3)), ArgumentError,
     "Conv2d: kernel_size must be an int or a tuple of 2 ints. Received: kernel_size=(3, 3, 3)"),
    ("kernel bool", lambda: ConvSpec(2, 8, True), ArgumentError,
     "Conv2d: kernel_size must be an int or a tuple of 2 ints. Received: kernel_size=True"),
    ("kernel float", lambda: ConvSpec(1, 8, 3.0), ArgumentError,
     "Conv1d: kernel_size must be an int or a tuple of 1 int. Received: kernel_size=3.0"),
    ("receptive field input", lambda: receptive_field([], (3, -1)), ShapeError,
     "receptive_field: input_shape must be a non-empty tuple of positive ints per sample"),
    ("stride 0", lambda: ConvSpec(2, 8, 3, stride=(0, 1)), ArgumentError,
     "Conv2d: stride must be positive integers. Received: stride=(0, 1)"),
    ("negative padding", lambda: ConvSpec(1, 8, 3, padding=-1), ArgumentError,
     "Conv1d: padding must be non-negative integers. Received: padding=-1"),
    ("padding string", lambda: ConvSpec(2, 8, 3, padding="full"), ArgumentError,
     "Conv2d: padding must be an int, a tuple of 2 ints, 'same' or 'valid'. Received: padding='full'"),
    ("padding string 1d", lambda: ConvSpec(1, 8, 3, padding="full"), ArgumentError,
     "Conv1d: padding must be an int, a tuple of 1 int, 'same' or 'valid'. Received: padding='full'"),
    ("same with stride", lambda: ConvSpec(2, 8, 3, stride=2, padding="same"), ArgumentError,
     "Conv2d: padding='same' needs stride 1 (as torch: strided 'same' is not supported). Received: "
     "stride=2. Fix: use stride=1, or an explicit padding such as padding=1"),
    ("groups in", lambda: ConvSpec(2, 8, 3, in_channels=6, groups=4), ArgumentError,
     "Conv2d: groups must divide in_channels. Received: groups=4, in_channels=6 (6 / 4 = 1.5); use a divisor of 6"),
    ("groups out", lambda: ConvSpec(2, 6, 3, groups=4), ArgumentError,
     "Conv2d: groups must divide out_channels. Received: groups=4, out_channels=6"),
    ("groups inferred", lambda: ConvSpec(2, 8, 3, groups=4).analyse((6, 8, 8)), ShapeError,
     "Conv2d(? → 8, kernel_size=3, groups=4): groups=4 must divide the 6 input channels (6 / 4 = 1.5)"),
    ("out_channels 0", lambda: ConvSpec(2, 0, 3), ArgumentError,
     "Conv2d: out_channels must be a positive integer. Received: out_channels=0"),
    ("bias type", lambda: ConvSpec(2, 8, 3, bias="yes"), ArgumentError,
     "Conv2d: bias must be True or False. Received: bias='yes'"),
    ("padding mode", lambda: ConvSpec(2, 8, 3, padding_mode="mirror"), ArgumentError,
     "Conv2d: padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular'. Received: padding_mode='mirror'"),
    ("reflect too wide", lambda: ConvSpec(1, 1, 3, padding=3, padding_mode="reflect").analyse((1, 3)), ShapeError,
     "L: padding_mode='reflect' needs padding ≤ 2 for an input of 3, gets 3. Fix: less padding"),
    ("kernel larger than input", lambda: ConvSpec(2, 8, 5).analyse((3, 4, 8)), ShapeError,
     "Conv2d(? → 8, kernel_size=5): H: the kernel spans 1·(5−1) + 1 = 5 but the padded input is only 4 + 0 = 4 "
     "(H: floor((4 + 2·0 − 1·(5−1) − 1)/1) + 1 = 0). Fix: a larger input"),
    ("channels", lambda: ConvSpec(2, 8, 3, in_channels=3).analyse((1, 8, 8)), ShapeError,
     "Conv2d(3 → 8, kernel_size=3) expects 3 input channels, gets 1. Fix: set in_channels=1, or leave "
     "in_channels=None"),
    ("dims", lambda: ConvSpec(2, 8, 3).analyse((3, 8)), ShapeError,
     "Conv2d(? → 8, kernel_size=3) expects a per-sample input (C, H, W) with 3 dims, gets (3, 8) with 2 dims."),
    ("batch dim", lambda: ConvSpec(2, 8, 3).analyse((1, 3, 8, 8)), ShapeError,
     "gets (1, 3, 8, 8) with 4 dims. Shapes are per sample: drop the batch dimension."),
    ("flat into conv", lambda: ConvSpec(2, 8, 3).analyse((30,)), ShapeError,
     "gets (30,) with 1 dim. The input is flat (features): a conv-like layer cannot follow Flatten or Linear."),
    ("input shape", lambda: ConvSpec(2, 8, 3).analyse((3, 0, 8)), ShapeError,
     "Conv2d: input_shape must be a non-empty tuple of positive ints per sample (no batch dimension), "
     "e.g. (3, 32, 32). Received: input_shape=(3, 0, 8)"),
    ("local bias", lambda: LocalSpec(2, 8, 3, bias="channel"), ArgumentError,
     "LocallyConnected2d: bias must be one of 'location', 'shared', None. Received: bias='channel'"),
    ("tile 0", lambda: TiledSpec(2, 8, 3, 0), ArgumentError,
     "TiledConv2d: tile_size must be positive integers. Received: tile_size=0"),
    ("transposed padding string", lambda: ConvTransposeSpec(2, 8, 3, padding="same"), ArgumentError,
     "ConvTranspose2d: padding must be an int or a tuple of 2 ints (torch's transposed convs take no padding "
     "strings). Received: padding='same'"),
    ("output_padding", lambda: ConvTransposeSpec(2, 8, 3, stride=2, output_padding=2), ArgumentError,
     "ConvTranspose2d: output_padding must be smaller than stride or dilation (as torch). Received: "
     "output_padding=2, stride=2, dilation=1"),
    ("transposed output < 1", lambda: ConvTransposeSpec(1, 8, 1, stride=2, padding=1).analyse((3, 1)), ShapeError,
     "L: the output size would be (1 − 1)·2 − 2·1 + 1·(1−1) + 0 + 1 = -1 < 1: padding 1 crops more than the "
     "full output (1 + 0). Fix: less padding or a larger input."),
    ("pool op", lambda: PoolSpec(2, "min", 2), ArgumentError,
     "PoolSpec: op must be one of 'max', 'avg'. Received: op='min'"),
    ("pool padding", lambda: PoolSpec(2, "max", 3, padding=2), ArgumentError,
     "MaxPool2d: padding must be at most half the kernel size (padding ≤ kernel_size // 2, as torch). "
     "Received: padding=2, kernel_size=3"),
    ("avg dilation", lambda: PoolSpec(2, "avg", 3, dilation=2), ArgumentError,
     "AvgPool2d: average pooling has no dilation (as torch). Received: dilation=2"),
    ("avg pool 3d", lambda: PoolSpec(3, "avg", 2).analyse((1, 1, 4, 4)), ShapeError,
     "AvgPool3d(kernel_size=2): the input 1×4×4 is smaller than the kernel 2×2×2: torch's avg_pool3d needs "
     "every input size ≥ kernel_size (padding does not count)."),
    ("adaptive size", lambda: AdaptivePoolSpec(2, "avg", 0), ArgumentError,
     "AdaptiveAvgPool2d: output_size must be a positive int or a tuple of 2 positive ints (or None to keep a "
     "dim). Received: output_size=0"),
    ("global pool flat", lambda: global_pool("max").analyse((5,)), ShapeError,
     "GlobalMaxPool() expects a per-sample input (C, L), (C, H, W) or (C, D, H, W), gets (5,)."),
    ("norm kind", lambda: NormSpec("weight"), ArgumentError,
     "NormSpec: kind must be one of 'batch', 'layer', 'group', 'instance'. Received: kind='weight'"),
    ("group norm groups", lambda: NormSpec("group"), ArgumentError,
     "GroupNorm: num_groups must be a positive integer. Received: num_groups=None"),
    ("group norm divides", lambda: NormSpec("group", num_features=10, num_groups=4), ArgumentError,
     "GroupNorm: num_groups must divide num_features. Received: num_groups=4, num_features=10"),
    ("group norm input", lambda: NormSpec("group", num_groups=4).analyse((10, 3, 3)), ShapeError,
     "GroupNorm(4, ?): num_groups=4 must divide the 10 input channels. Fix: a divisor of 10."),
    ("layer norm input", lambda: NormSpec("layer", normalized_shape=(5, 5)).analyse((3, 4, 4)), ShapeError,
     "LayerNorm(5) normalises the trailing dims (5, 5), but the input is (3, 4, 4). Fix: normalized_shape=(4, 4)."),
    ("layer norm shape", lambda: NormSpec("layer", normalized_shape=(0,)), ArgumentError,
     "LayerNorm: normalized_shape must be a positive int or a tuple of positive ints. Received: normalized_shape=(0,)"),
    ("batch norm dims", lambda: NormSpec("batch", ndim=2).analyse((3, 8)), ShapeError,
     "BatchNorm2d(?) expects a per-sample input with 3 dims, gets (3, 8)."),
    ("batch norm features", lambda: NormSpec("batch", num_features=8).analyse((3, 8, 8)), ShapeError,
     "BatchNorm(8) expects 8 input channels, gets 3. Fix: set num_features=3"),
    ("instance norm flat", lambda: NormSpec("instance").analyse((3,)), ShapeError,
     "InstanceNorm(?) needs spatial dims (C, L, ...), gets (3,)."),
    ("flatten batch", lambda: FlattenSpec(0).analyse((3, 4)), ArgumentError,
     "Flatten(start_dim=0): start_dim=0 flattens the batch dimension; shapes here are per sample. Fix: start_dim=1."),
    ("flatten range", lambda: FlattenSpec(1, 5).analyse((3, 4)), ShapeError,
     "Flatten(end_dim=5): dims out of range for the per-sample input (3, 4) (torch dims 0..2, 0 = batch)."),
    ("flatten order", lambda: FlattenSpec(2, 1).analyse((3, 4)), ShapeError,
     "Flatten(start_dim=2, end_dim=1): start_dim cannot come after end_dim (dims 2 > 1 for the input (3, 4))."),
    ("flatten type", lambda: FlattenSpec("1"), ArgumentError, "Flatten: start_dim must be an int. Received: start_dim='1'"),
    ("elementwise name", lambda: ElementwiseSpec(""), ArgumentError,
     "ElementwiseSpec: name must be a non-empty string. Received: name=''"),
    ("elementwise params", lambda: ElementwiseSpec("PReLU", params=-1), ArgumentError,
     "PReLU: params must be a non-negative integer. Received: params=-1"),
    ("upsample size", lambda: upsample(size="big"), ArgumentError,
     "Upsample: size must be a positive int or a tuple of 1 to 3 positive ints. Received: size='big'"),
    ("upsample size 0", lambda: upsample(size=(4, 0)), ArgumentError,
     "Upsample: size must be positive integers. Received: size=(4, 0)"),
    ("adaptive size, ndim from input", lambda: AdaptivePoolSpec(None, "avg", (1, 2, 3, 4)), ArgumentError,
     "AdaptiveAvgPool: output_size must be a positive int or a tuple of 1 to 3 positive ints (or None to keep a "
     "dim). Received: output_size=(1, 2, 3, 4)"),
    ("upsample both", lambda: UpsampleSpec(2, size=4, scale_factor=2), ArgumentError,
     "Upsample: give exactly one of size and scale_factor. Received: size=4, scale_factor=2"),
    ("upsample none", lambda: UpsampleSpec(2), ArgumentError,
     "Upsample: give exactly one of size and scale_factor. Received: size=None, scale_factor=None"),
    ("upsample scale", lambda: UpsampleSpec(2, scale_factor=0), ArgumentError,
     "Upsample: scale_factor must be a positive number or a tuple of 2 positive numbers. Received: scale_factor=0"),
    ("upsample mode", lambda: UpsampleSpec(2, scale_factor=2, mode="cubic"), ArgumentError,
     "Upsample: mode must be one of 'nearest', 'nearest-exact', 'linear', 'bilinear', 'bicubic', 'trilinear', "
     "'area'. Received: mode='cubic'"),
    ("upsample mode ndim", lambda: UpsampleSpec(1, scale_factor=2, mode="bilinear"), ArgumentError,
     "Upsample: mode='bilinear' works on 2-d inputs only (as torch). Received: mode='bilinear' with ndim=1"),
    ("upsample mode input", lambda: upsample(scale_factor=2, mode="bilinear").analyse((3, 8)), ShapeError,
     "Received: mode='bilinear' with ndim=1 (the input (3, 8) has 1 spatial dim)"),
    ("upsample floor", lambda: UpsampleSpec(1, scale_factor=0.1).analyse((1, 5)), ShapeError,
     "Upsample(scale_factor=0.1): L: floor(5·0.1) = 0 < 1. Fix: a larger scale_factor or input."),
    ("dense features", lambda: DenseSpec(10, 4096).analyse((16384,)), ShapeError,
     "Linear(4096 → 10) expects 4096 input features, gets 16384: 16384 = 4096·2², as if the feature maps were "
     "2× larger per side. Fix: set in_features=16384 (or None to infer it)."),
    ("dense features, no square", lambda: DenseSpec(10, 4096).analyse((8192,)), ShapeError,
     "Linear(4096 → 10) expects 4096 input features, gets 8192. Fix: set in_features=8192 (or None to infer it)."),
    ("dense not flat", lambda: DenseSpec(10, 4096).analyse((64, 16, 16)), ShapeError,
     "Linear(4096 → 10) expects 4096 input features in the last dim, gets 16: the input (64, 16, 16) is not "
     "flat. Fix: add Flatten() before it (it gives 64·16·16 = 16384 features, then set in_features=16384 (or "
     "None to infer it))."),
    ("dense not flat, flatten fits", lambda: DenseSpec(10, 784).analyse((1, 28, 28)), ShapeError,
     "Linear(784 → 10) expects 784 input features in the last dim, gets 28: the input (1, 28, 28) is not "
     "flat. Fix: add Flatten() before it (it gives 1·28·28 = 784 features)."),
    ("dense out", lambda: DenseSpec(0), ArgumentError,
     "Linear: out_features must be a positive integer. Received: out_features=0"),
    ("solve size", lambda: solve(0, 4, 3), ArgumentError, "solve: in_size must be a positive integer. Received: in_size=0"),
    ("solve transposed", lambda: solve(4, 4, 3, transposed="yes"), ArgumentError,
     "solve: transposed must be None, True or False. Received: transposed='yes'"),
    ("stack item", lambda: analyse_stack([ConvSpec(2, 4, 3), "ReLU"], (1, 8, 8)), ArgumentError,
     "analyse_stack: layer 2 must be a layerlab.arith spec. Received: 'ReLU'"),
    ("stack argument", lambda: analyse_stack([ConvSpec(2, 4, 3), FlattenSpec(0)], (1, 8, 8)), ArgumentError,
     "layer 2: Flatten(start_dim=0): start_dim=0 flattens the batch dimension"),
]


@pytest.mark.parametrize("call, error, text", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_error_message(call, error, text):
    with pytest.raises(error, match=re.escape(text)):
        call()


def test_errors_are_layerlab_and_value_errors():
    for _, call, _, _ in CASES:
        with pytest.raises(LayerlabError):
            call()
        with pytest.raises(ValueError):  # what a plain-PyTorch user catches
            call()
