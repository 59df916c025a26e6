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
    local transpose  ``(*in_size, groups, C_out/groups, *kernel_size, C_in/groups)``: input
           position ``i`` scatters through ``weight[i]`` (output size from
           :func:`layerlab.arith.transposed_output_size`).
    low-rank ``(R, C_out, C_in/groups, *kernel_size)`` basis banks and combining weights
           ``α (*out_size, R)``: output position ``p`` uses ``Σ_r α[p, r]·weight[r]``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from layerlab.arith import effective_kernel, output_sizes, transposed_output_size
from layerlab.arith._args import ntuple
from layerlab.errors import ArgumentError, ShapeError

__all__ = ["conv_reference", "local_conv_reference", "tiled_conv_reference", "local_conv_transpose_reference",
           "lowrank_local_conv_reference"]

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


def local_conv_transpose_reference(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Naive N-d transposed locally connected op (a separate filter bank per input position), float64.

    Scatter form, looping over input positions: every input position ``i`` adds
    ``x[b, g·(C_in/g) + c, i] · weight[i, g, o, t, c]`` to output ``g·(C_out/g) + o`` at
    ``i·s − p + t·d`` (positions outside ``[0, out)`` are dropped).

    Args:
        input: ``(B, C_in, *in_size)``.
        weight: ``(*in_size, groups, C_out/groups, *kernel_size, C_in/groups)``.
        bias: None, ``(C_out, *out_size)`` or ``(C_out,)``. Default: None.
        stride, padding, output_padding, dilation: int or tuple of ``ndim`` ints. Defaults: 1, 0, 0, 1.
        groups: must equal ``weight.shape[ndim]``. Default: 1.

    Shape:
        Output ``(B, C_out, *out_size)``, ``out = (in−1)·s − 2p + d·(k−1) + output_padding + 1``
        (:func:`layerlab.arith.transposed_output_size`).

    Examples:
        >>> x, w = torch.randn(1, 4, 3, 3), torch.randn(3, 3, 1, 2, 3, 3, 4)
        >>> local_conv_transpose_reference(x, w, stride=2).shape
        torch.Size([1, 2, 7, 7])
    """
    ndim = input.dim() - 2
    in_size = tuple(input.shape[2:])
    if tuple(weight.shape[:ndim]) != in_size:
        raise ShapeError(f"local_conv_transpose_reference: the weight is for input size "
                         f"{tuple(weight.shape[:ndim])}, the input is {in_size}")
    stride = ntuple("reference op", "stride", stride, ndim, minimum=1)
    padding = ntuple("reference op", "padding", padding, ndim, minimum=0)
    output_padding = ntuple("reference op", "output_padding", output_padding, ndim, minimum=0)
    dilation = ntuple("reference op", "dilation", dilation, ndim, minimum=1)
    kernel_size = tuple(weight.shape[ndim + 2 : 2 * ndim + 2])
    out_size = tuple(
        transposed_output_size(n, k, s, p, op, d)
        for n, k, s, p, op, d in zip(in_size, kernel_size, stride, padding, output_padding, dilation)
    )
    x = input.to(torch.float64)
    w = weight.to(torch.float64)
    batch, in_channels = x.shape[:2]
    cout_g, cin_g = weight.shape[ndim + 1], in_channels // groups
    out = x.new_zeros((batch, groups * cout_g, *out_size))
    for position in itertools.product(*(range(n) for n in in_size)):
        for g in range(groups):
            value = x[(slice(None), slice(g * cin_g, (g + 1) * cin_g), *position)]  # (B, C_in/g)
            for tap in itertools.product(*(range(k) for k in kernel_size)):
                target = tuple(i * s - p + t * d for i, s, p, t, d in zip(position, stride, padding, tap, dilation))
                if not all(0 <= j < n for j, n in zip(target, out_size)):
                    continue
                bank = w[(*position, g, slice(None), *tap)]  # (C_out/g, C_in/g)
                contribution = (value[:, None, :] * bank[None, :, :]).sum(dim=2)  # (B, C_out/g)
                out[(slice(None), slice(g * cout_g, (g + 1) * cout_g), *target)] += contribution
    if bias is not None:
        b = bias.to(torch.float64)
        out = out + (b if b.dim() > 1 else b.view(-1, *([1] * ndim)))
    return out


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
