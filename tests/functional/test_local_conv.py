"""Correctness of layerlab.functional.local_conv against a naive float64 loop."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from layerlab.errors import ArgumentError, ShapeError
from layerlab.functional import local_conv


def loop_reference(x, weight, bias, stride, padding, dilation, groups):
    """Naive per-position loop (float64): independent of the implementation under test."""
    ndim = x.dim() - 2
    x = F.pad(x, [p for pad in reversed(padding) for p in (pad, pad)])
    out_size = weight.shape[:ndim]
    kernel = weight.shape[ndim + 2 : 2 * ndim + 2]
    c_g, o_g = weight.shape[ndim + 1], weight.shape[-1]
    out = torch.zeros(x.shape[0], groups * o_g, *out_size, dtype=torch.float64)
    for pos in itertools.product(*(range(n) for n in out_size)):
        for g in range(groups):
            for tap in itertools.product(*(range(k) for k in kernel)):
                idx = tuple(p * s + t * d for p, s, t, d in zip(pos, stride, tap, dilation))
                xs = x[(slice(None), slice(g * c_g, (g + 1) * c_g)) + idx]  # (B, C_g)
                w = weight[pos + (g, slice(None)) + tap]  # (C_g, O_g)
                out[(slice(None), slice(g * o_g, (g + 1) * o_g)) + pos] += xs.double() @ w.double()
    if bias is not None:
        out += bias.double() if bias.dim() > 1 else bias.double().view(-1, *([1] * ndim))
    return out


CASES = [
    # ndim, in_size, c_in, c_out, kernel, stride, padding, dilation, groups
    (1, (11,), 4, 6, (3,), (2,), (1,), (1,), 2),
    (2, (7, 8), 3, 4, (3, 2), (1, 2), (0, 1), (1, 1), 1),
    (2, (9, 10), 4, 6, (3, 3), (2, 3), (1, 2), (2, 1), 2),
    (3, (5, 6, 5), 2, 4, (2, 3, 2), (1, 2, 2), (1, 0, 1), (1, 1, 2), 2),
]


@pytest.mark.parametrize("bias_mode", [None, "shared", "location"])
@pytest.mark.parametrize("case", CASES)
def test_forward_matches_loop(case, bias_mode):
    ndim, size, c_in, c_out, kernel, stride, padding, dilation, groups = case
    gen = torch.Generator().manual_seed(0)
    out_size = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in zip(size, padding, dilation, kernel, stride))
    x = torch.randn(3, c_in, *size, dtype=torch.float64, generator=gen)
    w = torch.randn(*out_size, groups, c_in // groups, *kernel, c_out // groups, dtype=torch.float64, generator=gen)
    b = {None: None, "shared": torch.randn(c_out, dtype=torch.float64, generator=gen),
         "location": torch.randn(c_out, *out_size, dtype=torch.float64, generator=gen)}[bias_mode]
    out = local_conv(x, w, b, stride, padding, dilation, groups)
    torch.testing.assert_close(out, loop_reference(x, w, b, stride, padding, dilation, groups))
