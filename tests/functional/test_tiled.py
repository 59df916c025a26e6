"""tiled_conv against the naive loop reference, torch's conv (tile 1) and local_conv (tile = output)."""

import pytest
import torch
import torch.nn.functional as F

from layerlab.errors import ArgumentError, ShapeError
from layerlab.functional import local_conv, tiled_conv
from layerlab.functional.reference import local_conv_reference, tiled_conv_reference

# (ndim, C_in, C_out, in_size, kernel, tile, stride, padding, dilation, groups, bias)
CONFIGS = [
    (1, 2, 4, (9,), (3,), (2,), (2,), (1,), (1,), 2, "location"),
    (2, 4, 6, (7, 6), (3, 2), (2, 3), (2, 1), (1, 2), (2, 1), 2, "shared"),
    (2, 3, 2, (6, 5), (2, 3), (3, 1), (3, 2), (0, 1), (1, 1), 1, "location"),
    (3, 2, 2, (4, 5, 4), (2, 3, 2), (2, 1, 2), (1, 2, 1), (0, 1, 1), (1, 1, 2), 1, None),
]


def _make(ndim, c_in, c_out, k, tile, g, bias, dtype=torch.float64, grad=False):
    w = torch.randn(*tile, g, c_in // g, *k, c_out // g, dtype=dtype, requires_grad=grad)
    b = {
        "location": lambda: torch.randn(c_out, *tile, dtype=dtype, requires_grad=grad),
        "shared": lambda: torch.randn(c_out, dtype=dtype, requires_grad=grad),
        None: lambda: None,
    }[bias]()
    return w, b


@pytest.mark.parametrize("ndim, c_in, c_out, in_size, k, tile, s, p, d, g, bias", CONFIGS)
def test_tiled_conv_matches_loop_reference(ndim, c_in, c_out, in_size, k, tile, s, p, d, g, bias):
    torch.manual_seed(0)
    x = torch.randn(2, c_in, *in_size, dtype=torch.float64)
    w, b = _make(ndim, c_in, c_out, k, tile, g, bias)
    expected = tiled_conv_reference(x, w, b, s, p, d, g)
    torch.testing.assert_close(tiled_conv(x, w, b, s, p, d, g), expected, rtol=1e-10, atol=1e-10)


def test_tile_one_is_torch_conv():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    tile_w = w.view(2, 3, 2, 3, 3).movedim(1, -1)[None, None]  # (1, 1, g, C_in/g, k, k, C_out/g)
    out = tiled_conv(x, tile_w, b, (2, 1), 1, (1, 2), 2)
    torch.testing.assert_close(out, F.conv2d(x, w, b, (2, 1), 1, (1, 2), 2), rtol=1e-12, atol=1e-12)


def test_tile_equal_to_output_size_is_local_conv():
    """With one tile per output position, tiled_conv and local_conv both equal the naive local loop."""
    torch.manual_seed(2)
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    w = torch.randn(3, 3, 1, 3, 3, 3, 4, dtype=torch.float64)  # output 3x3 with stride 2
    b = torch.randn(4, 3, 3, dtype=torch.float64)
    expected = local_conv_reference(x, w, b, 2)
    torch.testing.assert_close(tiled_conv(x, w, b, 2), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(local_conv(x, w, b, 2), expected, rtol=1e-12, atol=1e-12)


def test_tiled_conv_gradcheck():
    torch.manual_seed(3)
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    w, b = _make(2, 2, 2, (2, 2), (2, 2), 1, "location", grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: tiled_conv(x, w, b, 1, 1), (x, w, b))


def test_tiled_conv_errors():
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ShapeError, match=r"tiled_conv: expected a \(B, C_in, \*in_size\) input .* Received: input of shape \(3, 8, 8\)"):
        tiled_conv(x[0], torch.randn(2, 2, 1, 3, 3, 3, 4))
    with pytest.raises(ArgumentError, match=r"tiled_conv: stride must be an int or a tuple of 2 ints\. Received: stride=\(1,\)"):
        tiled_conv(x, torch.randn(2, 2, 1, 3, 3, 3, 4), stride=(1,))
    with pytest.raises(ShapeError, match=r"tiled_conv: the input's spatial size \(8, 8\) is too small for kernel_size=\(9, 9\)"):
        tiled_conv(x, torch.randn(2, 2, 1, 3, 9, 9, 4))
    with pytest.raises(ShapeError, match=r"tiled_conv: a per-location bias must have shape \(C_out, \*tile_size\) = \(4, 2, 2\). Received: bias of shape \(4, 3, 3\)"):
        tiled_conv(x, torch.randn(2, 2, 1, 3, 3, 3, 4), torch.randn(4, 3, 3))
