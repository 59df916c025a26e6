"""PyTorch modules for every layer kind layerlab knows.

Layers torch already has subclass the torch layer (same maths, ``state_dict`` and speed) and add
``layer_spec()`` plus clear :class:`~layerlab.errors.ShapeError` messages. ``LocallyConnected*d``,
``TiledConv*d`` and ``LowRankLocallyConnected*d`` are layerlab's own, computed by :mod:`layerlab.functional`.
"""

from layerlab.nn.activation import (
    ELU, GELU, Dropout, Identity, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Tanh,
)
from layerlab.nn.conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from layerlab.nn.dense import Dense
from layerlab.nn.flatten import Flatten
from layerlab.nn.local import LocallyConnected1d, LocallyConnected2d, LocallyConnected3d
from layerlab.nn.lowrank import LowRankLocallyConnected1d, LowRankLocallyConnected2d, LowRankLocallyConnected3d
from layerlab.nn.normalization import BatchNorm1d, BatchNorm2d, BatchNorm3d, GroupNorm, LayerNorm
from layerlab.nn.pooling import (
    AvgPool1d, AvgPool2d, AvgPool3d, GlobalAvgPool, GlobalMaxPool, MaxPool1d, MaxPool2d, MaxPool3d,
)
from layerlab.nn.tiled import TiledConv1d, TiledConv2d, TiledConv3d

__all__ = [
    "Dense",
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "LocallyConnected1d", "LocallyConnected2d", "LocallyConnected3d",
    "TiledConv1d", "TiledConv2d", "TiledConv3d",
    "LowRankLocallyConnected1d", "LowRankLocallyConnected2d", "LowRankLocallyConnected3d",
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "GlobalAvgPool", "GlobalMaxPool",
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm",
    "Flatten",
    "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax",
    "Dropout", "Identity",
]
