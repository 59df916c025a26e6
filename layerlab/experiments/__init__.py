"""Experiments: ``run_compare``, "which layer type for my data?" (see docs/compare.md).

Names are imported lazily (PEP 562), so ``layerlab.experiments.defaults`` stays free of torch and
``layerlab compare --help`` shows the default recipe without importing torch.
"""

from __future__ import annotations

import importlib

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
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'layerlab.experiments' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
