"""Receptive and projective fields of a stack of layers, per spatial dimension.

Receptive field recursion (Araujo, Norris & Sim, "Computing receptive fields of convolutional
neural networks", Distill 2019), with ``k_eff = d·(k − 1) + 1``::

    r_out     = r_in + (k_eff − 1)·j_in          # size, in input pixels
    j_out     = j_in · s                         # jump: input pixels between adjacent outputs
    start_out = start_in + ((k_eff − 1)/2 − p)·j_in   # centre of output 0's field

starting from ``r = 1, j = 1, start = 0`` (pixel ``i`` has centre ``i``). Output ``o`` of a layer
is centred at ``start + o·j`` and sees ``r`` input pixels (padding included).

Transposed convolution (and integer upsampling), derived from ``out = i·s − p + t·d``: output
``o`` receives input ``i = (o + p − t·d)/s`` for every tap ``t`` where that is an integer. The
taps of ``o`` depend only on ``o mod s``; their inputs span
``K = max over residues (t_max − t_min)·d/s + 1`` layer-input positions (a residue with no tap
gets no input: only the bias). Then::

    r_out = r_in + (K − 1)·j_in,    j_out = j_in / s,    start_out = start_in + c0·j_in

with ``c0`` the midpoint of output 0's inputs. The jump becomes a fraction; output centres are
periodic with period ``s`` rather than evenly spaced, so ``start + o·j`` is exact only at
multiples of ``s``. ``r`` is the largest field over the outputs.

Projective field (how many positions of this layer's output one network-input pixel reaches,
first to last, away from borders): ``P = 1`` at the input; transposed: ``P_out = (P_in − 1)·s +
k_eff``; conv/pool: ``P_out = floor((P_in + k_eff − 2)/s) + 1`` (the largest over alignments).

Dense, flatten and global pooling make the field global (the whole input). Shape-preserving layers
(activations, dropout, normalisation: its statistics are ignored) leave it unchanged.

Exact fields per output unit: after upsampling the recursion's ``start + o·j`` is the centre of
output ``o`` only at multiples of the stride, and ``r`` is a fraction. Alongside it, every dim keeps
the exact input range of each output, which repeats with a **period** ``P`` (1 for a network
without upsampling): output ``o = q·P + u`` sees input pixels ``units[u] + q·P·j`` (first and
last, padding included, ``P·j`` an integer). A window moves them exactly: output ``o`` of a
conv/pool reads layer inputs ``o·s − p + t·d``; of a transposed window, inputs ``(o + p − t·d)/s``
where that is an integer; the new units are the union of those inputs' units, with period
``P / gcd(P, s)`` (conv) or ``P·s`` (transposed). Ranges are kept for periods up to
``MAX_PERIOD`` (1,024) outputs; beyond, ``units`` is empty (not followed), as after a global layer.

Graphs with several paths (residual additions, concatenations; Araujo et al., section "Handling
multiple paths"): where paths meet, each path ``p`` brings output 0's field ``[start_p − (r_p −
1)/2, start_p + (r_p − 1)/2]`` with the same jump ``j`` (tensors that are added or concatenated
along channels have the same spatial size, so their paths have the same jump), and the merged
field is their union (:func:`merge_fields`)::

    lo = min_p (start_p − (r_p − 1)/2),   hi = max_p (start_p + (r_p − 1)/2)
    r = hi − lo + 1,   start = (lo + hi)/2,   j unchanged,   P = max_p P_p

``r`` is the largest path's field when the paths are **aligned** (every path's field has the same
centre, so that ``start + o·j`` is the centre of output ``o``'s field on every path); a path
whose centre differs (an unpadded branch added to a padded one) makes the field ``aligned=False``,
and stays so downstream, as a later layer moves every path's centre by the same amount.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import gcd, lcm

from layerlab.arith._args import check_input_shape
from layerlab.arith.report import GLOBAL, LayerReport, Window
from layerlab.arith.shape import parse_shape
from layerlab.arith.sizes import DIM_NAMES, effective_kernel


@dataclass(frozen=True)
class FieldDim:
    """The field of one spatial dim after a layer, in network-input pixels.

    Attributes:
        size: receptive field size ``r``.
        jump: distance ``j`` between adjacent outputs (a fraction after upsampling).
        start: centre of output 0's field (may be negative: it lies in the padding); output ``o``
            is centred at ``start + o·jump``.
        projective: extent ``P`` of the outputs one input pixel reaches.
        aligned: every path from the input has its field centred at ``start`` (see
            :func:`merge_fields`); always true for a chain of layers.
        period: ``P``, outputs per repeat of the exact ranges (1 without upsampling).
        units: the exact ``(first, last)`` input pixel of outputs ``0 … P−1`` (``None``: an
            output that only gets a bias); ``()`` when not followed (a global field, or a period
            over ``MAX_PERIOD``).
    """

    size: Fraction
    jump: Fraction
    start: Fraction
    projective: Fraction
    aligned: bool = True
    period: int = 1
    units: tuple[tuple[int, int] | None, ...] = ()

    def unit(self, o: int) -> tuple[int, int] | None:
        """The exact ``(first, last)`` input pixel that output ``o`` sees (padding included).

        Examples:
            >>> from layerlab.arith import ConvSpec
            >>> d = receptive_field([ConvSpec(1, 1, 3, stride=2).analyse((1, 9))], (1, 9))[-1].dims[0]
            >>> d.unit(0), d.unit(3)
            ((0, 2), (6, 8))
        """
        if not self.units:
            return None
        q, u = divmod(o, self.period)
        shift = int(self.jump * self.period) * q
        span = self.units[u]
        return None if span is None else (span[0] + shift, span[1] + shift)


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field after one layer.

    Attributes:
        index: 1-based layer index.
        kind: layer name.
        dims: one :class:`FieldDim` per spatial dim of the network input (empty for flat input).
        is_global: every output sees the whole input (after dense, flatten, global pooling).
        warnings: e.g. the field exceeds the input.
    """

    index: int
    kind: str
    dims: tuple[FieldDim, ...]
    is_global: bool
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """JSON-ready: ``size``, ``jump``, ``start``, ``projective`` lists (ints or floats),
        ``aligned`` (list of bools), ``period`` (list of ints), ``units`` (per dim, the ``[first,
        last]`` input pixel of outputs ``0 … P−1``, or ``null``), ``global``, ``warnings``."""
        def number(value: Fraction):
            return int(value) if value.denominator == 1 else float(value)

        return {
            "size": [number(d.size) for d in self.dims],
            "jump": [number(d.jump) for d in self.dims],
            "start": [number(d.start) for d in self.dims],
            "projective": [number(d.projective) for d in self.dims],
            "aligned": [d.aligned for d in self.dims],
            "period": [d.period for d in self.dims],
            "units": [[None if u is None else list(u) for u in d.units] for d in self.dims],
            "global": self.is_global,
            "warnings": list(self.warnings),
        }


def transposed_span(
    kernel_size: int, stride: int, dilation: int = 1, padding: int = 0
) -> tuple[int, Fraction]:
    """For a transposed window: ``(K, c0)`` — the most layer-input positions any output spans
    (first to last), and the midpoint of output 0's inputs ``i = (p − t·d)/s`` (when output 0
    gets no tap: the centre of its taps' continuous range, ``(p − d·(k−1)/2)/s``).

    Closed form (strides and kernels can be huge): ``t·d mod s`` depends on ``t mod P`` with
    ``P = s/g``, ``g = gcd(s, d)``, so the taps of one output residue are ``t ≡ c (mod P)``; they
    span ``(t_max − t_min)·d/s = floor((k−1−c)/P)·(d/g)`` inputs, the most for ``c = 0``. Output 0's
    taps solve ``t·d ≡ p (mod s)``: none unless ``g`` divides ``p``, else ``t ≡ t0 (mod P)`` with
    ``t0 = (p/g)·(d/g)⁻¹ mod P``.

    Examples:
        >>> transposed_span(4, 2, padding=1)  # each output gets 2 inputs, 1 apart
        (2, Fraction(-1, 2))
    """
    g = gcd(stride, dilation)
    period = stride // g
    inputs = (kernel_size - 1) // period * (dilation // g) + 1
    first = (padding // g) * pow(dilation // g, -1, period) % period if padding % g == 0 else kernel_size
    if first >= kernel_size:  # output 0 gets no tap
        return inputs, Fraction(2 * padding - dilation * (kernel_size - 1), 2 * stride)
    last = first + (kernel_size - 1 - first) // period * period
    return inputs, Fraction(2 * padding - dilation * (first + last), 2 * stride)


def receptive_field(reports: Sequence[LayerReport], input_shape) -> list[ReceptiveField]:
    """Cumulative receptive field after every layer, per spatial dim of ``input_shape``.

    Args:
        reports: the layers' reports in order (e.g. from ``analyse_stack``).
        input_shape: the network's per-sample input ``(C, *spatial)`` (or a string like ``"3x32x32"``).

    Returns:
        One :class:`ReceptiveField` per report.

    Examples:
        >>> from layerlab.arith import ConvSpec, analyse_stack
        >>> reps = analyse_stack([ConvSpec(2, 8, 3), ConvSpec(2, 8, 3, stride=2)], (1, 16, 16))
        >>> rf = receptive_field(reps, (1, 16, 16))
        >>> [(int(d.size), int(d.jump)) for d in rf[-1].dims]
        [(5, 2), (5, 2)]
    """
    shape = parse_shape(input_shape) if isinstance(input_shape, str) else check_input_shape(
        "receptive_field", input_shape)
    spatial = shape[1:]
    dims, is_global = input_dims(spatial), False
    fields = []
    for index, report in enumerate(reports, start=1):
        dims, is_global, warnings = layer_field(dims, is_global, report, spatial)
        warnings += oversize_warnings(dims, is_global, spatial)
        fields.append(ReceptiveField(index, report.kind, dims, is_global, tuple(warnings)))
    return fields


def input_dims(spatial: Sequence[int]) -> tuple[FieldDim, ...]:
    """The field of the network input itself: ``r = 1, j = 1, start = 0, P = 1`` per spatial dim."""
    one, zero = Fraction(1), Fraction(0)
    return tuple(FieldDim(one, one, zero, one, units=((0, 0),)) for _ in spatial)


def global_dims(spatial: Sequence[int]) -> tuple[FieldDim, ...]:
    """A global field: every output sees the whole input ``n`` (``r = j = P = n``, centre ``(n − 1)/2``)."""
    return tuple(FieldDim(Fraction(n), Fraction(n), Fraction(n - 1, 2), Fraction(n)) for n in spatial)


def layer_field(dims: Sequence[FieldDim], is_global: bool, report: LayerReport,
                spatial: Sequence[int]) -> tuple[tuple[FieldDim, ...], bool, list[str]]:
    """One layer of the recursion: the field after ``report``'s layer given the field before it.

    Args:
        dims, is_global: the field before the layer.
        report: the layer's report (its ``window``).
        spatial: the network input's spatial sizes (for a global field).

    Returns:
        ``(dims, is_global, warnings)``; the warnings are the layer's own (a shape change the
        field does not follow, a window with another number of dims), not :func:`oversize_warnings`.
    """
    warnings: list[str] = []
    window = report.window
    if window == GLOBAL or is_global:
        return global_dims(spatial), True, warnings
    if window is None:
        if report.input_shape != report.output_shape:
            warnings.extend(report.warnings)
        return tuple(dims), False, warnings
    if len(window) != len(dims):
        warnings.append(f"{report.kind}: {len(window)} spatial dims, the input has {len(dims)}; field not tracked")
        return tuple(dims), False, warnings
    return tuple(window_step(d, w) for d, w in zip(dims, window)), False, warnings


def oversize_warnings(dims: Sequence[FieldDim], is_global: bool, spatial: Sequence[int]) -> list[str]:
    """``"H: receptive field 7 > input 6: part of it lies in the padding"`` for each dim where it does."""
    if is_global:
        return []
    names = DIM_NAMES.get(len(spatial), tuple(f"dim{i}" for i in range(len(spatial))))
    return [f"{name}: receptive field {_show(d.size)} > input {n}: part of it lies in the padding"
            for name, n, d in zip(names, spatial, dims) if d.size > n]


def merge_fields(branches: Sequence[Sequence[FieldDim]]) -> tuple[FieldDim, ...] | None:
    """The field where paths meet (an addition, a concatenation along channels): per dim, the
    union of the paths' fields of output 0, aligned when every path is aligned and centred alike
    (see the module docstring). ``None`` when the paths' jumps differ (no common output grid).

    Examples:
        >>> from layerlab.arith import ConvSpec
        >>> a = receptive_field([ConvSpec(1, 1, 3, padding=1).analyse((1, 9))], (1, 9))[-1].dims
        >>> b = receptive_field([ConvSpec(1, 1, 1).analyse((1, 9))], (1, 9))[-1].dims
        >>> [(int(d.size), d.start, d.aligned) for d in merge_fields([a, b])]  # a residual 3-tap conv
        [(3, Fraction(0, 1), True)]
    """
    merged = []
    for paths in zip(*branches):
        if len({d.jump for d in paths}) != 1:
            return None
        lo = min(d.start - (d.size - 1) / 2 for d in paths)
        hi = max(d.start + (d.size - 1) / 2 for d in paths)
        aligned = all(d.aligned for d in paths) and len({d.start for d in paths}) == 1
        period, units = _merge_units(paths)
        merged.append(FieldDim(hi - lo + 1, paths[0].jump, (lo + hi) / 2, max(d.projective for d in paths), aligned,
                               period, units))
    return tuple(merged)


# exact ranges are listed for at most this many outputs per repeat (beyond: not followed, ``units`` empty)
MAX_PERIOD = 1024


def _union(spans) -> tuple[int, int] | None:
    spans = [span for span in spans if span is not None]
    return (min(a for a, _ in spans), max(b for _, b in spans)) if spans else None


def _merge_units(paths: Sequence[FieldDim]) -> tuple[int, tuple]:
    """The exact ranges where paths meet: per output, the union of the paths' ranges."""
    if any(not d.units for d in paths):
        return 1, ()
    period = lcm(*(d.period for d in paths))
    if period > MAX_PERIOD:
        return 1, ()
    return period, tuple(_union(d.unit(o) for d in paths) for o in range(period))


def _step_units(field: FieldDim, window: Window) -> tuple[int, tuple]:
    """The exact ranges after a window (see the module docstring)."""
    if not field.units:
        return 1, ()
    k, s, p, d = window.kernel_size, window.stride, window.padding, window.dilation
    period = field.period * s if window.transposed else field.period // gcd(field.period, s)
    if period > MAX_PERIOD:
        return 1, ()
    if window.transposed:
        units = tuple(_union(field.unit((o + p - t * d) // s) for t in _transposed_taps(o + p, k, s, d, field.period))
                      for o in range(period))
    else:
        units = tuple(_union(field.unit(o * s - p + t * d) for t in _extreme(range(k), field.period))
                      for o in range(period))
    return period, units


def _extreme(taps: range, period: int) -> list[int]:
    """The first and last ``period`` taps of ``taps``: the inputs they read, ``x = a + t·b``, cover
    every residue of ``x`` mod ``period`` with its smallest and its largest ``x``, and ``unit(x)``
    grows with ``x`` within a residue, so their union is that of all taps (without a loop over a
    huge kernel)."""
    if len(taps) <= 2 * period:
        return list(taps)
    return list(taps[:period]) + list(taps[-period:])


def _transposed_taps(shifted: int, k: int, s: int, d: int, period: int) -> list[int]:
    """The taps ``t < k`` of a transposed window that reach output ``o`` (``shifted = o + p``):
    ``(shifted − t·d) mod s = 0``, an arithmetic progression of step ``s / gcd(s, d)``; its extremes
    (:func:`_extreme`)."""
    g = gcd(s, d)
    if shifted % g:
        return []
    step = s // g
    first = (shifted // g) * pow(d // g, -1, step) % step
    return _extreme(range(first, k, step), period)


def window_step(field: FieldDim, window: Window) -> FieldDim:
    """One windowed layer of the recursion for one dim (see the module docstring).

    Examples:
        >>> d = window_step(FieldDim(Fraction(3), Fraction(1), Fraction(1), Fraction(3)), Window(3, 2, 1))
        >>> int(d.size), int(d.jump), int(d.start), int(d.projective)
        (5, 2, 1, 3)
    """
    span = effective_kernel(window.kernel_size, window.dilation)
    s, p = window.stride, window.padding
    if window.transposed:
        inputs, centre = transposed_span(window.kernel_size, s, window.dilation, p)
        return FieldDim(
            field.size + (inputs - 1) * field.jump,  # size
            field.jump / s,  # jump
            field.start + centre * field.jump,  # start
            (field.projective - 1) * s + span,  # projective
            field.aligned,
            *_step_units(field, window),  # period, units
        )
    return FieldDim(
        field.size + (span - 1) * field.jump,
        field.jump * s,
        field.start + (Fraction(span - 1, 2) - p) * field.jump,
        (field.projective + span - 2) // s + 1,
        field.aligned,
        *_step_units(field, window),
    )


def _show(value: Fraction) -> str:
    return str(int(value)) if value.denominator == 1 else f"{float(value):g}"
