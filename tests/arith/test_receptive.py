"""Receptive and projective fields against brute force: with all weights 1 (average pooling for
pooling), the input pixels with a non-zero gradient of one output are exactly its receptive field;
the outputs that change when one input pixel does are its projective field."""

from __future__ import annotations

from fractions import Fraction
from math import gcd

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from layerlab.arith import (
    ConvSpec,
    ConvTransposeSpec,
    DenseSpec,
    FlattenSpec,
    PoolSpec,
    analyse_stack,
    elementwise,
    receptive_field,
    transposed_span,
)
from layerlab.arith.receptive import MAX_PERIOD, FieldDim, window_step
from layerlab.arith.report import Window

N = 96  # 1-d input length for brute force


def run(layers, x):
    """Apply 1-d layers given as tuples with all-ones weights."""
    for kind, k, s, p, d, *rest in layers:
        ones = torch.ones(1, 1, k, dtype=x.dtype)
        if kind == "conv":
            x = F.conv1d(x, ones, stride=s, padding=p, dilation=d)
        elif kind == "pool":
            x = F.avg_pool1d(x, k, s, p)
        else:
            x = F.conv_transpose1d(x, ones, stride=s, padding=p, output_padding=rest[0], dilation=d)
    return x


def specs_of(layers):
    table = {
        "conv": lambda k, s, p, d: ConvSpec(1, 1, k, 1, s, p, d),
        "pool": lambda k, s, p, d: PoolSpec(1, "avg", k, s, p),
    }
    return [ConvTransposeSpec(1, 1, k, 1, s, p, rest[0], d) if kind == "transposed" else table[kind](k, s, p, d)
            for kind, k, s, p, d, *rest in layers]


def dependency(layers, n=N):
    """(n, out) matrix, non-zero where output o depends on input i: the layers (linear, positive
    weights) applied to the n unit vectors in one batch."""
    return run(layers, torch.eye(n, dtype=torch.float64).unsqueeze(1))[:, 0, :]


def extent(hit):
    """(first, last) of the non-zero entries, or None."""
    found = torch.nonzero(hit).flatten()
    return (int(found.min()), int(found.max())) if len(found) else None


def field_of_output(layers, o, n=N):
    """(first, last) input pixel that output ``o`` depends on, or None."""
    return extent(dependency(layers, n)[:, o])


def outputs_of_input(layers, i, n=N):
    """(first, last) output that input pixel ``i`` reaches."""
    return extent(dependency(layers, n)[i])


layer = st.one_of(
    st.tuples(st.just("conv"), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2), st.integers(1, 3)),
    st.integers(1, 4).flatmap(lambda k: st.tuples(st.just("pool"), st.just(k), st.integers(1, 3),
                                                  st.integers(0, k // 2), st.just(1))),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(layer, min_size=1, max_size=4))
def test_conv_pool_field_matches_brute_force(layers):
    try:
        reports = analyse_stack(specs_of(layers), (1, N))
    except ValueError:
        assume(False)
    field = receptive_field(reports, (1, N))[-1].dims[0]
    o = reports[-1].output_shape[1] // 2
    centre = field.start + o * field.jump
    first, last = centre - (field.size - 1) / 2, centre + (field.size - 1) / 2
    assume(0 <= first and last <= N - 1)  # away from the borders, padding is not in the gradient
    assert field_of_output(layers, o) == (first, last)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 5), st.integers(1, 4), st.integers(0, 3), st.integers(1, 3), st.integers(0, 3))
def test_transposed_field_matches_brute_force(k, s, p, d, op):
    assume(op < max(s, d) and p <= d * (k - 1))
    layers = [("transposed", k, s, p, d, op)]
    n = 24
    reports = analyse_stack(specs_of(layers), (1, n))
    field = receptive_field(reports, (1, n))[-1].dims[0]
    out = reports[-1].output_shape[1]
    extents, span = [], d * (k - 1)
    matrix = dependency(layers, n)
    for o in range(out):
        # interior: every tap's input i = (o + p − t·d)/s lies inside the input
        if (o + p - span) / s < 0 or (o + p) / s > n - 1:
            continue
        seen = extent(matrix[:, o])
        if seen is None:  # stride > kernel: this output gets only the bias
            continue
        extents.append(seen[1] - seen[0] + 1)
        if o % s == 0:
            assert Fraction(seen[0] + seen[1], 2) == field.start + o * field.jump
    assume(extents)
    assert max(extents) == field.size == transposed_span(k, s, d, p)[0]
    assert field.jump == Fraction(1, s)


def test_conv_then_transposed_centres():
    layers = [("conv", 3, 2, 1, 1), ("transposed", 4, 2, 1, 1, 0)]
    reports = analyse_stack(specs_of(layers), (1, N))
    field = receptive_field(reports, (1, N))[-1].dims[0]
    # conv: r 3, j 2, start 0; transposed k4 s2 p1: each output spans 2 conv outputs, c0 = −1/2
    assert (field.size, field.jump, field.start) == (5, 1, -1)
    matrix = dependency(layers)
    for o in range(10, 80, 2):
        assert extent(matrix[:, o]) == (field.start + o * field.jump - 2, field.start + o * field.jump + 2)


@pytest.mark.parametrize("layers", [
    [("transposed", 4, 2, 1, 1, 0)],
    [("transposed", 4, 2, 1, 1, 0), ("transposed", 3, 2, 0, 1, 1)],
    [("transposed", 5, 3, 2, 2, 0), ("transposed", 2, 1, 0, 1, 0)],
])
def test_projective_field_of_transposed_chain(layers):
    reports = analyse_stack(specs_of(layers), (1, 16))
    projective = receptive_field(reports, (1, 16))[-1].dims[0].projective
    first, last = outputs_of_input(layers, 8, n=16)
    assert last - first + 1 == projective


@pytest.mark.parametrize("layers", [
    [("conv", 3, 2, 1, 1)],
    [("conv", 5, 2, 0, 2), ("pool", 2, 2, 0, 1)],
    [("conv", 3, 1, 1, 1), ("conv", 3, 3, 1, 1), ("pool", 3, 2, 1, 1)],
])
def test_projective_field_of_conv_chain_is_the_largest_over_alignments(layers):
    reports = analyse_stack(specs_of(layers), (1, N))
    projective = receptive_field(reports, (1, N))[-1].dims[0].projective
    matrix = dependency(layers)
    extents = [extent(matrix[i]) for i in range(30, 60)]  # None: a dilated, strided tap skips i
    assert max(last - first + 1 for first, last in filter(None, extents)) == projective


def test_2d_per_dimension_field():
    spec = [ConvSpec(2, 1, (3, 5), 1, stride=(1, 2), padding=(1, 2), dilation=(2, 1)),
            PoolSpec(2, "avg", 2)]
    reports = analyse_stack(spec, (1, 40, 40))
    fields = receptive_field(reports, (1, 40, 40))[-1]
    # H: k_eff 5 → r 5, j 1; pool → r 6, j 2.   W: k 5 s 2 → r 5, j 2; pool → r 7, j 4
    assert [(d.size, d.jump) for d in fields.dims] == [(6, 2), (7, 4)]
    x = torch.ones(1, 1, 40, 40, dtype=torch.float64, requires_grad=True)
    y = F.avg_pool2d(F.conv2d(x, torch.ones(1, 1, 3, 5, dtype=torch.float64), stride=(1, 2),
                              padding=(1, 2), dilation=(2, 1)), 2)
    oh, ow = 9, 4
    y[0, 0, oh, ow].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    for d, o, hit in zip(fields.dims, (oh, ow), (rows, cols)):
        centre = d.start + o * d.jump
        assert (int(hit.min()), int(hit.max())) == (centre - (d.size - 1) / 2, centre + (d.size - 1) / 2)


def test_global_layers_and_warnings():
    specs = [ConvSpec(2, 4, 7, padding=3), ConvSpec(2, 4, 7, padding=3), elementwise("ReLU"), FlattenSpec(),
             DenseSpec(3)]
    fields = receptive_field(analyse_stack(specs, (1, 10, 10)), (1, 10, 10))
    assert fields[1].dims[0].size == 13
    assert fields[1].warnings == ("H: receptive field 13 > input 10: part of it lies in the padding",
                                  "W: receptive field 13 > input 10: part of it lies in the padding")
    assert fields[2].as_dict() == fields[1].as_dict()  # ReLU keeps the field
    assert [f.is_global for f in fields] == [False, False, False, True, True]
    assert fields[4].as_dict() == {"size": [10, 10], "jump": [10, 10], "start": [4.5, 4.5],
                                   "projective": [10, 10], "aligned": [True, True], "period": [1, 1], "units": [[], []], "global": True, "warnings": []}


def test_transposed_span_with_empty_outputs():
    # stride 3, kernel 2: residues 0 and 1 get one tap each, residue 2 none
    assert transposed_span(2, 3) == (1, Fraction(0))
    report = ConvTransposeSpec(1, 1, 2, stride=3).analyse((1, 5))
    assert report.warnings == ("L: stride 3 with kernel 2 (dilation 1): 1 of every 3 outputs receive no input (only the bias)",)
    assert ConvTransposeSpec(1, 1, 3, stride=2).analyse((1, 5)).warnings == (
        "L: kernel 3 is not a multiple of stride 2: outputs receive 1 or 2 taps in turn (uneven overlap, "
        "checkerboard artifacts: Odena et al. 2016)",)


def _span_by_residue(kernel_size, stride, dilation, padding):
    """``transposed_span`` by listing the taps of every output residue (the definition, O(stride·kernel))."""
    spans = []
    for residue in range(stride):
        taps = [t for t in range(kernel_size) if (residue - t * dilation) % stride == 0]
        if taps:
            spans.append((max(taps) - min(taps)) * dilation // stride + 1)
    zero = [Fraction(padding - t * dilation, stride) for t in range(kernel_size) if (padding - t * dilation) % stride == 0]
    centre = (min(zero) + max(zero)) / 2 if zero else Fraction(2 * padding - dilation * (kernel_size - 1), 2 * stride)
    return max(spans), centre


def test_transposed_span_closed_form_is_the_definition_and_answers_huge_strides_at_once():
    for k, s, d, p in ((k, s, d, p) for k in range(1, 11) for s in range(1, 11) for d in range(1, 7) for p in range(12)):
        assert transposed_span(k, s, d, p) == _span_by_residue(k, s, d, p), (k, s, d, p)
    assert transposed_span(3, 10**12, 7, 5) == (1, Fraction(-1, 5 * 10**11))  # output 0 gets no tap
    assert transposed_span(10**15, 3, 2, 10**14) == (666666666666667, Fraction(-3 * 10**14))


def _units_by_every_tap(field: FieldDim, window: Window) -> list:
    """Exact ranges of outputs 0 … 2·P'−1 after ``window``: the union over every tap (no shortcut)."""
    k, s, p, d = window.kernel_size, window.stride, window.padding, window.dilation
    period = field.period * s if window.transposed else field.period // gcd(field.period, s)
    ranges = []
    for o in range(2 * period):
        if window.transposed:
            spans = [field.unit((o + p - t * d) // s) for t in range(k) if (o + p - t * d) % s == 0]
        else:
            spans = [field.unit(o * s - p + t * d) for t in range(k)]
        spans = [span for span in spans if span is not None]
        ranges.append((min(a for a, _ in spans), max(b for _, b in spans)) if spans else None)
    return ranges


@settings(max_examples=150, deadline=None)
@given(period=st.integers(1, 5), shift=st.integers(1, 7), k=st.integers(1, 40), s=st.integers(1, 6),
       p=st.integers(0, 8), d=st.integers(1, 5), transposed=st.booleans(), data=st.data())
def test_exact_ranges_read_only_the_extreme_taps_yet_equal_every_tap(period, shift, k, s, p, d, transposed, data):
    # a field that repeats every `period` outputs (as after upsampling), each unit an arbitrary range
    starts = data.draw(st.lists(st.integers(-5, 5), min_size=period, max_size=period))
    units = tuple((a, a + data.draw(st.integers(0, 4))) for a in starts)
    field = FieldDim(Fraction(3), Fraction(shift, period), Fraction(0), Fraction(1), period=period, units=units)
    window = Window(k, s, p, d, transposed)
    after = window_step(field, window)
    assert [after.unit(o) for o in range(2 * after.period)] == _units_by_every_tap(field, window)


def test_exact_ranges_of_huge_windows_come_at_once_and_huge_periods_are_not_followed():
    one = FieldDim(Fraction(1), Fraction(1), Fraction(0), Fraction(1), units=((0, 0),))
    conv = window_step(one, Window(10**9, 3, 1, 2))
    assert conv.unit(4) == (4 * 3 - 1, 4 * 3 - 1 + (10**9 - 1) * 2)
    assert window_step(one, Window(10**9, 7, 1, 2, True)).period == 7
    huge = window_step(one, Window(3, MAX_PERIOD + 1, 0, 1, True))
    assert (huge.period, huge.units, huge.unit(0)) == (1, (), None)
