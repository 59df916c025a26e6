"""TiledConv1d/2d/3d: reference, tile 1 = Conv, tile = output = LocallyConnected, gradcheck, errors."""

import re

import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.arith.specs import TiledSpec
from layerlab.errors import ArgumentError, ShapeError, SizeLimitError
from layerlab.functional.reference import local_conv_reference, tiled_conv_reference

TILED = {1: layerlab.TiledConv1d, 2: layerlab.TiledConv2d, 3: layerlab.TiledConv3d}

# (ndim, C_in, C_out, in_size, kernel, tile, stride, padding, dilation, groups, bias)
CONFIGS = [
    (1, 2, 4, (9,), 3, 2, 2, 1, 1, 2, True),
    (2, 4, 6, (7, 6), (3, 2), (2, 3), (2, 1), (1, 2), (2, 1), 2, "shared"),
    (2, 3, 2, (6, 5), 2, (3, 1), (3, 2), 0, 1, 1, True),
    (3, 2, 2, (4, 5, 4), (2, 3, 2), 2, (1, 2, 1), (0, 1, 1), (1, 1, 2), 1, False),
]


@pytest.mark.parametrize("ndim, c_in, c_out, in_size, k, tile, s, p, d, g, bias", CONFIGS)
def test_forward_matches_loop_reference(ndim, c_in, c_out, in_size, k, tile, s, p, d, g, bias):
    torch.manual_seed(0)
    layer = TILED[ndim](c_in, c_out, k, tile, s, p, d, g, bias, dtype=torch.float64)
    x = torch.randn(2, c_in, *in_size, dtype=torch.float64)
    out = layer(x)
    torch.testing.assert_close(out, tiled_conv_reference(x, layer.weight, layer.bias, s, p, d, g), rtol=1e-10, atol=1e-10)
    assert layer.layer_spec().analyse((c_in, *in_size)).output_shape == tuple(out.shape[1:])


def test_same_padding_with_padding_mode():
    torch.manual_seed(1)
    layer = layerlab.TiledConv2d(2, 3, (2, 3), 2, padding="same", padding_mode="circular", dtype=torch.float64)
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64)
    # kernel (2, 3): 'same' pads H by (0, 1) and W by (1, 1)
    padded = F.pad(x, [1, 1, 0, 1], mode="circular")
    torch.testing.assert_close(layer(x), tiled_conv_reference(padded, layer.weight, layer.bias), rtol=1e-10, atol=1e-10)


def test_tile_one_is_conv():
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=torch.float64)
    tiled = layerlab.TiledConv2d(4, 6, 3, 1, stride=2, padding=1, groups=2, bias="shared", dtype=torch.float64)
    with torch.no_grad():
        tiled.weight.copy_(conv.weight.view(2, 3, 2, 3, 3).movedim(1, -1)[None, None])
        tiled.bias.copy_(conv.bias)
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(tiled(x), conv(x), rtol=1e-13, atol=1e-13)


def test_tile_equal_to_output_size_is_local():
    torch.manual_seed(3)
    local = layerlab.LocallyConnected2d(3, 4, 3, padding=1, input_size=(5, 6), dtype=torch.float64)
    tiled = layerlab.TiledConv2d(3, 4, 3, (5, 6), padding=1, dtype=torch.float64)
    tiled.load_state_dict(local.state_dict())
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    expected = local_conv_reference(x, local.weight, local.bias, padding=1)  # the naive loop
    torch.testing.assert_close(tiled(x), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(local(x), expected, rtol=1e-12, atol=1e-12)


def test_gradcheck():
    torch.manual_seed(4)
    layer = layerlab.TiledConv2d(2, 2, 2, (2, 1), padding=1, dtype=torch.float64)
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        return torch.func.functional_call(layer, {"weight": w, "bias": b}, (x,))

    w = layer.weight.detach().clone().requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (x, w, b))


def test_any_input_size_and_state_dict_round_trip():
    torch.manual_seed(5)
    a = layerlab.TiledConv2d(3, 4, 3, 2, padding=1)
    b = layerlab.TiledConv2d(3, 4, 3, 2, padding=1)
    b.load_state_dict(a.state_dict())
    for size in [(5, 5), (8, 11)]:
        x = torch.randn(2, 3, *size)
        torch.testing.assert_close(a(x), b(x))
        assert a(x).shape == (2, 4, *size)
    assert a.weight.shape == (2, 2, 1, 3, 3, 3, 4) and a.bias.shape == (4, 2, 2)


def test_repr_and_errors():
    layer = layerlab.TiledConv2d(3, 4, 3, 2, stride=2)
    assert repr(layer) == "TiledConv2d(3, 4, kernel_size=(3, 3), tile_size=(2, 2), stride=(2, 2))"
    with pytest.raises(ShapeError, match=r"TiledConv2d\(3, 4, kernel_size=\(3, 3\), tile_size=\(2, 2\), stride=\(2, 2\)\) expects 3 input channels, got 2 from an input of shape \(1, 2, 8, 8\)"):
        layer(torch.randn(1, 2, 8, 8))
    with pytest.raises(ShapeError, match=r"expects a 4-d input \(B, C_in, H, W\) or a 3-d unbatched input \(C_in, H, W\), got a 5-d input"):
        layer(torch.randn(1, 1, 3, 8, 8))


@pytest.mark.parametrize("kwargs", [
    dict(tile_size=(0, 2)), dict(tile_size=(2, 2, 2)), dict(tile_size=2, groups=2), dict(tile_size=2, stride=0),
    dict(tile_size=2, padding="full"), dict(tile_size=2, padding="same", stride=2),
], ids=repr)
def test_arguments_are_checked_by_the_spec(kwargs):
    # one wording per mistake: the module's message is its arith spec's (pinned in tests/arith/test_errors.py)
    with pytest.raises(ArgumentError) as by_spec:
        TiledSpec(2, 4, 3, in_channels=3, **kwargs)
    with pytest.raises(ArgumentError) as by_module:
        layerlab.TiledConv2d(3, 4, 3, **kwargs)
    assert str(by_module.value) == str(by_spec.value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtypes(dtype):
    torch.manual_seed(6)
    layer = layerlab.TiledConv2d(3, 4, 3, 2, padding=1, dtype=dtype)
    x = torch.randn(2, 3, 6, 5, dtype=dtype)
    out = layer(x)
    assert out.dtype == dtype
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 5e-2}[dtype]
    expected = tiled_conv_reference(x, layer.weight, layer.bias, 1, 1)
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)
    out.float().sum().backward()
    assert layer.weight.grad.dtype == dtype


def test_parameters_over_the_memory_limit_are_refused_before_allocating(monkeypatch):
    monkeypatch.delenv("LAYERLAB_MAX_BYTES", raising=False)
    with pytest.raises(SizeLimitError, match=re.escape(
            "TiledConv2d(3, 8, kernel_size=(3, 3), tile_size=(10000, 10000)): its parameters would allocate "
            "22,400,000,000 elements × 4 bytes = 83.4 GiB, over the limit of 2.0 GiB; nothing was allocated. Use a "
            "smaller tile_size, fewer channels or a smaller kernel, or raise the limit")):
        layerlab.TiledConv2d(3, 8, 3, tile_size=10**4)
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "80")  # 10 weights + 10 biases (float32)
    assert layerlab.TiledConv1d(1, 1, 1, tile_size=10).weight.numel() == 10
    with pytest.raises(SizeLimitError, match="22 elements × 4 bytes = 88 B"):
        layerlab.TiledConv1d(1, 1, 1, tile_size=11)
    with pytest.raises(SizeLimitError, match="21 elements × 4 bytes = 84 B"):
        layerlab.TiledConv1d(1, 1, 1, tile_size=20, bias="shared")
    assert layerlab.TiledConv1d(1, 1, 1, tile_size=20, bias=False).bias is None
