"""Tiled convolution: weights shared between output positions equal modulo a tile size.

A tiled convolution (Le et al. 2010, "Tiled convolutional neural networks") sits between a
convolution and a locally connected layer: output position ``p`` uses the filter bank
``weight[p mod tile_size]``. Tile size 1 is a convolution; tile size = output size is a locally
connected layer.

The op gathers the tile filter banks into the location-major local layout (index
``arange(out) % tile`` per spatial dim) and calls :func:`layerlab.functional.local_conv`; the gather
is an indexing op, so gradients flow back to the tile weights exactly (summed over the positions
that share a tile entry).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from layerlab.arith import window_output_sizes
from layerlab.arith._args import ntuple
from layerlab.errors import ShapeError
from layerlab.functional.local import local_conv

__all__ = ["tiled_conv"]


def tiled_conv(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    r"""Tiled convolution over 1-, 2- or 3-d inputs.

    ``out[b, g·O_g + o, p] = Σ_{c, t} x_pad[b, g·C_g + c, p·stride + t·dilation]
    · weight[p mod tile, g, c, t, o] (+ bias)``, with ``C_g = C_in/groups``, ``O_g = C_out/groups``.

    Args:
        input: ``(B, C_in, *in_size)``.
        weight: ``(*tile_size, groups, C_in // groups, *kernel_size, C_out // groups)``.
        bias: ``None`` (default), ``(C_out, *tile_size)`` (position ``p`` uses
            ``bias[:, p mod tile_size]``) or ``(C_out,)`` (shared per channel).
        stride: int or tuple. Default: 1.
        padding: zero padding on both sides, int or tuple. Default: 0.
        dilation: int or tuple. Default: 1.
        groups: Default: 1.

    Shape:
        - Input: ``(B, C_in, *in_size)``
        - Output: ``(B, C_out, *out_size)``,
          ``out = floor((in + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1``

    Examples:
        >>> x = torch.randn(2, 3, 8, 8)
        >>> w = torch.randn(2, 2, 1, 3, 3, 3, 4)  # (tile_h, tile_w, groups, C_in, kh, kw, C_out)
        >>> tiled_conv(x, w).shape
        torch.Size([2, 4, 6, 6])
    """
    ndim = input.dim() - 2
    if ndim not in (1, 2, 3) or weight.dim() != 2 * ndim + 3:
        raise ShapeError(
            "tiled_conv: expected a (B, C_in, *in_size) input with 1-3 spatial dims and a "
            f"(*tile_size, groups, C_in // groups, *kernel_size, C_out // groups) weight of rank "
            f"2·ndim + 3. Received: input of shape {tuple(input.shape)}, weight of shape "
            f"{tuple(weight.shape)}"
        )
    stride = ntuple("tiled_conv", "stride", stride, ndim, minimum=1)
    padding = ntuple("tiled_conv", "padding", padding, ndim, minimum=0)
    dilation = ntuple("tiled_conv", "dilation", dilation, ndim, minimum=1)
    tile = tuple(weight.shape[:ndim])
    kernel = tuple(weight.shape[ndim + 2 : 2 * ndim + 2])
    out_size = window_output_sizes("tiled_conv", input.shape[2:], kernel, stride, padding, dilation)
    # one index per spatial dim, shaped to broadcast: dim d gets shape (1, .., out_d, .., 1)
    index = tuple(
        (torch.arange(n, device=weight.device) % t).view([-1 if i == d else 1 for i in range(ndim)])
        for d, (n, t) in enumerate(zip(out_size, tile))
    )
    local_weight = weight[index]  # (*out_size, groups, C_in/g, *k, C_out/g)
    local_bias = bias
    if bias is not None and bias.dim() > 1:
        if tuple(bias.shape[1:]) != tile:
            raise ShapeError(
                f"tiled_conv: a per-location bias must have shape (C_out, *tile_size) = "
                f"({bias.shape[0]}, {', '.join(map(str, tile))}). Received: bias of shape "
                f"{tuple(bias.shape)}"
            )
        local_bias = bias[(slice(None), *index)]  # (C_out, *out_size)
    return local_conv(input, local_weight, local_bias, stride, padding, dilation, groups)
