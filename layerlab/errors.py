"""The one exception family of layerlab.

Every error layerlab raises on purpose is a :class:`LayerlabError`. Messages follow one pattern:
*who* (the layer's repr, the argument or the file), *what was expected*, *what was received*, and
*the likely fix*, e.g.::

    Linear(4096 -> 10) expects 4096 input features, got 16384: the input is 64x64, not 32x32
    (flatten gives 64*16*16); flatten after pooling or use a lazy Dense

The subclasses also derive from the built-in exception a plain-PyTorch user would catch
(``ValueError`` for bad arguments and shapes, ``OSError``-free ``DataError`` for files), so
``except ValueError`` keeps working around layerlab layers.
"""

from __future__ import annotations

__all__ = ["LayerlabError", "ArgumentError", "ShapeError", "DataError", "TrainingError", "SizeLimitError"]


class LayerlabError(Exception):
    """Base class of every error layerlab raises on purpose."""


class ArgumentError(LayerlabError, ValueError):
    """An impossible argument: kernel <= 0, stride 0, groups not dividing channels, bad strings."""


class ShapeError(LayerlabError, ValueError):
    """An input whose shape does not fit a layer or a stack of layers."""


class DataError(LayerlabError):
    """A data file or folder that is missing, corrupt, truncated, mismatched or unsafe."""


class TrainingError(LayerlabError):
    """A training run that cannot go on: NaN/Inf loss, a dead worker, an unusable checkpoint."""


class SizeLimitError(LayerlabError, MemoryError):
    """A request whose estimated memory exceeds the configured limit (nothing was allocated)."""
