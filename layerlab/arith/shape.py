"""Parse per-sample shape strings such as ``"3x64x64"``."""

from __future__ import annotations

import re

from layerlab.errors import ArgumentError

_SEPARATORS = re.compile(r"\s*[x×,]\s*")


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``"3x64x64"`` (also ``"3×64×64"``, ``"3,64,64"``, ``"(3, 64, 64)"``) into a tuple.

    Args:
        text: sizes separated by ``x``, ``×`` or ``,``; optional surrounding parentheses.

    Returns:
        The per-sample shape, e.g. ``(3, 64, 64)``.

    Raises:
        ArgumentError: empty text, an empty entry, or an entry that is not a positive integer;
            the message echoes the text.

    Examples:
        >>> parse_shape("3x64x64")
        (3, 64, 64)
        >>> parse_shape("100×1×1")
        (100, 1, 1)
    """
    if not isinstance(text, str):
        raise ArgumentError(f"shape must be a string like '3x64x64'. Received: {text!r}")
    body = text.strip()
    if body.startswith("(") and body.endswith(")"):
        body = body[1:-1].strip().rstrip(",")
    if not body:
        raise ArgumentError(f"shape {text!r} is empty. Write sizes separated by 'x', e.g. 3x64x64 (C×H×W).")
    sizes = []
    for position, item in enumerate(_SEPARATORS.split(body), start=1):
        if not item:
            raise ArgumentError(f"shape {text!r}: size {position} is empty. Write sizes separated by 'x', "
                                f"e.g. 3x64x64 (C×H×W).")
        if not re.fullmatch(r"[+-]?\d+", item):
            raise ArgumentError(f"shape {text!r}: size {position} is {item!r}, not an integer. Write "
                                f"positive integers separated by 'x', e.g. 3x64x64 (C×H×W).")
        if len(item.lstrip("+-")) > 18:  # int() refuses > 4300 digits; no real size has 19
            raise ArgumentError(f"shape {text[:60]!r}: size {position} has {len(item.lstrip('+-'))} digits; "
                                f"sizes must be below 10**18, e.g. 3x64x64 (C×H×W).")
        value = int(item)
        if value < 1:
            raise ArgumentError(f"shape {text!r}: size {position} is {value}; every size must be a "
                                f"positive integer, e.g. 3x64x64 (C×H×W).")
        sizes.append(value)
    return tuple(sizes)
