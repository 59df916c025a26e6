"""Ops layerlab implements itself (functional form).

``local_conv`` is the locally connected ("unshared") convolution used by ``LocallyConnected*d``.
"""

from layerlab.functional.local import local_conv

__all__ = ["local_conv"]
