"""layerlab: the layer types of neural networks, their exact relations and their arithmetic.

Names are imported lazily (PEP 562), so ``import layerlab.arith`` stays free of torch and
``layerlab --help`` starts fast. Every public name is listed in ``_EXPORTS`` with the module that
defines it.
"""

from __future__ import annotations

from layerlab._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "LayerlabError": "layerlab.errors",
    "ArgumentError": "layerlab.errors",
    "ShapeError": "layerlab.errors",
    "DataError": "layerlab.errors",
    "TrainingError": "layerlab.errors",
    "SizeLimitError": "layerlab.errors",
    "analyse_stack": "layerlab.arith",
    "receptive_field": "layerlab.arith",
    "activation_memory": "layerlab.arith",
    "solve": "layerlab.arith",
    "parse_shape": "layerlab.arith",
    "MACS_CONVENTION": "layerlab.arith",
    "Dense": "layerlab.nn",
    "Conv1d": "layerlab.nn",
    "Conv2d": "layerlab.nn",
    "Conv3d": "layerlab.nn",
    "ConvTranspose1d": "layerlab.nn",
    "ConvTranspose2d": "layerlab.nn",
    "ConvTranspose3d": "layerlab.nn",
    "LocallyConnected1d": "layerlab.nn",
    "LocallyConnected2d": "layerlab.nn",
    "LocallyConnected3d": "layerlab.nn",
    "TiledConv1d": "layerlab.nn",
    "TiledConv2d": "layerlab.nn",
    "TiledConv3d": "layerlab.nn",
    "MaxPool1d": "layerlab.nn",
    "MaxPool2d": "layerlab.nn",
    "MaxPool3d": "layerlab.nn",
    "AvgPool1d": "layerlab.nn",
    "AvgPool2d": "layerlab.nn",
    "AvgPool3d": "layerlab.nn",
    "GlobalAvgPool": "layerlab.nn",
    "GlobalMaxPool": "layerlab.nn",
    "BatchNorm1d": "layerlab.nn",
    "BatchNorm2d": "layerlab.nn",
    "BatchNorm3d": "layerlab.nn",
    "LayerNorm": "layerlab.nn",
    "GroupNorm": "layerlab.nn",
    "Flatten": "layerlab.nn",
    "ReLU": "layerlab.nn",
    "LeakyReLU": "layerlab.nn",
    "ELU": "layerlab.nn",
    "GELU": "layerlab.nn",
    "SiLU": "layerlab.nn",
    "Tanh": "layerlab.nn",
    "Sigmoid": "layerlab.nn",
    "Softmax": "layerlab.nn",
    "LogSoftmax": "layerlab.nn",
    "Dropout": "layerlab.nn",
    "Identity": "layerlab.nn",
    "Dataset": "layerlab.data",
    "load_dataset": "layerlab.data",
    "summary": "layerlab.analysis",
    "spec_of": "layerlab.analysis",
    "stack_summary": "layerlab.analysis",
    "dense_matrix": "layerlab.convert",
    "dense_bias": "layerlab.convert",
    "conv_to_local": "layerlab.convert",
    "tiled_to_local": "layerlab.convert",
    "local_to_dense": "layerlab.convert",
    "conv_to_dense": "layerlab.convert",
    "dense_to_conv": "layerlab.convert",
    "convert_model": "layerlab.convert",
    "local_to_conv": "layerlab.convert",
    "dense_to_local": "layerlab.convert",
    "TrainConfig": "layerlab.train",
    "TrainResult": "layerlab.train",
    "fit": "layerlab.train",
    "run_compare": "layerlab.experiments",
    "CompareResult": "layerlab.experiments",
    "permute_positions": "layerlab.experiments",
    "matrix_picture": "layerlab.viz.matrix",
    "family_pictures": "layerlab.viz.family",
    "receptive_map": "layerlab.viz.receptive",
    "coverage_map": "layerlab.viz.coverage",
    "filter_grid": "layerlab.viz.filters",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
