"""Analysis of real models: ``spec_of(module)`` and ``summary(model, input_shape)``.

Examples:
    >>> import torch.nn as nn
    >>> from layerlab.analysis import summary
    >>> summary(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), (4,)).total.params
    15
"""

from layerlab.analysis.modules import spec_of
from layerlab.analysis.summary import LayerRow, Summary, Totals, summary

__all__ = ["spec_of", "summary", "Summary", "LayerRow", "Totals"]
