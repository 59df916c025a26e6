r"""A small U-Net (Ronneberger et al. 2015) for segmentation: one class score per pixel.

``(C, *spatial)`` → ``(K, *spatial)`` logits, 1-d or 2-d, with ``c = scaled(16, width)``::

    enc1  = block(C → c)        full size      block = [Conv(3, pad 1, no bias) → BN → ReLU] × 2
    enc2  = block(c → 2c)       after MaxPool(2)
    mid   = block(2c → 4c)      after MaxPool(2)
    dec2  = block(4c → 2c)      on cat(ConvT(4c → 2c, 2, stride 2)(mid), enc2)
    dec1  = block(2c → c)       on cat(ConvT(2c → c, 2, stride 2)(dec2), enc1)
    head  = Conv(c → K, 1)

Padded 3×3 convolutions keep sizes, so every spatial size must be divisible by 4 (two poolings).
It is fully convolutional (an FCN): no dense layer, so the trained model runs on any such size.
"""

from __future__ import annotations

import torch
from torch import nn

import layerlab.nn as L
from layerlab.errors import ShapeError
from layerlab.zoo._stack import BATCH_NORM, CONV, CONV_T, MAX_POOL, scaled, spatial_ndim

__all__ = ["UNet", "unet"]


def _block(ndim: int, c_in: int, c_out: int) -> nn.Sequential:
    # conv bias is redundant before BatchNorm
    return nn.Sequential(
        CONV[ndim](c_in, c_out, 3, padding=1, bias=False), BATCH_NORM[ndim](c_out), L.ReLU(),
        CONV[ndim](c_out, c_out, 3, padding=1, bias=False), BATCH_NORM[ndim](c_out), L.ReLU(),
    )


class UNet(nn.Module):
    """Two-level U-Net; see the module docstring for the layers.

    Args:
        ndim: number of spatial dims (1 or 2).
        in_channels: input channels ``C``.
        num_classes: output channels ``K`` (class scores per position).
        channels: channels ``c`` of the first level (doubling per level).

    Shape:
        ``(B, C, *spatial)`` → ``(B, K, *spatial)``, every spatial size divisible by 4.
    """

    def __init__(self, ndim: int, in_channels: int, num_classes: int, channels: int) -> None:
        super().__init__()
        c = channels
        self.enc1 = _block(ndim, in_channels, c)
        self.enc2 = _block(ndim, c, 2 * c)
        self.mid = _block(ndim, 2 * c, 4 * c)
        self.pool = MAX_POOL[ndim](2)
        self.up2 = CONV_T[ndim](4 * c, 2 * c, 2, stride=2)
        self.dec2 = _block(ndim, 4 * c, 2 * c)
        self.up1 = CONV_T[ndim](2 * c, c, 2, stride=2)
        self.dec1 = _block(ndim, 2 * c, c)
        self.head = CONV[ndim](c, num_classes, 1)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(input)  # (B, c, *S)
        e2 = self.enc2(self.pool(e1))  # (B, 2c, *S/2)
        m = self.mid(self.pool(e2))  # (B, 4c, *S/4)
        d2 = self.dec2(torch.cat([self.up2(m), e2], dim=1))  # (B, 2c, *S/2)
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))  # (B, c, *S)
        return self.head(d1)  # (B, K, *S)


def unet(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> UNet:
    """A small U-Net for ``input_shape = (C, L)`` or ``(C, H, W)`` with sizes divisible by 4.

    Examples:
        >>> unet((1, 32, 32), 2)(torch.randn(2, 1, 32, 32)).shape
        torch.Size([2, 2, 32, 32])
    """
    ndim = spatial_ndim("unet", input_shape)
    if any(n % 4 for n in input_shape[1:]):
        raise ShapeError(
            f"zoo model 'unet' pools twice by 2 and concatenates skip connections, so every spatial "
            f"size must be divisible by 4. Received: input_shape={input_shape}; crop or pad the "
            f"inputs, e.g. to {tuple(n - n % 4 or 4 for n in input_shape[1:])}"
        )
    return UNet(ndim, input_shape[0], num_classes, scaled(16, width))
