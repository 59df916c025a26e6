"""The filters of a conv or locally connected layer as an image grid.

- Conv (``weight (C_out, C_in/groups, *k)``): one row per output channel, one tile per input channel;
  with one input channel (or ``C_in/groups == 3``: RGB tiles, each min-max scaled) one tile per output
  channel in a square-ish grid.
- Local (``weight (*out_size, groups, C_in/groups, *k, C_out/groups)``): for one output channel, the
  filter at every output position laid out like the output map (tiles averaged over input channels,
  or RGB for 3) — the picture of "a different filter at every position".
- Tiled: the same for the ``tile_size`` filter banks.

Single-channel tiles share one symmetric colour scale (blue negative, red positive). 1-d kernels
are ``1 × k`` tiles; 3-d kernels show their middle depth slice. Grids larger than ``max_tiles`` per
side are cropped to the first ones. Captions say all of this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from layerlab.convert.geometry import geometry_of
from layerlab.errors import ArgumentError

__all__ = ["FilterGrid", "filter_grid", "draw_filters"]


@dataclass(frozen=True)
class FilterGrid:
    """What :func:`draw_filters` draws.

    Attributes:
        image: ``(H, W)`` float (NaN = gap between tiles) or ``(H, W, 3)`` RGB in ``[0, 1]`` (NaN gaps).
        rows, cols: tiles shown; total_rows, total_cols: tiles before cropping.
        tile: ``(kh, kw)`` size of one tile.
        title, caption: text drawn with the image.
        vmax: symmetric colour limit for single-channel images.
    """

    image: np.ndarray
    rows: int
    cols: int
    total_rows: int
    total_cols: int
    tile: tuple[int, int]
    title: str
    caption: str
    vmax: float

    def as_dict(self) -> dict:
        return {"rows": self.rows, "cols": self.cols, "total_rows": self.total_rows,
                "total_cols": self.total_cols, "tile": list(self.tile), "cropped": self.cropped,
                "title": self.title, "caption": self.caption}

    @property
    def cropped(self) -> bool:
        return (self.rows, self.cols) != (self.total_rows, self.total_cols)


def _tiles_from(kernels: np.ndarray, ndim: int) -> np.ndarray:
    """``(R, C, *k)`` → ``(R, C, kh, kw)``."""
    if ndim == 1:
        return kernels[..., None, :]
    if ndim == 3:
        return kernels[..., kernels.shape[-3] // 2, :, :]
    return kernels


def _assemble(tiles: np.ndarray, rgb: bool) -> np.ndarray:
    """``(R, C, kh, kw[, 3])`` → one image with 1-pixel NaN gaps between tiles."""
    rows, cols, kh, kw = tiles.shape[:4]
    shape = (rows * (kh + 1) - 1, cols * (kw + 1) - 1) + ((3,) if rgb else ())
    image = np.full(shape, np.nan)
    for r in range(rows):
        for c in range(cols):
            image[r * (kh + 1): r * (kh + 1) + kh, c * (kw + 1): c * (kw + 1) + kw] = tiles[r, c]
    return image


def _rgb(tiles: np.ndarray) -> np.ndarray:
    """``(R, C, 3, kh, kw)`` → ``(R, C, kh, kw, 3)`` min-max scaled per tile."""
    tiles = np.moveaxis(tiles, 2, -1)
    low = tiles.min(axis=(2, 3, 4), keepdims=True)
    span = tiles.max(axis=(2, 3, 4), keepdims=True) - low
    return (tiles - low) / np.where(span > 0, span, 1.0)


def filter_grid(layer, *, channel: int = 0, max_tiles: int = 32, name: str | None = None) -> FilterGrid:
    """Arrange a conv, local or tiled layer's filters in a grid (see the module docstring).

    Args:
        layer: ``Conv*d`` (torch.nn or layerlab), ``LocallyConnected*d`` or ``TiledConv*d``.
        channel: output channel shown for local and tiled layers (default: ``0``).
        max_tiles: crop the grid to at most this many tiles per side (default: ``32``).
        name: title prefix (default: the class name).

    Examples:
        >>> grid = filter_grid(torch.nn.Conv2d(1, 4, 5))
        >>> grid.rows, grid.cols, grid.image.shape  # 4 tiles of 5×5 in a 2×2 grid, 1-pixel gaps
        (2, 2, (11, 11))
    """
    geometry = geometry_of(layer)
    if geometry is None or geometry.kind in ("transpose", "local_transpose"):
        raise ArgumentError(f"filters: expected a Conv*d, LocallyConnected*d or TiledConv*d layer. Received: "
                            f"{layer!r}")
    if isinstance(max_tiles, bool) or not isinstance(max_tiles, int) or max_tiles < 1:
        raise ArgumentError(f"filters: max_tiles must be a positive integer. Received: max_tiles={max_tiles!r}")
    ndim, name = geometry.ndim, name or type(layer).__name__
    weight = layer.weight.detach().to(torch.float64).cpu().numpy()
    cg = geometry.in_channels // geometry.groups
    rgb = cg == 3 and ndim == 2
    if geometry.kind == "conv":
        tiles = weight[:, None] if rgb else weight  # (C_out, 1 | C_in/G, *k)
        what = ("one RGB tile per output channel (per-tile min-max scaled)" if rgb
                else "rows = output channels, columns = input channels (of its group)")
        title = f"{name}: {geometry.out_channels} filters of {cg}×{'×'.join(map(str, geometry.kernel_size))}"
    else:
        if not isinstance(channel, int) or not 0 <= channel < geometry.out_channels:
            raise ArgumentError(f"filters: channel must be an output channel in [0, {geometry.out_channels}). "
                                f"Received: channel={channel!r}")
        g, o = divmod(channel, geometry.out_channels // geometry.groups)
        positions = weight.shape[:ndim]
        bank = weight[(Ellipsis, o)][(slice(None),) * ndim + (g,)]  # (*positions, C_in/G, *k)
        if not rgb:  # RGB keeps its 3 channels: (*positions, 3, kh, kw)
            bank = bank.mean(axis=ndim)  # (*positions, *k): mean over input channels
        lay = positions if ndim == 2 else ((1, positions[0]) if ndim == 1 else positions[1:])
        if ndim == 3:
            bank = bank[positions[0] // 2]
        tiles = bank.reshape(*lay, *bank.shape[1 if ndim == 1 else 2:])  # (R, C, ...)
        where = "per output position" if geometry.kind == "local" else f"per tile position (tile_size={geometry.tile_size})"
        what = (f"output channel {channel}: the filter {where}, laid out like the output map"
                + ("" if rgb else ", averaged over input channels") + (", middle depth row" if ndim == 3 else ""))
        title = f"{name}: filters of output channel {channel}, {int(np.prod(positions)):,} positions"
    if rgb:
        tiles = _rgb(tiles)  # (R, C, kh, kw, 3)
    else:
        tiles = _tiles_from(tiles, ndim)  # (R, C, kh, kw)
    if geometry.kind == "conv" and tiles.shape[1] == 1:  # one tile per output channel: a square-ish grid
        count = tiles.shape[0]
        side = int(np.ceil(np.sqrt(count)))
        filler = np.full((side * int(np.ceil(count / side)) - count, 1, *tiles.shape[2:]), np.nan)
        tiles = np.concatenate([tiles, filler]).reshape(-1, side, *tiles.shape[2:])
        what = what.replace("rows = output channels, columns = input channels (of its group)",
                            "one tile per output channel, row by row")
    total_rows, total_cols = tiles.shape[:2]
    tiles = tiles[:max_tiles, :max_tiles]
    rows, cols = tiles.shape[:2]
    caption = what + ("" if ndim == 2 else "; 1-d kernels as 1×k tiles" if ndim == 1 else "; 3-d kernels: middle depth slice")
    if (rows, cols) != (total_rows, total_cols):
        caption += f"; cropped to the first {rows}×{cols} of {total_rows}×{total_cols} tiles"
    image = _assemble(tiles, rgb)
    vmax = float(np.nanmax(np.abs(image))) if not rgb and np.isfinite(image).any() else 1.0
    return FilterGrid(image, rows, cols, total_rows, total_cols, tuple(tiles.shape[2:4]), title, caption,
                      vmax or 1.0)


def draw_filters(grid: FilterGrid, ax) -> None:
    """Draw a :class:`FilterGrid` (nearest neighbour; gaps white)."""
    import textwrap

    ax.set_facecolor("white")
    if grid.image.ndim == 3:
        ax.imshow(np.nan_to_num(grid.image, nan=1.0), interpolation="nearest")
    else:
        im = ax.imshow(grid.image, interpolation="nearest", cmap="RdBu_r", vmin=-grid.vmax, vmax=grid.vmax)
        ax.figure.colorbar(im, ax=ax, shrink=0.6).set_label("weight value (0 = white)", fontsize=7)
    ax.set_title(grid.title, fontsize=8)
    ax.set_xlabel("\n".join(textwrap.wrap(grid.caption, 70)), fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
