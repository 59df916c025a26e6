"""Property test: for random conv configurations (1d/2d, stride, padding incl. 'same', padding
mode, dilation, groups) the index-arithmetic matrix equals the autograd Jacobian and the local
conversion equals the conv, whenever torch accepts the configuration."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from layerlab.convert import conv_to_local, dense_bias, dense_matrix

F64 = torch.float64


@st.composite
def conv_configs(draw):
    ndim = draw(st.integers(1, 2))
    groups = draw(st.integers(1, 2))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    size = tuple(draw(st.integers(1, 7)) for _ in range(ndim))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    if draw(st.booleans()):
        padding, stride = "same", (1,) * ndim
    else:
        padding = tuple(draw(st.integers(0, 2)) for _ in range(ndim))
        stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    return ndim, c_in, c_out, kernel, stride, padding, dilation, groups, mode, size, draw(st.booleans())


@settings(max_examples=40, deadline=None)
@given(conv_configs())
def test_matrix_equals_jacobian_and_local_equals_conv(cfg):
    ndim, c_in, c_out, kernel, stride, padding, dilation, groups, mode, size, bias = cfg
    conv = (nn.Conv1d, nn.Conv2d)[ndim - 1](c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation,
                                             groups=groups, bias=bias, padding_mode=mode).to(F64)
    x = torch.randn(2, c_in, *size, dtype=F64)
    try:
        y = conv(x)  # torch decides whether the configuration is valid
    except RuntimeError:
        return
    shape = (c_in, *size)
    matrix = dense_matrix(conv, shape)
    jac = torch.autograd.functional.jacobian(lambda v: conv(v.view(1, *shape)).flatten(),
                                             torch.zeros(math.prod(shape), dtype=F64))
    torch.testing.assert_close(matrix, jac, rtol=0, atol=1e-12)
    torch.testing.assert_close(x.flatten(1) @ matrix.T + dense_bias(conv, shape), y.flatten(1), rtol=0, atol=1e-10)
    torch.testing.assert_close(conv_to_local(conv, size)(x), y, rtol=0, atol=1e-10)


@st.composite
def pool_configs(draw):
    kernel = draw(st.integers(1, 4))
    return (kernel, draw(st.integers(1, 3)), draw(st.integers(0, kernel // 2)), draw(st.booleans()),
            draw(st.booleans()), draw(st.integers(1, 9)), draw(st.integers(1, 9)))


@settings(max_examples=40, deadline=None)
@given(pool_configs())
def test_avg_pool_matrix_equals_jacobian(cfg):
    """ceil_mode and count_include_pad at the borders are where pooling formulas go wrong."""
    kernel, stride, padding, ceil_mode, include_pad, h, w = cfg
    pool = nn.AvgPool2d(kernel, stride, padding, ceil_mode=ceil_mode, count_include_pad=include_pad)
    shape = (2, h, w)
    try:
        pool(torch.zeros(1, *shape, dtype=F64))
    except RuntimeError:
        return
    jac = torch.autograd.functional.jacobian(lambda v: pool(v.view(1, *shape)).flatten(),
                                             torch.zeros(math.prod(shape), dtype=F64))
    torch.testing.assert_close(dense_matrix(pool, shape, dtype=F64), jac, rtol=0, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 2), st.integers(0, 2), st.integers(1, 2),
       st.integers(1, 2), st.integers(1, 5))
def test_transposed_conv_matrix_equals_jacobian(kernel, stride, padding, output_padding, dilation, groups, size):
    try:
        tconv = nn.ConvTranspose1d(2 * groups, 2 * groups, kernel, stride=stride, padding=padding,
                                   output_padding=output_padding, dilation=dilation, groups=groups).to(F64)
        tconv(torch.zeros(1, 2 * groups, size, dtype=F64))
    except (RuntimeError, ValueError):
        return
    shape = (2 * groups, size)
    jac = torch.autograd.functional.jacobian(lambda v: tconv(v.view(1, *shape)).flatten(),
                                             torch.zeros(math.prod(shape), dtype=F64))
    torch.testing.assert_close(dense_matrix(tconv, shape), jac, rtol=0, atol=1e-12)
