"""layerlab: the layer types of neural networks, their exact relations and their arithmetic.

Names are imported lazily (PEP 562), so ``import layerlab.arith`` stays free of torch and
``layerlab --help`` starts fast. The public names are those of the subpackages' ``__all__``
(listed in ``_PUBLIC``); each is imported from its subpackage on first access.
"""

from __future__ import annotations

from layerlab._lazy import declared_exports, lazy_exports

__version__ = "0.1.0"

# the packages whose public names (their ``__all__``) are layerlab's public names
_PUBLIC = ("errors", "arith", "nn", "data", "analysis", "convert", "train", "experiments", "viz")

# public name -> module that exports it, read from the packages' ``__all__`` without importing them
_EXPORTS: dict[str, str] = declared_exports(__name__, _PUBLIC)

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
