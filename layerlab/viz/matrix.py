"""Picture of a layer's dense-equivalent matrix: tied weights share a colour, structural zeros blank.

:func:`matrix_picture` computes the RGBA image (``[out_features, in_features]`` cells, input and
output flattened C-major, as :func:`layerlab.convert.dense_matrix`) that :func:`draw_matrix` draws
with ``interpolation="nearest"``. Three modes:

- ``"exact"``: one pixel per matrix entry; colour = the weight the entry copies (conv: few colours
  repeated along diagonals), blank (transparent) where the layer has no connection. Colour only
  marks ties: a matrix in which no two entries share a weight (local, dense) is drawn in one colour
  and its caption says "none tied".
- ``"aggregate"``: each pixel is a block of ``rows × cols`` entries, colour = share of the block's
  entries that are connections (viridis, from 0 to the densest block's share; :func:`draw_matrix`
  adds the colour bar and labels the axes in matrix entries), blank where the block is all zero.
- ``"crop"``: the top-left ``max_pixels × max_pixels`` corner in exact colours. The title says so.

``"auto"`` (default) picks ``"exact"`` when both sides fit in ``max_pixels``, else ``"aggregate"``.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator, StrMethodFormatter

from layerlab.convert.matrix import estimate_entries, layer_entries
from layerlab.errors import ArgumentError
from layerlab.limits import check_size
from layerlab.viz.colors import weight_colors

__all__ = ["MatrixPicture", "matrix_picture", "full_matrix_picture", "draw_matrix", "MODES"]

MODES = ("auto", "exact", "aggregate", "crop")


@dataclass(frozen=True)
class MatrixPicture:
    """What :func:`draw_matrix` draws.

    Attributes:
        rgba: ``(H, W, 4)`` uint8 image; alpha 0 = structural zero.
        title: e.g. ``"Conv2d: 864 weights"``.
        caption: how to read it (``"exact: ..."``, ``"aggregated: ..."``, ``"cropped: ..."``).
        shape: ``(out_features, in_features)`` of the full matrix.
        weights: number of weight values of the layer (``weight.numel()``; 0 for pools/norms).
        colors: distinct colours drawn (exact and crop modes), else 0: one per weight when some
            weights are tied, 1 when nothing is tied.
        mode: ``"exact"``, ``"aggregate"`` or ``"crop"``.
        block: ``(rows, cols)`` of matrix entries per pixel.
        share_max: aggregate mode: share of connections in the densest block (the top of the colour
            bar), else 0.
        distinct_weights: distinct weights among the drawn entries (exact and crop modes), else 0.
    """

    rgba: np.ndarray
    title: str
    caption: str
    shape: tuple[int, int]
    weights: int
    colors: int
    mode: str
    block: tuple[int, int]
    share_max: float = 0.0
    distinct_weights: int = 0


def _resolve_mode(mode: str, shape, max_pixels: int) -> str:
    if mode not in MODES:
        raise ArgumentError(f"matrix picture: mode must be one of {MODES}. Received: mode={mode!r}")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ArgumentError(f"matrix picture: max_pixels must be a positive integer. Received: "
                            f"max_pixels={max_pixels!r}")
    if mode == "auto":
        return "exact" if max(shape) <= max_pixels else "aggregate"
    return mode


# the one colour of a matrix without ties (matplotlib's tab:blue)
_UNTIED = np.array([31, 119, 180, 255], dtype=np.uint8)


def _colour_cells(rows, cols, codes, height, width) -> tuple[np.ndarray, int, int]:
    """RGBA image with entry ``(rows[i], cols[i])`` coloured by ``codes[i]`` (weight identity).

    Without ties (every code distinct) all entries get one colour: distinct hash colours would
    paint patterns that read as ties. Returns the image, the colours drawn and the distinct weights.
    """
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    unique, inverse = np.unique(codes, return_inverse=True)
    if len(unique) == len(codes):
        rgba[rows, cols] = _UNTIED
        return rgba, min(1, len(unique)), len(unique)
    rgba[rows, cols] = weight_colors(inverse, len(unique))
    return rgba, len(unique), len(unique)


def _codes(entries) -> np.ndarray:
    """Weight identity of each entry: the tie index, or the value for constant layers."""
    if entries.tie is not None:
        return entries.tie.numpy()
    return entries.values.detach().to(torch.float64).numpy()


def _density_image(rows, cols, shape, block) -> tuple[np.ndarray, float]:
    """Aggregate entries into blocks; colour = share of non-zeros per block (viridis, 0 … max share).

    Returns the RGBA image and the largest share (the top of the colour scale).
    """
    from matplotlib import colormaps

    br, bc = block
    height, width = math.ceil(shape[0] / br), math.ceil(shape[1] / bc)
    counts = np.zeros(height * width, dtype=np.float64)
    if rows is not None:
        np.add.at(counts, rows // br * width + cols // bc, 1.0)
    else:  # full matrix: every entry is a connection
        counts[:] = 1.0
    counts = counts.reshape(height, width)
    area = np.outer(np.minimum(br, shape[0] - np.arange(height) * br),
                    np.minimum(bc, shape[1] - np.arange(width) * bc))
    share = counts / area if rows is not None else counts
    rgba = (colormaps["viridis"](share / share.max()) * 255).round().astype(np.uint8)
    rgba[share == 0] = 0
    return rgba, float(share.max())


def _picture(name, shape, weights, mode, max_pixels, cells, max_bytes) -> MatrixPicture:
    """Shared body: ``cells(row_stop, col_stop)`` returns ``(rows, cols, codes)`` or ``None`` (full)."""
    out_f, in_f = shape
    who = f"matrix picture of {name} ({out_f:,}×{in_f:,})"
    if mode == "aggregate":
        block = (max(1, math.ceil(out_f / max_pixels)), max(1, math.ceil(in_f / max_pixels)))
        found = cells(out_f, in_f)
        rows, cols = (None, None) if found is None else found[:2]
        rgba, share_max = _density_image(rows, cols, shape, block)
        caption = (f"aggregated: each pixel = {block[0]}×{block[1]} entries of the {out_f:,}×{in_f:,} "
                   "matrix, colour = share of the block's entries that are connections (blank = none)")
        return MatrixPicture(rgba, f"{name}: {weights:,} weights", caption, shape, weights, 0, mode, block,
                             share_max)
    row_stop, col_stop = (out_f, in_f) if mode == "exact" else (min(out_f, max_pixels), min(in_f, max_pixels))
    check_size(who, row_stop * col_stop, 4, max_bytes=max_bytes,
               hint="Use mode='aggregate' (one pixel per block) or mode='crop'")
    found = cells(row_stop, col_stop)
    if found is None:  # full matrix: every entry its own weight
        rows, cols = np.divmod(np.arange(row_stop * col_stop), col_stop)
        codes = rows * in_f + cols
    else:
        rows, cols, codes = found
    keep = (rows < row_stop) & (cols < col_stop)
    rgba, colors, distinct = _colour_cells(rows[keep], cols[keep], codes[keep], row_stop, col_stop)
    colour = ("one colour: every entry its own weight, none tied" if distinct == int(keep.sum())
              else "colour = which weight (same colour = tied)")
    if mode == "exact":
        caption = f"exact: one pixel per entry, {colour}, blank = structural zero"
    else:
        caption = (f"cropped: rows 0–{row_stop - 1} of {out_f:,}, columns 0–{col_stop - 1} of {in_f:,}; "
                   f"{colour}, blank = structural zero")
    return MatrixPicture(rgba, f"{name}: {weights:,} weights", caption, shape, weights, colors, mode, (1, 1),
                         distinct_weights=distinct)


def matrix_picture(layer, input_shape, *, mode: str = "auto", max_pixels: int = 512,
                   max_bytes: int | None = None, name: str | None = None) -> MatrixPicture:
    """Compute the picture of a linear layer's dense-equivalent matrix.

    Args:
        layer: any layer :func:`layerlab.convert.dense_matrix` supports.
        input_shape: per-sample input shape, e.g. ``(1, 6, 6)``.
        mode: ``"auto"``, ``"exact"``, ``"aggregate"`` or ``"crop"`` (default: ``"auto"``).
        max_pixels: largest side of the image in pixels (default: ``512``).
        max_bytes: memory limit for the entries and the image (default: ``$LAYERLAB_MAX_BYTES``
            or 2 GiB).
        name: title prefix (default: the layer's class name).

    Shape:
        ``rgba`` is ``(out_features, in_features, 4)`` in exact mode, at most
        ``(max_pixels, max_pixels, 4)`` otherwise.

    Examples:
        >>> picture = matrix_picture(torch.nn.Conv2d(1, 1, 3, bias=False), (1, 6, 6))
        >>> picture.rgba.shape, picture.colors
        ((16, 36, 4), 9)
    """
    _, shape = estimate_entries(layer, input_shape)
    mode = _resolve_mode(mode, shape, max_pixels)
    weight = getattr(layer, "weight", None)
    weights = weight.numel() if isinstance(weight, torch.Tensor) else 0

    def cells(row_stop, col_stop):
        if isinstance(layer, torch.nn.Linear) and len(tuple(input_shape)) == 1:
            return None
        entries = layer_entries(layer, input_shape, max_bytes=max_bytes)
        return entries.rows.numpy(), entries.cols.numpy(), _codes(entries)

    return _picture(name or type(layer).__name__, shape, weights, mode, max_pixels, cells, max_bytes)


def full_matrix_picture(out_features: int, in_features: int, *, mode: str = "auto", max_pixels: int = 512,
                        max_bytes: int | None = None, name: str = "Dense") -> MatrixPicture:
    """Picture of a dense layer's matrix without building the layer (every entry its own weight)."""
    shape = (out_features, in_features)
    mode = _resolve_mode(mode, shape, max_pixels)
    return _picture(name, shape, out_features * in_features, mode, max_pixels, lambda r, c: None, max_bytes)


def draw_matrix(picture: MatrixPicture, ax) -> None:
    """Draw a :class:`MatrixPicture` on a matplotlib ``Axes`` (nearest-neighbour, no smoothing).

    Ticks are integer matrix indices (an aggregated image is stretched over the whole matrix, so its
    ticks count entries, not pixels); an aggregated picture gets a labelled colour bar.
    """
    out_f, in_f = picture.shape
    height, width = picture.rgba.shape[:2]
    ax.set_facecolor("white")
    rows, cols = picture.block
    # cell (i, j) covers matrix entries [i·rows, (i+1)·rows) × [j·cols, (j+1)·cols); in exact and crop
    # mode (block 1×1) pixel centres fall on the integer indices
    extent = (-0.5, width - 0.5, height - 0.5, -0.5) if picture.mode != "aggregate" else (0, width * cols,
                                                                                            height * rows, 0)
    ax.imshow(picture.rgba, interpolation="nearest", extent=extent,
              aspect="auto" if max(height, width) > 64 else "equal")
    if picture.mode == "aggregate":
        ax.set_xlim(0, in_f)
        ax.set_ylim(out_f, 0)
        bar = ax.figure.colorbar(ScalarMappable(Normalize(0, picture.share_max), "viridis"), ax=ax, shrink=0.8)
        bar.set_label("share of the block's entries\nthat are connections", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_title(picture.title, fontsize=9)
    caption = "\n".join(textwrap.wrap(picture.caption, 60))
    ax.set_xlabel(f"input feature (C-major), {in_f:,} in all\n{caption}", fontsize=7)
    ax.set_ylabel(f"output feature, {out_f:,} in all", fontsize=7)
    ax.tick_params(labelsize=6)
