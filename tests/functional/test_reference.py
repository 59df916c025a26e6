"""The naive loop references against torch's own ops and against each other."""

import pytest
import torch
import torch.nn.functional as F

from layerlab.errors import ArgumentError, ShapeError
from layerlab.functional.reference import conv_reference, local_conv_reference, tiled_conv_reference

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

# (ndim, C_in, C_out, in_size, kernel, stride, padding, dilation, groups); sizes chosen so that
# floor drops trailing rows in some dims
CONFIGS = [
    (1, 2, 4, (9,), (3,), (2,), (1,), (1,), 2),
    (2, 4, 6, (7, 6), (3, 2), (2, 1), (1, 2), (2, 1), 2),
    (2, 3, 2, (6, 5), (2, 3), (3, 2), (0, 1), (1, 1), 1),
    (3, 2, 2, (4, 5, 4), (2, 3, 2), (1, 2, 1), (0, 1, 1), (1, 1, 2), 1),
]


@pytest.mark.parametrize("ndim, c_in, c_out, in_size, k, s, p, d, g", CONFIGS)
def test_conv_reference_matches_torch(ndim, c_in, c_out, in_size, k, s, p, d, g):
    torch.manual_seed(0)
    x = torch.randn(2, c_in, *in_size, dtype=torch.float64)
    w = torch.randn(c_out, c_in // g, *k, dtype=torch.float64)
    b = torch.randn(c_out, dtype=torch.float64)
    expected = CONV[ndim](x, w, b, stride=s, padding=p, dilation=d, groups=g)
    torch.testing.assert_close(conv_reference(x, w, b, s, p, d, g), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ndim, c_in, c_out, in_size, k, s, p, d, g", CONFIGS)
def test_local_reference_with_one_filter_everywhere_is_the_conv(ndim, c_in, c_out, in_size, k, s, p, d, g):
    torch.manual_seed(1)
    x = torch.randn(2, c_in, *in_size, dtype=torch.float64)
    w = torch.randn(c_out, c_in // g, *k, dtype=torch.float64)
    b = torch.randn(c_out, dtype=torch.float64)
    expected = CONV[ndim](x, w, b, stride=s, padding=p, dilation=d, groups=g)
    out = expected.shape[2:]
    # Contract 3: conv weight -> location-major local weight, the same bank at every position
    bank = w.view(g, c_out // g, c_in // g, *k).movedim(1, -1)
    local_w = bank.expand(*out, *bank.shape).contiguous()
    local_b = b.view(-1, *[1] * ndim).expand(c_out, *out).contiguous()
    torch.testing.assert_close(local_conv_reference(x, local_w, local_b, s, p, d, g), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(local_conv_reference(x, local_w, b, s, p, d, g), expected, rtol=1e-12, atol=1e-12)


def test_local_reference_uses_each_positions_own_filter():
    # 1 channel, kernel 1: out[p] = x[p] * w[p]; checks the per-position indexing element by element
    x = torch.arange(1.0, 6.0, dtype=torch.float64).view(1, 1, 5)
    w = torch.arange(10.0, 15.0, dtype=torch.float64).view(5, 1, 1, 1, 1)
    bias = torch.arange(5.0, dtype=torch.float64).view(1, 5)
    out = local_conv_reference(x, w, bias)
    assert out.tolist() == [[[1 * 10 + 0, 2 * 11 + 1, 3 * 12 + 2, 4 * 13 + 3, 5 * 14 + 4]]]


def test_tiled_reference_tile_one_is_the_conv():
    torch.manual_seed(2)
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    tile_w = w.view(2, 3, 2, 3, 3).movedim(1, -1).unsqueeze(0).unsqueeze(0)  # (1, 1, g, C_in/g, k, k, C_out/g)
    expected = F.conv2d(x, w, None, 1, 1, 1, 2)
    torch.testing.assert_close(tiled_conv_reference(x, tile_w, None, 1, 1, 1, 2), expected, rtol=1e-12, atol=1e-12)


def test_tiled_reference_position_p_uses_tile_p_mod_t():
    x = torch.ones(1, 1, 5, dtype=torch.float64)
    w = torch.tensor([2.0, 3.0], dtype=torch.float64).view(2, 1, 1, 1, 1)  # tile 2, kernel 1
    bias = torch.tensor([[10.0, 20.0]], dtype=torch.float64)
    assert tiled_conv_reference(x, w, bias).tolist() == [[[12.0, 23.0, 12.0, 23.0, 12.0]]]


def test_reference_gradients_match_torch():
    torch.manual_seed(3)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    gx, gw = torch.autograd.grad(conv_reference(x, w, None, 2, 1).square().sum(), (x, w))
    tx, tw = torch.autograd.grad(F.conv2d(x, w, None, 2, 1).square().sum(), (x, w))
    torch.testing.assert_close(gx, tx)
    torch.testing.assert_close(gw, tw)


def test_reference_errors():
    x = torch.randn(1, 4, 5, 5)
    with pytest.raises(ShapeError, match=r"expected a 4-d input \(B, C_in, \*spatial\) for a 2-d kernel, got shape \(4, 5, 5\)"):
        conv_reference(x[0], torch.randn(2, 4, 3, 3))
    with pytest.raises(ArgumentError, match=r"reference op: stride must be an int or a tuple of 2 ints\. Received: stride=\(1, 2, 3\)"):
        conv_reference(x, torch.randn(2, 4, 3, 3), stride=(1, 2, 3))
    with pytest.raises(ArgumentError, match=r"groups=3 must divide C_in=4 and C_out=3"):
        conv_reference(x, torch.randn(3, 1, 3, 3), groups=3)
    with pytest.raises(ShapeError, match=r"the output size \(-1, -1\) is empty"):
        conv_reference(x, torch.randn(2, 4, 7, 7))
    with pytest.raises(ShapeError, match=r"the weight is for output size \(2, 2\), but the input gives \(3, 3\)"):
        local_conv_reference(x, torch.randn(2, 2, 1, 4, 3, 3, 2))
