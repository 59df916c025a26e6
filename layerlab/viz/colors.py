"""Colours for pictures: one distinct colour per weight index, blanks transparent.

Tied entries of a layer's matrix (the same weight used at several places) get the same colour.
Up to 20 distinct weights use matplotlib's categorical ``tab20``; beyond that, weight index ``i`` is
mapped to ``(i · P) mod 176³`` written in base 176 and shifted into ``[40, 215]`` per channel: a
bijection (``P`` is coprime to 176³), so distinct weights always get distinct colours, never near
black or white.
"""

from __future__ import annotations

import numpy as np

__all__ = ["weight_colors"]

_LEVELS = 176
_OFFSET = 40
_PRIME = 2_654_435_761  # Knuth's multiplicative hash constant (odd, not a multiple of 11)


def weight_colors(codes: np.ndarray, count: int) -> np.ndarray:
    """RGBA ``uint8`` colours for weight codes ``0 … count−1``.

    Args:
        codes: integer array of any shape with values in ``[0, count)``.
        count: number of distinct weights (decides the palette).

    Shape:
        ``codes.shape + (4,)``, alpha 255.
    """
    codes = np.asarray(codes, dtype=np.int64)
    out = np.empty(codes.shape + (4,), dtype=np.uint8)
    out[..., 3] = 255
    if count <= 20:
        from matplotlib import colormaps

        palette = (np.asarray(colormaps["tab20"].colors) * 255).round().astype(np.uint8)
        out[..., :3] = palette[codes]
        return out
    mixed = (codes * _PRIME) % _LEVELS**3
    for channel in range(3):
        out[..., channel] = mixed // _LEVELS**channel % _LEVELS + _OFFSET
    return out
