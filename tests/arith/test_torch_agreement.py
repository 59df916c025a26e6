"""Property tests: arith's output shapes, errors and parameter counts against real torch modules.

For random (size, kernel, stride, padding, dilation, groups, ceil_mode, output_padding) the torch
module is built and run on a zero tensor; torch raising must coincide with arith raising, and
otherwise the shapes and ``sum(p.numel())`` must agree. One deliberate difference: a transposed
conv whose output size is exactly 0 returns an empty tensor in torch and raises in arith.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerlab.arith import AdaptivePoolSpec, ConvSpec, ConvTransposeSpec, PoolSpec, UpsampleSpec
from layerlab.errors import LayerlabError

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(SETTINGS, max_examples=150)  # upsample, adaptive pooling: simpler formulas
MAX_SIZE = {1: 24, 2: 12, 3: 7}  # small tensors keep a forward pass in the microseconds


def torch_result(build, shape):
    """(output shape without batch, params) of the torch module, or None when torch raises."""
    try:
        module = build()
        with torch.no_grad():
            out = module(torch.zeros(1, *shape))
    except (RuntimeError, ValueError) as err:
        return None, str(err)
    if out.numel() == 0:  # torch's transposed conv returns an empty tensor for an output size of 0;
        return None, "empty output"  # arith raises there (a size-0 layer is a mistake)
    return (tuple(out.shape[1:]), sum(p.numel() for p in module.parameters())), ""


def arith_result(build, shape):
    try:
        report = build().analyse(shape)
    except LayerlabError as err:
        return None, str(err)
    return (report.output_shape, report.params), ""


def agree(torch_build, arith_build, shape):
    expected, torch_error = torch_result(torch_build, shape)
    got, arith_error = arith_result(arith_build, shape)
    assert got == expected, f"torch: {expected or torch_error!r}; arith: {got or arith_error!r}"


NDIMS = pytest.mark.parametrize("ndim", [1, 2, 3])


@st.composite
def conv_case(draw, ndim):
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 2)) + draw(st.sampled_from([0, 0, 0, 1]))  # sometimes indivisible
    c_out = groups * draw(st.integers(1, 2))
    size = tuple(draw(st.lists(st.integers(1, MAX_SIZE[ndim]), min_size=ndim, max_size=ndim)))
    kernel = draw(st.integers(1, 5))
    stride = draw(st.integers(1, 4))
    dilation = draw(st.integers(1, 3))
    padding = draw(st.one_of(st.integers(0, 3), st.sampled_from(["same", "valid"]),
                             st.tuples(*[st.integers(0, 3)] * ndim)))
    bias = draw(st.booleans())
    return ndim, c_in, c_out, size, kernel, stride, padding, dilation, groups, bias


@NDIMS
@SETTINGS
@given(data=st.data())
def test_conv_matches_torch(ndim, data):
    case = data.draw(conv_case(ndim))
    ndim, c_in, c_out, size, kernel, stride, padding, dilation, groups, bias = case
    conv = getattr(torch.nn, f"Conv{ndim}d")
    agree(
        lambda: conv(c_in, c_out, kernel, stride, padding, dilation, groups, bias),
        lambda: ConvSpec(ndim, c_out, kernel, c_in, stride, padding, dilation, groups, bias),
        (c_in, *size),
    )


@NDIMS
@SETTINGS
@given(data=st.data(), output_padding=st.integers(0, 2))
def test_conv_transpose_matches_torch(ndim, data, output_padding):
    case = data.draw(conv_case(ndim))
    ndim, c_in, c_out, size, kernel, stride, padding, dilation, groups, bias = case
    if isinstance(padding, str):
        padding = 0
    size = tuple(min(n, 6) for n in size)
    conv = getattr(torch.nn, f"ConvTranspose{ndim}d")
    agree(
        lambda: conv(c_in, c_out, kernel, stride, padding, output_padding, groups, bias, dilation),
        lambda: ConvTransposeSpec(ndim, c_out, kernel, c_in, stride, padding, output_padding,
                                  dilation, groups, bias),
        (c_in, *size),
    )


@st.composite
def pool_case(draw, ndim):
    size = tuple(draw(st.lists(st.integers(1, MAX_SIZE[ndim]), min_size=ndim, max_size=ndim)))
    kernel = draw(st.integers(1, 5))
    stride = draw(st.one_of(st.none(), st.integers(1, 4)))
    padding = draw(st.integers(0, 3))
    return ndim, size, kernel, stride, padding, draw(st.booleans())


@NDIMS
@SETTINGS
@given(data=st.data(), dilation=st.integers(1, 3))
def test_max_pool_matches_torch(ndim, data, dilation):
    case = data.draw(pool_case(ndim))
    ndim, size, kernel, stride, padding, ceil_mode = case
    pool = getattr(torch.nn, f"MaxPool{ndim}d")
    agree(
        lambda: pool(kernel, stride, padding, dilation, ceil_mode=ceil_mode),
        lambda: PoolSpec(ndim, "max", kernel, stride, padding, dilation, ceil_mode),
        (2, *size),
    )


@NDIMS
@SETTINGS
@given(data=st.data(), count_include_pad=st.booleans())
def test_avg_pool_matches_torch(ndim, data, count_include_pad):
    case = data.draw(pool_case(ndim))
    ndim, size, kernel, stride, padding, ceil_mode = case
    pool = getattr(torch.nn, f"AvgPool{ndim}d")
    agree(
        lambda: pool(kernel, stride, padding, ceil_mode, count_include_pad),
        lambda: PoolSpec(ndim, "avg", kernel, stride, padding, 1, ceil_mode, count_include_pad),
        (2, *size),
    )


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [1, 2, 3, 4])
def test_conv_padding_modes_match_torch(mode, padding):
    for size in (2, 3, 4):
        agree(
            lambda: torch.nn.Conv1d(1, 1, 3, padding=padding, padding_mode=mode),
            lambda: ConvSpec(1, 1, 3, 1, padding=padding, padding_mode=mode),
            (1, size),
        )


@NDIMS
@FEWER
@given(data=st.data())
def test_upsample_matches_torch(ndim, data):
    size = tuple(data.draw(st.lists(st.integers(1, MAX_SIZE[ndim]), min_size=ndim, max_size=ndim)))
    scale = data.draw(st.one_of(st.floats(0.05, 4.0), st.integers(1, 4)))
    linear = {1: "linear", 2: "bilinear", 3: "trilinear"}[ndim]
    mode = data.draw(st.sampled_from(["nearest", "nearest-exact", "area", linear]))
    agree(
        lambda: torch.nn.Upsample(scale_factor=scale, mode=mode),
        lambda: UpsampleSpec(ndim, scale_factor=scale, mode=mode),
        (2, *size),
    )


@NDIMS
@FEWER
@given(data=st.data())
def test_adaptive_pool_matches_torch(ndim, data):
    size = tuple(data.draw(st.lists(st.integers(1, MAX_SIZE[ndim]), min_size=ndim, max_size=ndim)))
    entry = st.integers(1, 9) if ndim == 1 else st.one_of(st.none(), st.integers(1, 9))  # torch 1d takes no None
    out = tuple(data.draw(st.lists(entry, min_size=ndim, max_size=ndim)))
    op = data.draw(st.sampled_from(["max", "avg"]))
    pool = getattr(torch.nn, f"Adaptive{op.capitalize()}Pool{ndim}d")
    agree(lambda: pool(out), lambda: AdaptivePoolSpec(ndim, op, out), (2, *size))
