"""layerlab: the layer types of neural networks, their exact relations and their arithmetic.

Names are imported lazily (PEP 562), so ``import layerlab.arith`` stays free of torch and
``layerlab --help`` starts fast. Every public name is listed in ``_EXPORTS`` with the module that
defines it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "LayerlabError": "layerlab.errors",
    "ArgumentError": "layerlab.errors",
    "ShapeError": "layerlab.errors",
    "DataError": "layerlab.errors",
    "TrainingError": "layerlab.errors",
    "SizeLimitError": "layerlab.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'layerlab' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
