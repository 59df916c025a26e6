"""Ops layerlab implements itself (functional form).

``local_conv`` is the locally connected ("unshared") convolution used by ``LocallyConnected*d``.
"""

from layerlab.functional.local import local_conv
from layerlab.functional.lowrank import combining_weights, lowrank_local_bias, lowrank_local_conv, lowrank_local_weight
from layerlab.functional.tiled import tiled_conv

__all__ = ["local_conv", "tiled_conv", "lowrank_local_conv", "combining_weights",
           "lowrank_local_weight", "lowrank_local_bias"]
