"""Run a per-sample shape through a list of specs and explain the first layer that does not fit."""

from __future__ import annotations

from collections.abc import Sequence

from layerlab.arith.report import LayerReport
from layerlab.arith.shape import parse_shape
from layerlab.arith.specs import DenseSpec, dense_mismatch
from layerlab.errors import ArgumentError, ShapeError


def analyse_stack(specs: Sequence, input_shape) -> list[LayerReport]:
    """Analyse ``specs`` in order, each on the previous output (``in_channels`` /
    ``in_features`` left as ``None`` are inferred).

    Args:
        specs: layer specs (anything with ``describe()`` and ``analyse(shape)``).
        input_shape: per-sample input shape, a tuple or a string like ``"3x32x32"``.

    Returns:
        One :class:`LayerReport` per spec.

    Raises:
        ShapeError: naming the layer (1-based index and ``describe()``), what it expected, what it
            got and why, e.g. ``layer 7: Linear(4096 → 10) expects 4096 input features, gets
            16384: flatten gives 64·16·16 = 16384; the input is 64×64, not 32×32``.

    Examples:
        >>> from layerlab.arith import ConvSpec, FlattenSpec, DenseSpec
        >>> [r.output_shape for r in analyse_stack([ConvSpec(2, 8, 3), FlattenSpec(), DenseSpec(10)], "1x5x5")]
        [(8, 3, 3), (72,), (10,)]
    """
    shape = parse_shape(input_shape) if isinstance(input_shape, str) else tuple(input_shape)
    reports: list[LayerReport] = []
    current = shape
    for index, spec in enumerate(specs, start=1):
        if not (hasattr(spec, "analyse") and hasattr(spec, "describe")):
            raise ArgumentError(f"analyse_stack: layer {index} must be a layerlab.arith spec. "
                                f"Received: {spec!r}")
        try:
            report = spec.analyse(current)
        except ShapeError as err:
            raise ShapeError(_explain(specs, shape, reports, index, spec, current, err)) from None
        except ArgumentError as err:
            raise ArgumentError(f"layer {index}: {err}") from None
        reports.append(report)
        current = report.output_shape
    return reports


def _explain(specs, shape, reports, index, spec, current, err) -> str:
    """The message of a layer that does not fit, with the flatten factorisation and a hint about
    the input size that would fit."""
    previous = reports[-1] if reports else None
    fitting = _fitting_input(specs[:index], shape)
    hint = ""
    if fitting is not None:
        hint = f"the input is {_size(shape)}, not {_size(fitting)}"
    flat = isinstance(spec, DenseSpec) and spec.in_features is not None and len(current) == 1
    if flat and previous is not None and previous.input_shape != previous.output_shape and len(previous.input_shape) > 1:
        source = previous.kind.lower() if previous.kind == "Flatten" else previous.kind
        factors = "·".join(map(str, previous.input_shape))
        why = f"{source} gives {factors} = {current[0]}" if previous.kind == "Flatten" else \
            f"{source} gives {current[0]} features from {previous.input_shape}"
        feed = None if fitting is None else f"feed a {'×'.join(map(str, fitting))} input"
        return f"layer {index}: " + dense_mismatch(spec.describe(), spec.in_features, current,
                                                   reasons=(why, *([hint] if hint else [])), alternative=feed)
    message = f"layer {index}: {err}"
    if hint:
        message += f" Note: {hint} — a {'×'.join(map(str, fitting))} input fits the stack up to this layer."
    return message


def _size(shape: tuple[int, ...]) -> str:
    """``(3, 64, 64)`` -> ``64×64`` (spatial part only when there is one)."""
    return "×".join(map(str, shape[1:] if len(shape) > 1 else shape))


def _fitting_input(prefix, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """An input with the same channels and aspect ratio for which every layer of ``prefix`` fits:
    the closest in size to ``shape`` where no floor drops input rows, else the closest that fits.
    ``None`` when there is none or no spatial dims. Tries at most ~300 sizes up to 4× (those
    within ±64 of the input, multiples of 16, powers of two), so the error path stays fast."""
    if len(shape) < 2:
        return None
    channels, spatial = shape[0], shape[1:]
    base = spatial[0]
    sizes = set(range(max(1, base - 64), base + 65)) | set(range(16, 4 * base + 1, 16))
    sizes |= {2 ** e for e in range(13) if 2 ** e <= 4 * base}
    sizes |= set(range(max(1, base // 4), 4 * base + 1, max(1, base // 32)))
    fallback = None
    for size in sorted(sizes - {base}, key=lambda n: (abs(n - base), n))[:320]:
        if any(s * size % base for s in spatial):
            continue
        candidate = (channels, *(s * size // base for s in spatial))
        try:
            current, warned = candidate, False
            for spec in prefix:
                report = spec.analyse(current)
                current, warned = report.output_shape, warned or bool(report.warnings)
        except (ShapeError, ArgumentError):
            continue
        if not warned:
            return candidate
        fallback = fallback or candidate
    return fallback
