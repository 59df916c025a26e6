"""Experiments: ``run_compare``, "which layer type for my data?", and ``run_sweep``, accuracy against
weight sharing (see docs/compare.md).

Names are imported lazily (PEP 562), so ``layerlab.experiments.defaults`` stays free of torch and
``layerlab compare --help`` shows the default recipe without importing torch.
"""

from __future__ import annotations

from layerlab._lazy import lazy_exports

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "CompareResult": "layerlab.experiments.compare",
    "DEFAULT_MODELS": "layerlab.experiments.defaults",
    "DEFAULT_RECIPE": "layerlab.experiments.defaults",
    "RunRecord": "layerlab.experiments.compare",
    "compare_table": "layerlab.experiments.report",
    "permute_positions": "layerlab.experiments.permute",
    "position_permutation": "layerlab.experiments.permute",
    "run_compare": "layerlab.experiments.compare",
    "write_outputs": "layerlab.experiments.report",
    "SweepPoint": "layerlab.experiments.sweep",
    "SweepResult": "layerlab.experiments.sweep",
    "filter_banks": "layerlab.experiments.sweep",
    "load_sweep": "layerlab.experiments.sweep",
    "run_sweep": "layerlab.experiments.sweep",
    "sharing_points": "layerlab.experiments.sweep",
    "sweep_markdown": "layerlab.experiments.report",
    "sweep_table": "layerlab.experiments.report",
    "write_sweep_outputs": "layerlab.experiments.report",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
