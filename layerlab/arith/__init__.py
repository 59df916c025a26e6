"""Pure layer arithmetic: output shapes with filled-in formulas, parameters, buffers, MACs,
activation memory, receptive fields and the inverse size solver.

Imports no torch (a test proves it with torch blocked). Shapes are per sample.

Examples:
    >>> from layerlab.arith import ConvSpec
    >>> ConvSpec(2, 64, 3, padding=1).analyse((3, 32, 32)).output_shape
    (64, 32, 32)
"""

from layerlab.arith.counts import (
    MACS_CONVENTION,
    MEMORY_CONVENTION,
    activation_memory,
    dtype_bytes,
    flops,
)
from layerlab.arith.receptive import FieldDim, ReceptiveField, receptive_field, transposed_span
from layerlab.arith.report import GLOBAL, LayerReport, Window
from layerlab.arith.shape import parse_shape
from layerlab.arith.sizes import (
    PADDING_MODES,
    adaptive_windows,
    effective_kernel,
    output_size,
    output_sizes,
    padding_pairs,
    same_padding,
    transposed_output_size,
    window_output_sizes,
)
from layerlab.arith.solve import Solution, solve, unsolvable_reason
from layerlab.arith.specs import (
    AdaptivePoolSpec,
    ConvSpec,
    ConvTransposeSpec,
    DenseSpec,
    ElementwiseSpec,
    FlattenSpec,
    LocalSpec,
    LowRankLocalSpec,
    NormSpec,
    PoolSpec,
    TiledSpec,
    UpsampleSpec,
    elementwise,
    global_pool,
    upsample,
)
from layerlab.arith.stack import analyse_stack
from layerlab.arith.parse import parse_layer, parse_stack  # noqa: E402  (needs the specs above)

__all__ = [
    "MACS_CONVENTION",
    "MEMORY_CONVENTION",
    "PADDING_MODES",
    "AdaptivePoolSpec",
    "ConvSpec",
    "ConvTransposeSpec",
    "DenseSpec",
    "ElementwiseSpec",
    "FieldDim",
    "FlattenSpec",
    "GLOBAL",
    "LayerReport",
    "LocalSpec",
    "LowRankLocalSpec",
    "NormSpec",
    "PoolSpec",
    "ReceptiveField",
    "Solution",
    "TiledSpec",
    "UpsampleSpec",
    "Window",
    "activation_memory",
    "adaptive_windows",
    "analyse_stack",
    "dtype_bytes",
    "effective_kernel",
    "elementwise",
    "flops",
    "global_pool",
    "output_size",
    "output_sizes",
    "window_output_sizes",
    "padding_pairs",
    "parse_layer",
    "parse_shape",
    "parse_stack",
    "receptive_field",
    "same_padding",
    "solve",
    "transposed_output_size",
    "transposed_span",
    "unsolvable_reason",
    "upsample",
]
