"""Analysis of real models: ``spec_of(module)`` and ``summary(model, input_shape)``; the same
document for a stack of layer strings: ``stack_summary(layers, input_shape)``.

Names are imported lazily (PEP 562), so ``layerlab.analysis.schema`` and
``layerlab.analysis.stack`` stay free of torch (``layerlab shape`` answers without it).

Examples:
    >>> import torch.nn as nn
    >>> from layerlab.analysis import summary
    >>> summary(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), (4,)).total.params
    15
"""

from __future__ import annotations

from layerlab._lazy import lazy_exports

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "spec_of": "layerlab.analysis.modules",
    "summary": "layerlab.analysis.summary",
    "stack_summary": "layerlab.analysis.stack",
    "Summary": "layerlab.analysis.schema",
    "LayerRow": "layerlab.analysis.schema",
    "Totals": "layerlab.analysis.schema",
}

__all__ = ["spec_of", "summary", "stack_summary", "Summary", "LayerRow", "Totals"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
