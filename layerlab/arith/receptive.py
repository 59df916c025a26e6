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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import gcd

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
        start: centre of output 0's field (may be negative: it lies in the padding).
        projective: extent ``P`` of the outputs one input pixel reaches.
    """

    size: Fraction
    jump: Fraction
    start: Fraction
    projective: Fraction


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
        ``global``, ``warnings``."""
        def number(value: Fraction):
            return int(value) if value.denominator == 1 else float(value)

        return {
            "size": [number(d.size) for d in self.dims],
            "jump": [number(d.jump) for d in self.dims],
            "start": [number(d.start) for d in self.dims],
            "projective": [number(d.projective) for d in self.dims],
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
    names = DIM_NAMES.get(len(spatial), tuple(f"dim{i}" for i in range(len(spatial))))
    one, zero = Fraction(1), Fraction(0)
    dims = [FieldDim(one, one, zero, one) for _ in spatial]
    is_global = False
    fields = []
    for index, report in enumerate(reports, start=1):
        warnings = []
        window = report.window
        if window == GLOBAL or is_global:
            is_global = True
            dims = [FieldDim(Fraction(n), Fraction(n), Fraction(n - 1, 2), Fraction(n)) for n in spatial]
        elif window is None:
            if report.input_shape != report.output_shape:
                warnings.extend(report.warnings)
        elif len(window) != len(dims):
            warnings.append(f"{report.kind}: {len(window)} spatial dims, the input has {len(dims)}; "
                            f"field not tracked")
        else:
            dims = [_step(d, w) for d, w in zip(dims, window)]
        for name, n, d in zip(names, spatial, dims):
            if not is_global and d.size > n:
                warnings.append(f"{name}: receptive field {_show(d.size)} > input {n}: part of it "
                                f"lies in the padding")
        fields.append(ReceptiveField(index, report.kind, tuple(dims), is_global, tuple(warnings)))
    return fields


def _step(field: FieldDim, window: Window) -> FieldDim:
    """One layer of the recursion (see the module docstring)."""
    span = effective_kernel(window.kernel_size, window.dilation)
    s, p = window.stride, window.padding
    if window.transposed:
        inputs, centre = transposed_span(window.kernel_size, s, window.dilation, p)
        return FieldDim(
            size=field.size + (inputs - 1) * field.jump,
            jump=field.jump / s,
            start=field.start + centre * field.jump,
            projective=(field.projective - 1) * s + span,
        )
    return FieldDim(
        size=field.size + (span - 1) * field.jump,
        jump=field.jump * s,
        start=field.start + (Fraction(span - 1, 2) - p) * field.jump,
        projective=(field.projective + span - 2) // s + 1,
    )


def _show(value: Fraction) -> str:
    return str(int(value)) if value.denominator == 1 else f"{float(value):g}"
