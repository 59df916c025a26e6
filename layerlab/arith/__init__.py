"""Pure layer arithmetic: output shapes with filled-in formulas, parameters, buffers, MACs,
activation memory, receptive fields and the inverse size solver.

Imports no torch (a test proves it with torch blocked). Shapes are per sample.

Examples:
    >>> from layerlab.arith import ConvSpec
    >>> ConvSpec(2, 64, 3, padding=1).analyse((3, 32, 32)).output_shape
    (64, 32, 32)
"""

from layerlab.arith.report import GLOBAL, LayerReport, Window
from layerlab.arith.sizes import output_size, same_padding, transposed_output_size
from layerlab.arith.specs import (
    AdaptivePoolSpec,
    ConvSpec,
    ConvTransposeSpec,
    DenseSpec,
    ElementwiseSpec,
    FlattenSpec,
    LocalSpec,
    NormSpec,
    PoolSpec,
    TiledSpec,
    UpsampleSpec,
)

__all__ = [
    "AdaptivePoolSpec",
    "ConvSpec",
    "ConvTransposeSpec",
    "DenseSpec",
    "ElementwiseSpec",
    "FlattenSpec",
    "GLOBAL",
    "LayerReport",
    "LocalSpec",
    "NormSpec",
    "PoolSpec",
    "TiledSpec",
    "UpsampleSpec",
    "Window",
    "output_size",
    "same_padding",
    "transposed_output_size",
]
