"""Argument checks shared by the functional ops (``local_conv``, ``tiled_conv``)."""

from __future__ import annotations

from collections.abc import Sequence

from layerlab.errors import ArgumentError


def int_tuple(op: str, value: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    """Broadcast an ``int`` to ``ndim`` entries or check a tuple's length; ``op`` names the caller."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * ndim
    if isinstance(value, (tuple, list)) and len(value) == ndim and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return tuple(value)
    raise ArgumentError(
        f"{op}: {name} must be an int or a tuple of {ndim} ints for a {ndim}-d input. "
        f"Received: {name}={value!r}"
    )
