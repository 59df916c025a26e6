"""Conversions of the transposed local layer: ConvTranspose → LocallyConnectedTranspose (exact), its
dense-equivalent matrix (the matching local layer's, transposed), local_to_dense and convert_model."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

import layerlab
from layerlab.convert import conv_transpose_to_local, convert_model, dense_bias, dense_matrix, local_to_dense
from layerlab.errors import ArgumentError, ShapeError, SizeLimitError

# ndim, C_in, C_out, in_size, kernel, stride, padding, output_padding, dilation, groups, bias
CONFIGS = [
    (1, 2, 4, (5,), 3, 2, 1, 1, 1, 2, True),
    (1, 3, 3, (4,), 4, 1, 2, 1, 2, 3, False),  # output_padding ≥ stride (dilation 2)
    (2, 4, 6, (3, 4), (3, 2), (2, 1), (1, 0), (1, 0), (1, 2), 2, True),
    (2, 2, 2, (3, 3), 3, 2, 0, 1, 1, 1, True),
    (3, 2, 4, (2, 3, 2), (2, 3, 2), (1, 2, 1), (0, 1, 1), (0, 1, 0), (1, 1, 2), 2, False),
]
IDS = [f"{c[0]}d-s{c[5]}-p{c[6]}-op{c[7]}-d{c[8]}-g{c[9]}-bias{c[10]}" for c in CONFIGS]


def conv_transpose(config):
    ndim, c_in, c_out, _, k, s, p, op, d, g, bias = config
    return getattr(nn, f"ConvTranspose{ndim}d")(c_in, c_out, k, s, p, op, g, bias, d, dtype=torch.float64)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_conv_transpose_to_local_is_exact(config):
    torch.manual_seed(0)
    conv = conv_transpose(config)
    local = conv_transpose_to_local(conv, config[3])
    assert type(local).__name__ == f"LocallyConnectedTranspose{config[0]}d"
    assert local.bias_mode == ("shared" if config[-1] else None)
    assert local.weight.shape == (*config[3], config[9], config[2] // config[9], *conv.kernel_size,
                                  config[1] // config[9])
    x = torch.randn(3, config[1], *config[3], dtype=torch.float64, requires_grad=True)
    out, want = local(x), conv(x)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(want, x, g)[0])
    # the new layer owns fresh parameters
    with torch.no_grad():
        conv.weight.zero_()
    torch.testing.assert_close(local(x), out)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_dense_matrix_is_the_jacobian_and_the_matching_local_matrix_transposed(config):
    ndim, c_in, c_out, size, k, s, p, op, d, g, _ = config
    torch.manual_seed(1)
    layer = getattr(layerlab, f"LocallyConnectedTranspose{ndim}d")(c_in, c_out, k, s, p, op, d, g, True,
                                                                    input_size=size, dtype=torch.float64)
    shape = (c_in, *size)
    matrix = dense_matrix(layer, shape)
    x = torch.zeros(1, *shape, dtype=torch.float64)
    out_numel = c_out * torch.Size(layer.output_size).numel()
    torch.testing.assert_close(matrix, jacobian(lambda t: layer(t).flatten(), x).reshape(out_numel, -1), rtol=0, atol=0)
    torch.testing.assert_close(dense_bias(layer, shape), layer.bias.detach().flatten())
    torch.testing.assert_close(dense_matrix(layer, shape, sparse=True).to_dense(), matrix)
    if all(o < st for o, st in zip(layer.output_padding, layer.stride)):  # the local layer's output grid is ours
        local = getattr(layerlab, f"LocallyConnected{ndim}d")(c_out, c_in, k, s, p, d, g, input_size=layer.output_size,
                                                               dtype=torch.float64)
        with torch.no_grad():
            local.weight.copy_(layer.weight)
        torch.testing.assert_close(matrix, dense_matrix(local, (c_out, *layer.output_size)).T, rtol=0, atol=0)


@pytest.mark.parametrize("config", CONFIGS[::2], ids=IDS[::2])
def test_local_to_dense_takes_the_transposed_layer(config):
    torch.manual_seed(2)
    local = conv_transpose_to_local(conv_transpose(config), config[3])
    dense = local_to_dense(local)
    x = torch.randn(2, config[1], *config[3], dtype=torch.float64)
    torch.testing.assert_close(dense(x.flatten(1)), local(x).flatten(1), rtol=1e-12, atol=1e-12)


def test_convert_model_turns_conv_transposes_into_transposed_local_layers():
    torch.manual_seed(3)
    decoder = nn.Sequential(nn.ConvTranspose2d(4, 3, 4, 2, 1), nn.ReLU(),
                            nn.ConvTranspose2d(3, 2, 3, 2, 1, output_padding=1, groups=1)).double()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    local = convert_model(decoder, to="local", input_shape=(4, 3, 3))
    assert [type(m).__name__ for m in local] == ["LocallyConnectedTranspose2d", "ReLU", "LocallyConnectedTranspose2d"]
    assert local[0].input_size == (3, 3) and local[2].input_size == (6, 6)
    torch.testing.assert_close(local(x), decoder(x), rtol=1e-12, atol=1e-12)
    assert convert_model(local, to="local", input_shape=(4, 3, 3))[0] is not local[0]  # a copy, kept as it is
    dense = convert_model(local, to="dense", input_shape=(4, 3, 3))
    assert type(dense[0]).__name__ == "Sequential"
    torch.testing.assert_close(dense(x), decoder(x), rtol=1e-12, atol=1e-12)


def test_conversion_errors_are_named(monkeypatch):
    with pytest.raises(ArgumentError, match=r"conv_transpose_to_local: expected a ConvTranspose1d/2d/3d layer "
                       r"\(torch.nn or layerlab\). Received: Conv2d"):
        conv_transpose_to_local(nn.Conv2d(2, 2, 3), (4, 4))
    with pytest.raises(ArgumentError, match=r"in_channels is not known yet \(lazy layer\)"):
        conv_transpose_to_local(nn.LazyConvTranspose2d(2, 3), (4, 4))
    with pytest.raises(ArgumentError, match=r"conv_transpose_to_local: input_size must be an int or a tuple of 2 ints. "
                       r"Received: input_size=\(2, 4, 4\); give the spatial input size only"):
        conv_transpose_to_local(nn.ConvTranspose2d(2, 2, 3), (2, 4, 4))
    with pytest.raises(ShapeError, match=r"conv_transpose_to_local\(ConvTranspose2d.*\): the input \(2, 1, 1\) is too "
                       r"small"):
        conv_transpose_to_local(nn.ConvTranspose2d(2, 2, 1, padding=1), (1, 1))
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "1000")
    with pytest.raises(SizeLimitError, match=re.escape("conv_transpose_to_local(ConvTranspose2d(2, 2, kernel_size=(3, 3), "
                                                       "stride=(1, 1))) with input size (8, 8) would allocate 2,304 elements × 4 bytes = 9.0 KiB, over the limit of "
                                                       "1000 B; nothing was allocated. A transposed local layer stores one "
                                                       "filter bank per input position")):
        conv_transpose_to_local(nn.ConvTranspose2d(2, 2, 3), (8, 8))
