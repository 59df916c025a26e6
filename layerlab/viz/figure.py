"""Figures without pyplot's global state: an Agg canvas per figure, saved as PNG (and SVG)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from layerlab.errors import ArgumentError

__all__ = ["new_figure", "save_figure"]


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib ``Figure`` of ``width × height`` inches on its own Agg canvas."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, out_dir, stem: str, *, svg: bool = False, dpi: int = 100) -> list[Path]:
    """Write ``out_dir/stem.png`` (and ``stem.svg`` when ``svg``); return the written paths.

    Args:
        figure: the figure to save.
        out_dir: folder, created if missing.
        stem: file name without suffix.
        svg: also write an SVG (default: ``False``).
        dpi: resolution of the PNG (default: ``100``).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ArgumentError(f"output folder {str(out)!r} exists and is not a folder. Received: --out "
                            f"{str(out)!r}; pass a folder path")
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png"]
    figure.savefig(paths[0], dpi=dpi)
    if svg:
        paths.append(out / f"{stem}.svg")
        figure.savefig(paths[1])
    return paths
