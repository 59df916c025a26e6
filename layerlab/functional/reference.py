"""Naive float64 loop references for the ops layerlab implements: slow, but obviously right.

Every fast path (``local_conv``, ``tiled_conv``, conversions) is tested against these functions.
They loop in Python over every output position, every group and every output channel, and at each
one take the input window by plain slicing and sum ``window * filter``: no unfold, no einsum, no
reshape tricks, so their values share no code (and no bug) with the fast ops. Inputs are converted
to float64 and the result is float64; gradients flow through them, so they also give reference
gradients.

The output size is the convolution formula, taken from :func:`layerlab.arith.output_size` (the one
home of window geometry, checked against torch in ``tests/arith``)::

    out = floor((in + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1

Weight layouts:
    conv   ``(C_out, C_in/groups, *kernel_size)`` (torch's).
    local  ``(*out_size, groups, C_in/groups, *kernel_size, C_out/groups)`` (location-major,
           docs/ARCHITECTURE.md Contract 3).
    tiled  ``(*tile_size, groups, C_in/groups, *kernel_size, C_out/groups)``: output position
           ``p`` uses the filter bank ``weight[p mod tile_size]``.
    low-rank ``(R, C_out, C_in/groups, *kernel_size)`` basis banks and combining weights
           ``α (*out_size, R)``: output position ``p`` uses ``Σ_r α[p, r]·weight[r]``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from layerlab.arith import effective_kernel, output_sizes
from layerlab.arith._args import ntuple
from layerlab.errors import ArgumentError, ShapeError

__all__ = ["conv_reference", "local_conv_reference", "lowrank_local_conv_reference", "tiled_conv_reference"]

IntOrTuple = int | Sequence[int]


def _loop(
    x: torch.Tensor,
    kernel_size: tuple[int, ...],
    out_channels: int,
    groups: int,
    stride: IntOrTuple,
    padding: IntOrTuple,
    dilation: IntOrTuple,
    filter_at: Callable[[tuple[int, ...], int, int], torch.Tensor],
    bias_at: Callable[[tuple[int, ...], int], torch.Tensor | float],
    weight_out_size: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """Loop over output positions, groups and output channels of a windowed linear op.

    ``filter_at(position, group, o)`` returns the ``(C_in/groups, *kernel_size)`` filter that
    produces output channel ``group·(C_out/groups) + o`` at ``position``; ``bias_at(position,
    channel)`` its bias.
    """
    ndim = len(kernel_size)
    if x.dim() != ndim + 2:
        raise ShapeError(
            f"reference op: expected a {ndim + 2}-d input (B, C_in, *spatial) for a {ndim}-d kernel, "
            f"got shape {tuple(x.shape)}"
        )
    stride = ntuple("reference op", "stride", stride, ndim, minimum=1)
    padding = ntuple("reference op", "padding", padding, ndim, minimum=0)
    dilation = ntuple("reference op", "dilation", dilation, ndim, minimum=1)
    x = x.to(torch.float64)
    batch, in_channels = x.shape[:2]
    if in_channels % groups or out_channels % groups:
        raise ArgumentError(
            f"reference op: groups={groups} must divide C_in={in_channels} and C_out={out_channels}"
        )
    # zero padding on both sides of every spatial dim; F.pad takes the last dim first
    x = F.pad(x, [p for pad in reversed(padding) for p in (pad, pad)])  # (B, C_in, *padded)
    out_size = output_sizes(x.shape[2:], kernel_size, stride, (0,) * ndim, dilation)
    if min(out_size) < 1:
        raise ShapeError(f"reference op: the output size {out_size} is empty for input {tuple(x.shape)}")
    if weight_out_size is not None and out_size != weight_out_size:
        raise ShapeError(
            f"local_conv_reference: the weight is for output size {weight_out_size}, "
            f"but the input gives {out_size}"
        )
    cin_g, cout_g = in_channels // groups, out_channels // groups
    out = x.new_zeros((batch, out_channels, *out_size))  # (B, C_out, *out_size)
    for position in itertools.product(*(range(n) for n in out_size)):
        # the input window seen by this output position: start p·s, taps every d, k taps
        window = tuple(
            slice(p * s, p * s + effective_kernel(k, d), d)
            for p, s, d, k in zip(position, stride, dilation, kernel_size)
        )
        for g in range(groups):
            patch = x[(slice(None), slice(g * cin_g, (g + 1) * cin_g), *window)]  # (B, C_in/g, *k)
            for o in range(cout_g):
                channel = g * cout_g + o
                weight = filter_at(position, g, o).to(torch.float64)  # (C_in/g, *k)
                value = (patch * weight).sum(dim=tuple(range(1, ndim + 2)))  # (B,)
                out[(slice(None), channel, *position)] = value + bias_at(position, channel)
    return out


def _bias_fn(bias: torch.Tensor | None, tile: tuple[int, ...] | None):
    """Bias lookup: None → 0; (C_out,) shared; (C_out, *tile) per position modulo ``tile``."""
    if bias is None:
        return lambda position, channel: 0.0
    bias = bias.to(torch.float64)
    if bias.dim() == 1:
        return lambda position, channel: bias[channel]
    return lambda position, channel: bias[(channel, *(p % t for p, t in zip(position, tile)))]


def conv_reference(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Naive N-d convolution (cross-correlation, as torch's ``conv*d``), float64.

    Args:
        input: ``(B, C_in, *in_size)``.
        weight: ``(C_out, C_in/groups, *kernel_size)``.
        bias: ``(C_out,)`` or None. Default: None.
        stride, padding, dilation: int or tuple of ``ndim`` ints (zero padding on both sides).
            Defaults: 1, 0, 1.
        groups: Default: 1.

    Shape:
        Output ``(B, C_out, *out_size)``, ``out = floor((in + 2p − d(k−1) − 1)/s) + 1``.

    Examples:
        >>> x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
        >>> conv_reference(x, w, padding=1).shape
        torch.Size([1, 3, 5, 5])
    """
    out_channels, kernel_size = weight.shape[0], tuple(weight.shape[2:])
    cout_g = out_channels // groups
    return _loop(
        input, kernel_size, out_channels, groups, stride, padding, dilation,
        lambda position, g, o: weight[g * cout_g + o],
        _bias_fn(bias, None),
    )


def local_conv_reference(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Naive N-d locally connected op (a separate filter bank per output position), float64.

    ``out[b, g·(C_out/g) + o, p] = bias + Σ_{c, t} x_pad[b, g·(C_in/g) + c, p·s + t·d] · weight[p, g, c, t, o]``

    Args:
        input: ``(B, C_in, *in_size)``.
        weight: ``(*out_size, groups, C_in/groups, *kernel_size, C_out/groups)`` (Contract 3).
        bias: None, ``(C_out, *out_size)`` (one per channel and location) or ``(C_out,)`` (shared).
            Default: None.
        stride, padding, dilation: int or tuple of ``ndim`` ints. Defaults: 1, 0, 1.
        groups: must equal ``weight.shape[ndim]``. Default: 1.

    Shape:
        Output ``(B, C_out, *out_size)``; ``out_size`` from the conv formula must equal
        ``weight.shape[:ndim]``.

    Examples:
        >>> x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 3, 1, 2, 3, 3, 4)
        >>> local_conv_reference(x, w).shape
        torch.Size([1, 4, 3, 3])
    """
    ndim = (weight.dim() - 3) // 2
    out_size = tuple(weight.shape[:ndim])
    kernel_size = tuple(weight.shape[ndim + 2 : 2 * ndim + 2])
    out_channels = groups * weight.shape[-1]
    return _loop(
        input, kernel_size, out_channels, groups, stride, padding, dilation,
        lambda position, g, o: weight[(*position, g, ..., o)],
        _bias_fn(bias, out_size),
        weight_out_size=out_size,
    )


def tiled_conv_reference(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Naive N-d tiled convolution: output position ``p`` uses ``weight[p mod tile_size]``, float64.

    Args:
        input: ``(B, C_in, *in_size)``.
        weight: ``(*tile_size, groups, C_in/groups, *kernel_size, C_out/groups)``.
        bias: None, ``(C_out, *tile_size)`` (position ``p`` uses ``bias[:, p mod tile_size]``) or
            ``(C_out,)``. Default: None.
        stride, padding, dilation: int or tuple of ``ndim`` ints. Defaults: 1, 0, 1.
        groups: Default: 1.

    Shape:
        Output ``(B, C_out, *out_size)`` with the conv formula's ``out_size``.

    Examples:
        >>> x, w = torch.randn(1, 2, 6, 6), torch.randn(2, 2, 1, 2, 3, 3, 4)
        >>> tiled_conv_reference(x, w).shape
        torch.Size([1, 4, 4, 4])
    """
    ndim = (weight.dim() - 3) // 2
    tile = tuple(weight.shape[:ndim])
    kernel_size = tuple(weight.shape[ndim + 2 : 2 * ndim + 2])
    out_channels = groups * weight.shape[-1]
    return _loop(
        input, kernel_size, out_channels, groups, stride, padding, dilation,
        lambda position, g, o: weight[(*(p % t for p, t in zip(position, tile)), g, ..., o)],
        _bias_fn(bias, tile),
    )


def lowrank_local_conv_reference(
    input: torch.Tensor,
    weight: torch.Tensor,
    combining: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Naive N-d low-rank locally connected op: output position ``p`` uses the filter bank
    ``Σ_r α[p, r]·weight[r]`` and the bias ``Σ_r α[p, r]·bias[r]``, float64.

    The filter of every position, group and channel is summed over the bases in a Python loop.

    Args:
        input: ``(B, C_in, *in_size)``.
        weight: ``(R, C_out, C_in/groups, *kernel_size)`` basis filter banks.
        combining: ``α``, ``(*out_size, R)``.
        bias: None, ``(R, C_out)`` (mixed by ``α``) or ``(C_out,)`` (shared). Default: None.
        stride, padding, dilation: int or tuple of ``ndim`` ints. Defaults: 1, 0, 1.
        groups: Default: 1.

    Shape:
        Output ``(B, C_out, *out_size)``; ``out_size`` from the conv formula must equal
        ``combining.shape[:-1]``.

    Examples:
        >>> x, w = torch.randn(1, 2, 5, 5), torch.randn(2, 4, 2, 3, 3)
        >>> lowrank_local_conv_reference(x, w, torch.rand(3, 3, 2)).shape
        torch.Size([1, 4, 3, 3])
    """
    rank, out_channels = weight.shape[:2]
    kernel_size = tuple(weight.shape[3:])
    cout_g = out_channels // groups
    weight, combining = weight.to(torch.float64), combining.to(torch.float64)

    def filter_at(position, g, o):
        return sum(combining[(*position, r)] * weight[r, g * cout_g + o] for r in range(rank))

    def bias_at(position, channel):
        if bias is None:
            return 0.0
        if bias.dim() == 1:
            return bias[channel].to(torch.float64)
        return sum(combining[(*position, r)] * bias[r, channel].to(torch.float64) for r in range(rank))

    return _loop(
        input, kernel_size, out_channels, groups, stride, padding, dilation, filter_at, bias_at,
        weight_out_size=tuple(combining.shape[:-1]),
    )
