"""Exactness of conv -> local -> dense, tiled -> local and dense -> conv in float64: outputs and
gradients (input and weights) agree to 1e-10 across 1d/2d/3d, stride, padding (incl. 'same' and
non-zero padding modes), dilation, groups and bias. The references are the original layers' own
forward passes (torch's conv, layerlab's tiled conv) and naive loops over positions."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

import layerlab.nn as lnn
from layerlab.convert import conv_to_dense, conv_to_local, dense_to_conv, local_to_dense, tiled_to_local
from layerlab.errors import ArgumentError, ShapeError, SizeLimitError

F64 = torch.float64
TOL = dict(rtol=0, atol=1e-10)
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)

# ndim, c_in, c_out, kernel, stride, padding, dilation, groups, bias, padding_mode, input_size
CONFIGS = [
    (1, 2, 4, 3, 2, 1, 1, 2, True, "zeros", (9,)),
    (1, 3, 3, 4, 1, "same", 2, 1, False, "zeros", (8,)),
    (1, 2, 2, 3, 3, 2, 1, 1, True, "circular", (7,)),
    (2, 2, 4, 3, 1, 1, 1, 1, True, "zeros", (5, 6)),
    (2, 4, 6, (2, 3), (2, 1), (0, 2), (1, 2), 2, True, "zeros", (7, 6)),
    (2, 2, 2, 3, 1, "same", 1, 1, True, "reflect", (5, 5)),
    (2, 2, 3, 3, 2, 2, 1, 1, True, "circular", (6, 5)),
    (2, 2, 3, 3, 1, 1, 1, 1, False, "replicate", (4, 5)),
    (2, 2, 2, 2, 1, "valid", 1, 1, True, "zeros", (4, 4)),
    (2, 3, 3, 2, 1, "same", 1, 3, True, "zeros", (5, 4)),
    (3, 2, 2, 2, (1, 2, 1), 1, 1, 2, True, "zeros", (3, 4, 3)),
    (3, 1, 2, (1, 2, 2), 1, "same", (1, 1, 2), 1, True, "zeros", (2, 3, 4)),
]


def _conv(cfg, cls=None):
    ndim, c_in, c_out, k, s, p, d, g, bias, mode, _ = cfg
    cls = cls or CONVS[ndim - 1]
    torch.manual_seed(0)
    return cls(c_in, c_out, k, stride=s, padding=p, dilation=d, groups=g, bias=bias, padding_mode=mode).to(F64)


def _forward_backward(layer, x, flat=False):
    """Output and input gradient of sum(output · fixed random weights)."""
    x = x.clone().requires_grad_(True)
    y = layer(x.flatten(1)) if flat else layer(x)
    y = y.reshape(x.shape[0], -1)
    probe = torch.linspace(-1, 1, y.shape[1], dtype=F64)
    (y * probe).sum().backward()
    return y.detach(), x.grad


def _local_filter_as_conv(local_weight, position, groups):
    """Naive loop: the local filter bank at one position, rearranged to torch's conv layout."""
    bank = local_weight[position]  # (G, C_in/G, *k, C_out/G)
    g_count, cg, *kernel, og = bank.shape
    out = torch.empty(g_count * og, cg, *kernel, dtype=bank.dtype)
    for g, o, c in itertools.product(range(g_count), range(og), range(cg)):
        out[g * og + o, c] = bank[g, c, ..., o]
    return out


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c[0]}d-k{c[3]}-s{c[4]}-p{c[5]}-d{c[6]}-g{c[7]}-{c[9]}")
def test_conv_to_local_and_dense_are_exact(cfg):
    conv = _conv(cfg)
    size = cfg[-1]
    x = torch.randn(3, cfg[1], *size, dtype=F64)
    local = conv_to_local(conv, size)
    assert isinstance(local, (lnn.LocallyConnected1d, lnn.LocallyConnected2d, lnn.LocallyConnected3d))
    assert local.bias_mode == ("shared" if cfg[8] else None)
    dense_from_conv = conv_to_dense(conv, size)
    dense_from_local = local_to_dense(local)
    y_ref, gx_ref = _forward_backward(conv, x)
    for layer, flat in ((local, False), (dense_from_conv, True), (dense_from_local, True)):
        y, gx = _forward_backward(layer, x, flat)
        torch.testing.assert_close(y, y_ref, **TOL)
        torch.testing.assert_close(gx, gx_ref, **TOL)
    # weight gradients: the conv's gradient is the sum of the local layer's over positions
    conv.zero_grad()
    local.zero_grad()
    _forward_backward(conv, x)
    _forward_backward(local, x)
    out_size = local.weight.shape[: cfg[0]]
    summed = sum(_local_filter_as_conv(local.weight.grad, p, cfg[7]) for p in itertools.product(*map(range, out_size)))
    torch.testing.assert_close(summed, conv.weight.grad, **TOL)
    if cfg[8]:
        torch.testing.assert_close(local.bias.grad, conv.bias.grad, **TOL)


def test_layerlab_conv_is_accepted_and_unbatched_input_works():
    cfg = CONFIGS[3]
    conv = _conv(cfg, lnn.Conv2d)
    local = conv_to_local(conv, (5, 6))
    x = torch.randn(2, 5, 6, dtype=F64)  # unbatched (C, H, W)
    torch.testing.assert_close(local(x), conv(x), **TOL)


def test_conv_to_local_copies_parameters():
    conv = _conv(CONFIGS[3])
    local = conv_to_local(conv, (5, 6))
    with torch.no_grad():
        local.weight.zero_()
    assert conv.weight.abs().sum() > 0
    assert local.weight.dtype == F64


# ndim, c_in, c_out, kernel, tile, stride, padding, groups, bias, input_size
TILED = [
    (1, 2, 4, 3, 2, 1, 1, 2, True, (9,)),
    (2, 2, 3, 3, (2, 3), 1, 1, 1, True, (5, 7)),
    (2, 2, 2, 2, 2, 2, 0, 1, "shared", (7, 6)),
    (2, 1, 2, 3, 3, 1, "same", 1, False, (5, 5)),
    (3, 2, 2, 2, (1, 2, 2), 1, 1, 2, True, (3, 3, 4)),
]


@pytest.mark.parametrize("cfg", TILED, ids=lambda c: f"{c[0]}d-t{c[4]}-b{c[8]}")
def test_tiled_to_local_is_exact(cfg):
    ndim, c_in, c_out, k, tile, s, p, g, bias, size = cfg
    torch.manual_seed(0)
    tiled = (lnn.TiledConv1d, lnn.TiledConv2d, lnn.TiledConv3d)[ndim - 1](
        c_in, c_out, k, tile_size=tile, stride=s, padding=p, groups=g, bias=bias).to(F64)
    with pytest.raises(ArgumentError, match=r"works on any input size; pass input_size=\(\.\.\.\)"):
        tiled_to_local(tiled)
    local = tiled_to_local(tiled, size)
    x = torch.randn(2, c_in, *size, dtype=F64)
    y_ref, gx_ref = _forward_backward(tiled, x)
    for layer, flat in ((local, False), (local_to_dense(local), True)):
        y, gx = _forward_backward(layer, x, flat)
        torch.testing.assert_close(y, y_ref, **TOL)
        torch.testing.assert_close(gx, gx_ref, **TOL)
    # naive loop: position p holds the tile bank weight[p mod tile]
    tile = tiled.tile_size
    for position in itertools.product(*map(range, local.weight.shape[:ndim])):
        bank = tuple(q % t for q, t in zip(position, tile))
        torch.testing.assert_close(local.weight[position], tiled.weight[bank], rtol=0, atol=0)
    # weight gradient of the tiled conv = local gradients summed over positions of the same tile
    tiled.zero_grad()
    local.zero_grad()
    _forward_backward(tiled, x)
    _forward_backward(local, x)
    summed = torch.zeros_like(tiled.weight)
    for position in itertools.product(*map(range, local.weight.shape[:ndim])):
        summed[tuple(q % t for q, t in zip(position, tile))] += local.weight.grad[position]
    torch.testing.assert_close(summed, tiled.weight.grad, **TOL)


@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 5), (2, 2, 3, 3)])
def test_dense_to_conv_equals_dense_and_slides(shape):
    torch.manual_seed(0)
    dense = nn.Linear(math.prod(shape), 6).to(F64)
    conv = dense_to_conv(dense, shape)
    assert conv.kernel_size == shape[1:]
    x = torch.randn(2, *shape, dtype=F64)
    y, gx = _forward_backward(conv, x)
    y_ref, gx_ref = _forward_backward(dense, x, flat=True)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(gx, gx_ref, **TOL)
    big = torch.randn(2, shape[0], *(n + 3 for n in shape[1:]), dtype=F64)
    out = conv(big)
    for offset in itertools.product(*(range(4) for _ in shape[1:])):  # every window position
        crop = big[(slice(None), slice(None), *(slice(o, o + n) for o, n in zip(offset, shape[1:])))]
        torch.testing.assert_close(out[(slice(None), slice(None), *offset)], dense(crop.flatten(1)), **TOL)


def test_dense_on_channel_vectors_becomes_1x1_conv():
    torch.manual_seed(0)
    dense = lnn.Dense(5, in_features=3).to(F64)
    conv = dense_to_conv(dense, (3, 1, 1))
    assert conv.kernel_size == (1, 1) and isinstance(conv, lnn.Conv2d)
    x = torch.randn(2, 3, 4, 6, dtype=F64)
    torch.testing.assert_close(conv(x), dense(x.movedim(1, -1)).movedim(-1, 1), **TOL)


def test_conversion_errors_are_named():
    conv = nn.Conv2d(2, 3, 3)
    with pytest.raises(ArgumentError, match=r"conv_to_local: expected a Conv1d/2d/3d layer \(torch.nn or "
                       r"layerlab\). Received: ConvTranspose2d"):
        conv_to_local(nn.ConvTranspose2d(2, 3, 3), (4, 4))
    with pytest.raises(ArgumentError, match=r"conv_to_local: input_size must be an int or a tuple of 2 ints\. "
                       r"Received: input_size=\(2, 4, 4\); give the spatial input size only, without the "
                       r"channel and batch dimensions"):
        conv_to_local(conv, (2, 4, 4))
    with pytest.raises(ShapeError, match=r"too small for kernel_size=\(3, 3\)"):
        conv_to_local(conv, (2, 2))
    with pytest.raises(ArgumentError, match=r"in_channels is not known yet \(lazy layer\). Received: "
                       r"in_channels=0; run one forward pass first"):
        conv_to_local(nn.LazyConv2d(3, 3), (4, 4))
    with pytest.raises(ArgumentError, match=r"local_to_dense: expected a LocallyConnected1d/2d/3d or LowRankLocallyConnected1d/2d/3d layer"):
        local_to_dense(conv)
    with pytest.raises(ArgumentError, match=r"conv_to_dense: expected a Conv1d/2d/3d or ConvTranspose1d/2d/3d"):
        conv_to_dense(nn.Linear(3, 3), (4,))
    with pytest.raises(ArgumentError, match=r"dense_to_conv: expected a Dense or torch.nn.Linear layer. "
                       r"Received: Conv2d"):
        dense_to_conv(conv, (2, 4, 4))
    with pytest.raises(ArgumentError, match=r"input_shape must be the per-sample shape before Flatten .* "
                       r"Received: input_shape=\(12,\)"):
        dense_to_conv(nn.Linear(12, 2), (12,))
    with pytest.raises(ShapeError, match=r"has in_features=12, but input_shape=\(2, 2, 2\) flattens to 8"):
        dense_to_conv(nn.Linear(12, 2), (2, 2, 2))


def test_conv_to_dense_of_a_huge_layer_is_refused_before_allocating():
    conv = nn.Conv2d(64, 64, 3, padding=1)
    with pytest.raises(SizeLimitError, match=r"dense_matrix\(Conv2d\(64, 64.*on input \(64, 224, 224\) would "
                       r"allocate .* = 37\.5 TiB.*nothing was allocated"):
        conv_to_dense(conv, (224, 224))


def test_conv_to_local_of_a_huge_layer_is_refused_before_allocating():
    conv = nn.Conv2d(512, 512, 3, padding=1)  # 224·224·512·9·512 local weights
    n = 224 * 224 * 512 * 9 * 512
    with pytest.raises(SizeLimitError, match=rf"conv_to_local\(Conv2d\(512, 512.*with output size \(224, 224\) would "
                       rf"allocate {n:,} elements × 4 bytes.*one filter bank per output position"):
        conv_to_local(conv, (224, 224))
    tiled = lnn.TiledConv2d(2, 2, 3, tile_size=2)
    assert conv_to_local(nn.Conv2d(2, 2, 3), (6, 6), max_bytes=576 * 4).weight.numel() == 16 * 2 * 9 * 2 == 576
    with pytest.raises(SizeLimitError, match=r"tiled_to_local\(TiledConv2d.*over the limit of 100 B"):
        tiled_to_local(tiled, (6, 6), max_bytes=100)


def test_conv_transpose_to_dense_is_exact():
    torch.manual_seed(0)
    tconv = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1).to(F64)
    dense = conv_to_dense(tconv, (3, 4))
    x = torch.randn(2, 2, 3, 4, dtype=F64)
    torch.testing.assert_close(dense(x.flatten(1)), tconv(x).flatten(1), **TOL)
