r"""DCGAN generator and discriminator (Radford et al. 2016), as in the PyTorch DCGAN example.

Generator, latent ``(nz, 1, 1)`` → image ``(nc, 64, 64)`` with ``ngf = scaled(64, width)``; every
transposed conv has kernel 4 and no bias (``out = (in − 1)·stride − 2·padding + 4``)::

    ConvT(nz → 8ngf, 4, 1, 0)  1 → 4     BN ReLU
    ConvT(8ngf → 4ngf, 4, 2, 1) 4 → 8    BN ReLU
    ConvT(4ngf → 2ngf, 4, 2, 1) 8 → 16   BN ReLU
    ConvT(2ngf → ngf, 4, 2, 1)  16 → 32  BN ReLU
    ConvT(ngf → nc, 4, 2, 1)    32 → 64  Tanh

Parameters (nz = 100, nc = 3, ngf = 64): weights 819,200 + 2,097,152 + 524,288 + 131,072 + 3,072
plus BatchNorm 2·(512 + 256 + 128 + 64) = **3,576,704**.

Discriminator, image ``(nc, S, S)`` with ``S`` a power of two ≥ 8 (64 in DCGAN) → one logit, with
``ndf = scaled(64, width)``: Conv(nc → ndf, 4, 2, 1) LeakyReLU(0.2), then Conv(4, 2, 1) + BN +
LeakyReLU(0.2) doubling the channels until the map is 4×4, then Conv(→ K, 4, 1, 0) → Flatten.
For 3×64×64: weights 3,072 + 131,072 + 524,288 + 2,097,152 + 8,192 plus BatchNorm
2·(128 + 256 + 512) = **2,765,568**. The DCGAN paper ends with a sigmoid; this returns the logit
(train with ``BCEWithLogitsLoss``, which is the numerically stable equivalent).
"""

from __future__ import annotations

from torch import nn

import layerlab.nn as L
from layerlab.errors import ShapeError
from layerlab.zoo._stack import Stack, scaled, spatial_ndim

__all__ = ["dcgan_generator", "dcgan_discriminator"]


def dcgan_generator(input_shape: tuple[int, ...], num_classes: int = 3, width: float = 1.0) -> nn.Sequential:
    """DCGAN generator: latent ``input_shape = (nz, 1, 1)`` → ``(num_classes, 64, 64)`` in [−1, 1].

    ``num_classes`` is the number of image channels ``nc`` (3 for RGB).

    Examples:
        >>> import torch
        >>> dcgan_generator((100, 1, 1), 3)(torch.randn(2, 100, 1, 1)).shape
        torch.Size([2, 3, 64, 64])
    """
    if len(input_shape) != 3 or input_shape[1:] != (1, 1):
        raise ShapeError(
            f"zoo model 'dcgan_generator' takes a latent vector shaped (nz, 1, 1), as in the DCGAN "
            f"paper. Received: input_shape={input_shape}; use e.g. (100, 1, 1) and feed "
            f"torch.randn(B, 100, 1, 1)"
        )
    ngf = scaled(64, width)
    s = Stack("dcgan_generator", input_shape)
    s.add(L.ConvTranspose2d(s.channels, 8 * ngf, 4, 1, 0, bias=False))
    s.add(L.BatchNorm2d(s.channels))
    s.add(L.ReLU())
    for mult in (4, 2, 1):
        s.add(L.ConvTranspose2d(s.channels, mult * ngf, 4, 2, 1, bias=False))
        s.add(L.BatchNorm2d(s.channels))
        s.add(L.ReLU())
    s.add(L.ConvTranspose2d(s.channels, num_classes, 4, 2, 1, bias=False))
    s.add(L.Tanh())
    return s.sequential()


def dcgan_discriminator(input_shape: tuple[int, ...], num_classes: int = 1, width: float = 1.0) -> nn.Sequential:
    """DCGAN discriminator: ``(nc, S, S)`` → ``(num_classes,)`` logits (``S`` a power of two ≥ 8).

    Examples:
        >>> import torch
        >>> dcgan_discriminator((3, 64, 64), 1)(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 1])
    """
    spatial_ndim("dcgan_discriminator", input_shape, allowed=(2,))
    size = input_shape[1]
    if input_shape[2] != size or size < 8 or size & (size - 1):
        raise ShapeError(
            f"zoo model 'dcgan_discriminator' takes square images whose side is a power of two >= 8 "
            f"(each stride-2 conv halves it down to 4x4). Received: input_shape={input_shape}; "
            f"resize the images, e.g. to 64x64"
        )
    ndf = scaled(64, width)
    s = Stack("dcgan_discriminator", input_shape)
    s.add(L.Conv2d(s.channels, ndf, 4, 2, 1, bias=False))
    s.add(L.LeakyReLU(0.2))
    while s.spatial[0] > 4:
        s.add(L.Conv2d(s.channels, 2 * s.channels, 4, 2, 1, bias=False))
        s.add(L.BatchNorm2d(s.channels))
        s.add(L.LeakyReLU(0.2))
    s.add(L.Conv2d(s.channels, num_classes, 4, 1, 0, bias=False))
    s.add(L.Flatten())
    return s.sequential()
