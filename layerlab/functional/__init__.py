"""Ops layerlab implements itself (functional form).

``local_conv`` is the locally connected ("unshared") convolution used by ``LocallyConnected*d``;
``local_conv_transpose`` its adjoint, used by ``LocallyConnectedTranspose*d``.
"""

from layerlab.functional.local import local_conv
from layerlab.functional.local_transpose import local_conv_transpose
from layerlab.functional.tiled import tiled_conv

__all__ = ["local_conv", "tiled_conv", "local_conv_transpose"]
