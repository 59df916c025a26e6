"""MACs against torch.utils.flop_counter, params of local/tiled layers against hand formulas,
transposed conv's effective MACs against a ones-propagation count, buffers, memory conventions."""

from __future__ import annotations

from dataclasses import replace
from math import prod

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from layerlab.arith import (
    MACS_CONVENTION,
    AdaptivePoolSpec,
    ConvSpec,
    ConvTransposeSpec,
    DenseSpec,
    LocalSpec,
    NormSpec,
    PoolSpec,
    TiledSpec,
    activation_memory,
    flops,
)
from layerlab.errors import ArgumentError


def counted_flops(module: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """FLOPs torch's FlopCounterMode counts for one sample."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.zeros(1, *shape))
    return counter.get_total_flops()


@pytest.mark.parametrize("c_in, c_out, bias", [(7, 3, True), (4096, 10, False), (1, 1, True)])
def test_linear_macs_match_flop_counter(c_in, c_out, bias):
    report = DenseSpec(c_out, c_in, bias).analyse((c_in,))
    assert report.macs == counted_flops(torch.nn.Linear(c_in, c_out, bias), (c_in,)) // 2
    assert report.flops == flops(report.macs) == 2 * report.macs


CONV_CONFIGS = [
    # ndim, c_in, c_out, size, kernel, stride, padding, dilation, groups
    (1, 3, 8, (20,), 5, 2, 1, 1, 1),
    (1, 4, 6, (9,), 3, 1, "same", 2, 2),
    (2, 3, 16, (12, 10), 3, 1, 1, 1, 1),
    (2, 6, 9, (11, 11), (3, 2), (2, 1), (1, 0), (1, 2), 3),
    (2, 8, 8, (8, 8), 3, 1, 1, 1, 8),  # depthwise
    (3, 2, 4, (5, 6, 7), 3, (1, 2, 2), 1, 1, 2),
]


@pytest.mark.parametrize("ndim, c_in, c_out, size, kernel, stride, padding, dilation, groups", CONV_CONFIGS)
def test_conv_macs_match_flop_counter(ndim, c_in, c_out, size, kernel, stride, padding, dilation, groups):
    module = getattr(torch.nn, f"Conv{ndim}d")(c_in, c_out, kernel, stride, padding, dilation, groups)
    report = ConvSpec(ndim, c_out, kernel, c_in, stride, padding, dilation, groups).analyse((c_in, *size))
    assert report.macs == counted_flops(module, (c_in, *size)) // 2
    assert report.other_ops["bias_add"] == prod(report.output_shape)


@pytest.mark.parametrize("spec, input_shape", [
    (ConvSpec(2, 8, 3, bias=False), (3, 8, 8)),
    (LocalSpec(2, 8, 3, bias=None), (3, 8, 8)),
    (TiledSpec(2, 8, 3, tile_size=2, bias=None), (3, 8, 8)),
    (ConvSpec(1, 4, 3, bias=False), (2, 10)),
])
def test_a_layer_without_bias_adds_no_bias(spec, input_shape):
    report = spec.analyse(input_shape)
    assert report.other_ops == {}
    with_bias = replace(spec, bias=True if isinstance(spec, ConvSpec) else "location").analyse(input_shape)
    assert with_bias.other_ops == {"bias_add": prod(with_bias.output_shape)}


TRANSPOSED_CONFIGS = [
    # ndim, c_in, c_out, size, kernel, stride, padding, output_padding, dilation, groups
    (1, 3, 5, (7,), 4, 2, 1, 0, 1, 1),
    (1, 4, 4, (5,), 3, 3, 2, 1, 2, 2),
    (2, 100, 512, (1, 1), 4, 1, 0, 0, 1, 1),  # DCGAN generator, first layer
    (2, 8, 6, (4, 5), (4, 3), (2, 1), (1, 0), (1, 0), 1, 2),
    (3, 4, 2, (3, 3, 2), 3, 2, 1, 1, 1, 2),
]


@pytest.mark.parametrize("ndim, c_in, c_out, size, kernel, stride, padding, output_padding, dilation, groups",
                         TRANSPOSED_CONFIGS)
def test_transposed_macs_match_flop_counter(ndim, c_in, c_out, size, kernel, stride, padding,
                                            output_padding, dilation, groups):
    module = getattr(torch.nn, f"ConvTranspose{ndim}d")(c_in, c_out, kernel, stride, padding,
                                                         output_padding, groups, True, dilation)
    spec = ConvTransposeSpec(ndim, c_out, kernel, c_in, stride, padding, output_padding, dilation, groups)
    report = spec.analyse((c_in, *size))
    assert report.macs == counted_flops(module, (c_in, *size)) // 2
    # effective MACs: with a ones input and ones weight (1 channel), the output sums to the number
    # of (input, tap) products that land inside the cropped output
    single = getattr(torch.nn, f"ConvTranspose{ndim}d")(1, 1, kernel, stride, padding, output_padding,
                                                         1, False, dilation)
    with torch.no_grad():
        single.weight.fill_(1.0)
        kept = int(single(torch.ones(1, 1, *size, dtype=torch.float32)).sum().item())
    assert report.macs_effective == c_in * (c_out // groups) * kept
    if padding not in (0, (0,) * ndim):  # padding crops products
        assert report.macs_effective < report.macs


@pytest.mark.parametrize("ndim, c_in, c_out, size, kernel, stride, padding, dilation, groups", CONV_CONFIGS)
@pytest.mark.parametrize("bias", ["location", "shared", None])
def test_local_macs_equal_conv_and_params_follow_formula(ndim, c_in, c_out, size, kernel, stride,
                                                         padding, dilation, groups, bias):
    conv = ConvSpec(ndim, c_out, kernel, c_in, stride, padding, dilation, groups).analyse((c_in, *size))
    local = LocalSpec(ndim, c_out, kernel, c_in, stride, padding, dilation, groups, bias).analyse((c_in, *size))
    assert local.kind == f"LocallyConnected{ndim}d"
    assert local.output_shape == conv.output_shape and local.macs == conv.macs
    k = (kernel,) * ndim if isinstance(kernel, int) else kernel
    out = conv.output_shape[1:]
    biases = {"location": c_out * prod(out), "shared": c_out, None: 0}[bias]
    # ∏out · (C_in/g) · ∏k · C_out + bias
    assert local.params == prod(out) * (c_in // groups) * prod(k) * c_out + biases


@pytest.mark.parametrize("bias", ["location", "shared", None])
def test_tiled_params_use_tile_size(bias):
    # 2→4 channels, 3×3 kernel, 2×3 tiles on a 7×7 input (out 5×5)
    report = TiledSpec(2, 4, 3, (2, 3), 2, bias=bias).analyse((2, 7, 7))
    assert report.kind == "TiledConv2d" and report.output_shape == (4, 5, 5)
    assert report.params == 2 * 3 * 2 * 9 * 4 + {"location": 4 * 6, "shared": 4, None: 0}[bias]
    assert report.macs == ConvSpec(2, 4, 3, 2).analyse((2, 7, 7)).macs


def test_tiled_warns_about_unused_banks():
    report = TiledSpec(1, 1, 3, 8).analyse((1, 7))  # 5 outputs, 8 banks
    assert report.warnings == ("L: tile_size 8 > output size 5: 3 weight bank(s) per dim are never used",)


@pytest.mark.parametrize("module, spec, shape", [
    (torch.nn.BatchNorm2d(16), NormSpec("batch", ndim=2), (16, 5, 5)),
    (torch.nn.BatchNorm1d(8, affine=False), NormSpec("batch", affine=False, ndim=1), (8,)),
    (torch.nn.InstanceNorm2d(6, affine=True, track_running_stats=True), NormSpec("instance", ndim=2), (6, 4, 4)),
    (torch.nn.InstanceNorm1d(6), NormSpec("instance", affine=False, track_running_stats=False), (6, 9)),
    (torch.nn.GroupNorm(4, 12), NormSpec("group", num_groups=4), (12, 3, 3)),
    (torch.nn.LayerNorm((5, 5)), NormSpec("layer", normalized_shape=(5, 5)), (3, 5, 5)),
])
def test_norm_params_and_buffers_match_torch(module, spec, shape):
    report = spec.analyse(shape)
    assert report.params == sum(p.numel() for p in module.parameters())
    assert report.buffers == sum(b.numel() for b in module.buffers())
    assert report.output_shape == tuple(module(torch.zeros(2, *shape)).shape[1:])


def test_pool_named_counts():
    # 3 channels, 2×2 windows on 4×4 → 2×2 outputs: 12 outputs of 4 taps
    assert PoolSpec(2, "max", 2).analyse((3, 4, 4)).other_ops == {"compare": 12 * 3}
    assert PoolSpec(2, "avg", 2).analyse((3, 4, 4)).other_ops == {"add": 12 * 3, "divide": 12}
    # adaptive 7 → 3 windows [0,3) [2,5) [4,7): 3 taps each per dim, 9 per output, 2 channels
    assert AdaptivePoolSpec(2, "max", 3).analyse((2, 7, 7)).other_ops == {"compare": 2 * 9 * (9 - 1)}


def test_adaptive_pool_matches_torch():
    for size, out in [(7, 3), (10, 4), (5, 5), (4, 7), (9, 1)]:
        for op, module in (("avg", torch.nn.AdaptiveAvgPool2d), ("max", torch.nn.AdaptiveMaxPool2d)):
            report = AdaptivePoolSpec(2, op, out).analyse((2, size, size + 1))
            assert report.output_shape == tuple(module(out)(torch.zeros(1, 2, size, size + 1)).shape[1:])


def test_activation_memory_conventions():
    # conv 3×8×8 → 4×8×8 (256 elements), pool → 4×4×4 (64); float16 = 2 bytes, batch 3
    reports = [ConvSpec(2, 4, 3, padding=1).analyse((3, 8, 8)), PoolSpec(2, "max", 2).analyse((4, 8, 8))]
    memory = activation_memory(reports, "float16", batch_size=3)
    assert memory["inference"] == (192 + 256) * 2 * 3  # largest in+out pair: the conv's
    assert memory["training"] == (192 + 256 + 64) * 2 * 3  # the input and every output kept
    assert activation_memory(reports, "torch.float64")["training"] == (192 + 256 + 64) * 8


def test_training_memory_is_never_below_inference_memory():
    # one Linear(10) on 10 features: the input must be kept for the weight gradient
    memory = activation_memory([DenseSpec(10).analyse((10,))], "float32")
    assert memory == {"inference": 80, "training": 80}
    assert activation_memory([], "float32") == {"inference": 0, "training": 0}
    assert "FLOPs = 2 × MACs" in MACS_CONVENTION


def test_activation_memory_rejects_bad_arguments():
    with pytest.raises(ArgumentError, match=r"dtype must be one of float64, .*Received: dtype='float8'"):
        activation_memory([], "float8")
    with pytest.raises(ArgumentError, match=r"batch_size must be a positive integer. Received: batch_size=0"):
        activation_memory([], batch_size=0)


@pytest.mark.parametrize("ndim, c_in, c_out, size, kernel, stride, padding, dilation, groups",
                         [c for c in CONV_CONFIGS if c[0] < 3])
@pytest.mark.parametrize("bias", ["location", "shared", None])
def test_local_and_tiled_specs_match_layerlab_modules(ndim, c_in, c_out, size, kernel, stride, padding,
                                                      dilation, groups, bias):
    """The specs count what layerlab's own LocallyConnected/TiledConv modules allocate and output."""
    import layerlab.nn as lnn

    shape = (c_in, *size)
    spec = LocalSpec(ndim, c_out, kernel, c_in, stride, padding, dilation, groups, bias)
    module_bias = {"location": True, "shared": "shared", None: False}[bias]  # the modules' torch-like bias
    module = getattr(lnn, f"LocallyConnected{ndim}d")(c_in, c_out, kernel, stride, padding, dilation, groups,
                                                       module_bias, input_size=size)
    report = spec.analyse(shape)
    assert report.params == sum(p.numel() for p in module.parameters())
    assert report.output_shape == tuple(module(torch.zeros(1, *shape)).shape[1:])
    tiles = (2,) * ndim
    tiled = getattr(lnn, f"TiledConv{ndim}d")(c_in, c_out, kernel, tiles, stride, padding, dilation, groups,
                                               module_bias)
    tiled_report = TiledSpec(ndim, c_out, kernel, tiles, c_in, stride, padding, dilation, groups, bias).analyse(shape)
    assert tiled_report.params == sum(p.numel() for p in tiled.parameters())
    assert tiled_report.output_shape == tuple(tiled(torch.zeros(1, *shape)).shape[1:])
