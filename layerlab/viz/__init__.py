"""Pictures of layers (matplotlib, Agg, PNG and SVG): matrices, receptive fields, coverage, filters.

Every picture function first *computes* its image as data (an RGBA or count array in a frozen
dataclass) and then draws exactly that with ``interpolation="nearest"``, so tests check the pixels.
Large layers are aggregated or cropped, and the title or caption says so.

Names are imported lazily (PEP 562): ``import layerlab.viz`` does not import matplotlib or torch.
"""

from __future__ import annotations

from layerlab._lazy import lazy_exports

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "coverage_map": "layerlab.viz.coverage",
    "family_pictures": "layerlab.viz.family",
    "filter_grid": "layerlab.viz.filters",
    "matrix_picture": "layerlab.viz.matrix",
    "receptive_map": "layerlab.viz.receptive",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
