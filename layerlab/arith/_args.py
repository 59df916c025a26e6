"""Argument checks shared by the specs: normalise ``int | tuple`` arguments, echo bad values.

Every message names the layer (``who``), the argument, what was expected and the value received,
e.g. ``Conv2d: stride must be positive integers. Received: stride=(0, 1)``.
"""

from __future__ import annotations

from numbers import Integral

from layerlab.errors import ArgumentError, ShapeError


def is_int(value) -> bool:
    """True for an integer (Python or NumPy) that is not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_ndim(who: str, ndim) -> int:
    """Return ``ndim`` when it is 1, 2 or 3; raise :class:`ArgumentError` otherwise."""
    if not is_int(ndim) or ndim not in (1, 2, 3):
        raise ArgumentError(f"{who}: ndim must be 1, 2 or 3. Received: ndim={ndim!r}")
    return ndim


def ntuple(who: str, name: str, value, ndim: int, *, minimum: int, fix: str = "") -> tuple[int, ...]:
    """Broadcast an int to ``ndim`` entries or check a tuple of ``ndim`` ints, each ``>= minimum``.

    The one int/tuple normaliser of layerlab (specs, functional ops, conversions, pictures, CLI).

    Args:
        who: the caller named in messages, e.g. ``"Conv2d"`` or ``"local_conv"``.
        name: the argument name, e.g. ``"stride"``.
        value: an int or a tuple/list of ``ndim`` ints.
        ndim: number of spatial dimensions.
        minimum: 1 for sizes and strides, 0 for paddings.
        fix: a caller's hint appended to the message after ``"; "`` (default: none).

    Examples:
        >>> ntuple("Conv2d", "stride", 2, 2, minimum=1)
        (2, 2)
    """
    tail = f"; {fix}" if fix else ""
    if is_int(value):
        values = (int(value),) * ndim
    elif isinstance(value, (tuple, list)) and len(value) == ndim and all(is_int(v) for v in value):
        values = tuple(int(v) for v in value)
    else:
        plural = "s" if ndim > 1 else ""
        raise ArgumentError(
            f"{who}: {name} must be an int or a tuple of {ndim} int{plural}. Received: {name}={value!r}{tail}"
        )
    if any(v < minimum for v in values):
        what = "positive integers" if minimum == 1 else "non-negative integers"
        raise ArgumentError(f"{who}: {name} must be {what}. Received: {name}={value!r}{tail}")
    return values


def positive_int(who: str, name: str, value, *, optional: bool = False) -> int | None:
    """Check a single positive int (``None`` allowed when ``optional``)."""
    if value is None and optional:
        return None
    if not is_int(value) or value < 1:
        raise ArgumentError(f"{who}: {name} must be a positive integer. Received: {name}={value!r}")
    return int(value)


def choice(who: str, name: str, value, options: tuple) -> object:
    """Check that ``value`` is one of ``options``."""
    if value not in options:
        listed = ", ".join(repr(o) for o in options)
        raise ArgumentError(f"{who}: {name} must be one of {listed}. Received: {name}={value!r}")
    return value


def divides(who: str, groups: int, channels: int | None, name: str, groups_name: str = "groups") -> None:
    """Raise when ``groups`` does not divide ``channels`` (an argument known at construction)."""
    if channels is not None and channels % groups:
        raise ArgumentError(
            f"{who}: {groups_name} must divide {name}. Received: {groups_name}={groups}, {name}={channels} "
            f"({channels} / {groups} = {channels / groups:g}); use a divisor of {channels}"
        )


def check_input_shape(who: str, input_shape) -> tuple[int, ...]:
    """Check a per-sample input shape: a non-empty tuple/list of positive ints."""
    if (
        not isinstance(input_shape, (tuple, list))
        or not input_shape
        or not all(is_int(v) and v > 0 for v in input_shape)
    ):
        raise ShapeError(
            f"{who}: input_shape must be a non-empty tuple of positive ints per sample "
            f"(no batch dimension), e.g. (3, 32, 32). Received: input_shape={input_shape!r}"
        )
    return tuple(int(v) for v in input_shape)
