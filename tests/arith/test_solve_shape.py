"""The inverse solver (checked by running every solution forward) and parse_shape."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerlab.arith import output_size, parse_shape, solve, transposed_output_size, unsolvable_reason
from layerlab.errors import ArgumentError


def test_dcgan_sizes():
    assert [s.describe() for s in solve(32, 64, 4)] == ["ConvTranspose(kernel_size=4, stride=2, padding=1)"]
    assert [s.describe() for s in solve(64, 32, 4)] == ["Conv(kernel_size=4, stride=2, padding=1)"]
    assert solve(32, 64, 4)[0].formula == "(32 − 1)·2 − 2·1 + 1·(4−1) + 0 + 1 = 64"
    # 1 → 4 with kernel 4: ConvTranspose(4, 1, 0), the generator's first layer
    assert solve(1, 4, 4, transposed=True)[0].describe() == "ConvTranspose(kernel_size=4, stride=1, padding=0)"


def test_sorted_by_use_of_inputs_then_padding():
    found = solve(7, 3, 3, transposed=False)
    keys = [(s.dropped > 0, s.padding, s.stride) for s in found]
    assert keys == sorted(keys) and found[0].describe() == "Conv(kernel_size=3, stride=2, padding=0)"


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 5), st.integers(1, 3))
def test_solutions_equal_a_brute_force_search(a, b, k, d):
    found = solve(a, b, k, dilation=d)
    for s in found:
        if s.transposed:
            assert transposed_output_size(a, k, s.stride, s.padding, s.output_padding, d) == b
            assert s.output_padding < max(s.stride, d)
        else:
            assert output_size(a, k, s.stride, s.padding, d) == b
    # brute force over every stride up to a + b + 2·k_eff, keeping the smallest stride where strides
    # cannot differ (one conv output; one transposed input)
    span = d * (k - 1) + 1
    strides = range(1, a + b + 2 * span + 1)
    convs = {(s, p) for p in range(span) for s in strides if output_size(a, k, s, p, d) == b}
    if b == 1:
        convs = {(min(s for s, q in convs if q == p), p) for p in {q for _, q in convs}}
    transposed = {(s, p, op) for p in range(span) for s in (strides if a > 1 else [1]) for op in range(max(s, d))
                  if transposed_output_size(a, k, s, p, op, d) == b}
    assert convs == {(s.stride, s.padding) for s in found if not s.transposed}
    assert transposed == {(s.stride, s.padding, s.output_padding) for s in found if s.transposed}
    assert bool(found) == (unsolvable_reason(a, b, k, dilation=d) == "")


def test_large_sizes_are_instant():
    assert [s.describe() for s in solve(4096, 8192, 4)] == ["ConvTranspose(kernel_size=4, stride=2, padding=1)"]
    assert [s.describe() for s in solve(100000, 50000, 3)] == ["Conv(kernel_size=3, stride=2, padding=1)"]
    assert unsolvable_reason(4096, 8191, 2, transposed=False).endswith(
        "the nearest reachable size is 4097. Try another kernel size, or a transposed conv.")


def test_max_stride_limits_the_search():
    assert [s.stride for s in solve(7, 3, 3, transposed=False)] == [2, 3, 3, 4]
    assert [s.stride for s in solve(7, 3, 3, transposed=False, max_stride=2)] == [2]


def test_unsolvable_is_explained():
    assert solve(32, 64, 3, transposed=False) == []
    assert unsolvable_reason(32, 64, 3, transposed=False) == (
        "no conv maps 32 → 64 with kernel_size=3 (any stride, padding ≤ d·(k−1) = 2); the nearest reachable size "
        "is 34. Try another kernel size, or a transposed conv.")


@pytest.mark.parametrize("text, shape", [("3x64x64", (3, 64, 64)), ("3×64×64", (3, 64, 64)), ("3,64,64", (3, 64, 64)),
                                         (" (1, 28, 28) ", (1, 28, 28)), ("100 x 1 x 1", (100, 1, 1)), ("784", (784,))])
def test_parse_shape(text, shape):
    assert parse_shape(text) == shape


@pytest.mark.parametrize("text, message", [
    ("", "shape '' is empty. Write sizes separated by 'x', e.g. 3x64x64 (C×H×W)."),
    ("3xx4", "shape '3xx4': size 2 is empty."),
    ("3x0x4", "shape '3x0x4': size 2 is 0; every size must be a positive integer"),
    ("3x-1", "shape '3x-1': size 2 is -1; every size must be a positive integer"),
    ("3x4.5", "shape '3x4.5': size 2 is '4.5', not an integer."),
    ("3x64x", "shape '3x64x': size 3 is empty."),
    ("abc", "shape 'abc': size 1 is 'abc', not an integer."),
    (None, "shape must be a string like '3x64x64'. Received: None"),
])
def test_parse_shape_rejects(text, message):
    with pytest.raises(ArgumentError, match=re.escape(message)):
        parse_shape(text)
