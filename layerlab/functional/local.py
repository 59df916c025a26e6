"""The locally connected ("unshared") convolution.

A locally connected layer computes exactly the multiply-adds of a convolution of the same shape,
but every output position has its own filter bank:

    out[b, g·O_g + o, p] = bias[...] + Σ_c Σ_t  x_pad[b, g·C_g + c, p·stride + t·dilation]
                                                 · weight[p, g, c, t, o]

with ``C_g = C_in / groups``, ``O_g = C_out / groups``, ``p`` an output position and ``t`` a kernel
tap. Output sizes follow the convolution formula
``out = floor((in + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from layerlab.errors import ArgumentError, ShapeError

__all__ = ["local_conv"]


def _tuple(value, ndim: int, name: str) -> tuple[int, ...]:
    """Broadcast an ``int`` to ``ndim`` entries or check a tuple's length."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * ndim
    if isinstance(value, (tuple, list)) and len(value) == ndim and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return tuple(value)
    raise ArgumentError(
        f"local_conv: {name} must be an int or a tuple of {ndim} ints for a {ndim}-d input. "
        f"Received: {name}={value!r}"
    )


def _check(input, weight, bias, stride, padding, dilation, groups):
    """Validate arguments; return ``(ndim, stride, padding, dilation, kernel, out_size)``."""
    if not isinstance(input, torch.Tensor) or input.dim() not in (3, 4, 5):
        shape = tuple(input.shape) if isinstance(input, torch.Tensor) else type(input).__name__
        raise ShapeError(
            "local_conv: expected a 3-d, 4-d or 5-d input (B, C_in, *spatial) for a 1-d, 2-d or "
            f"3-d locally connected op. Received: input of shape {shape}; add the batch dimension "
            "with input.unsqueeze(0) if it is a single sample"
        )
    ndim = input.dim() - 2
    stride = _tuple(stride, ndim, "stride")
    padding = _tuple(padding, ndim, "padding")
    dilation = _tuple(dilation, ndim, "dilation")
    if any(s < 1 for s in stride) or any(d < 1 for d in dilation) or any(p < 0 for p in padding):
        raise ArgumentError(
            "local_conv: stride and dilation must be >= 1 and padding >= 0. Received: "
            f"stride={stride}, padding={padding}, dilation={dilation}"
        )
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ArgumentError(f"local_conv: groups must be a positive integer. Received: groups={groups!r}")
    c_in = input.shape[1]
    if c_in % groups:
        raise ArgumentError(
            f"local_conv: in_channels must be divisible by groups. Received: in_channels={c_in}, "
            f"groups={groups}; choose groups dividing {c_in}"
        )
    expected_rank = 2 * ndim + 3
    if not isinstance(weight, torch.Tensor) or weight.dim() != expected_rank:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ShapeError(
            f"local_conv: expected a {expected_rank}-d location-major weight "
            f"(*out_size, groups, C_in // groups, *kernel_size, C_out // groups) for a {ndim}-d "
            f"input. Received: weight of shape {shape}"
        )
    kernel = tuple(weight.shape[ndim + 2 : 2 * ndim + 2])
    out_size = tuple(
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, p, d, k, s in zip(input.shape[2:], padding, dilation, kernel, stride)
    )
    if any(o < 1 for o in out_size):
        raise ShapeError(
            f"local_conv: the input's spatial size {tuple(input.shape[2:])} is too small for "
            f"kernel_size={kernel}, padding={padding}, dilation={dilation}: output size would be "
            f"{out_size}; use a larger input or more padding"
        )
    if tuple(weight.shape[:ndim]) != out_size or weight.shape[ndim] != groups or weight.shape[
        ndim + 1
    ] != c_in // groups:
        raise ShapeError(
            f"local_conv: weight of shape {tuple(weight.shape)} does not fit an input of shape "
            f"{tuple(input.shape)} with stride={stride}, padding={padding}, dilation={dilation}, "
            f"groups={groups}: expected weight shape (*out_size, groups, C_in // groups, "
            f"*kernel_size, C_out // groups) = {out_size + (groups, c_in // groups) + kernel} + "
            "(C_out // groups,); the input size differs from the one the weight was built for"
        )
    c_out = groups * weight.shape[-1]
    if bias is not None and tuple(bias.shape) not in ((c_out,), (c_out,) + out_size):
        raise ShapeError(
            f"local_conv: bias must have shape ({c_out},) ['shared'] or {(c_out,) + out_size} "
            f"['location']. Received: bias of shape {tuple(bias.shape)}"
        )
    return ndim, stride, padding, dilation, kernel, out_size


def _patches(x, kernel, stride, dilation):
    """All windows of a padded input: ``(B, C, *spatial)`` → ``(B, C, *out_size, *kernel)``."""
    ndim = len(kernel)
    for d in range(ndim):
        span = dilation[d] * (kernel[d] - 1) + 1
        x = x.unfold(2 + d, span, stride[d])  # appends a window dim of length span
        if dilation[d] > 1:
            x = x[..., :: dilation[d]]
    return x


def local_conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    r"""Locally connected (unshared) convolution over 1-, 2- or 3-d inputs.

    ``out[b, g·O_g + o, p] = Σ_{c, t} x_pad[b, g·C_g + c, p·stride + t·dilation] · weight[p, g, c, t, o]
    (+ bias)``, with ``C_g = C_in/groups`` and ``O_g = C_out/groups``.

    Args:
        input: ``(B, C_in, *in_size)``.
        weight: location-major ``(*out_size, groups, C_in // groups, *kernel_size, C_out // groups)``.
        bias: ``None`` (default), ``(C_out, *out_size)`` (one per channel and location) or
            ``(C_out,)`` (shared per channel).
        stride: int or tuple. Default: 1.
        padding: zero padding on both sides, int or tuple. Default: 0.
        dilation: spacing between kernel taps, int or tuple. Default: 1.
        groups: blocked connections from input to output channels. Default: 1.

    Shape:
        - Input: ``(B, C_in, *in_size)``
        - Output: ``(B, C_out, *out_size)`` with
          ``out = floor((in + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1``

    Examples:
        >>> x = torch.randn(2, 3, 8, 8)
        >>> w = torch.randn(6, 6, 1, 3, 3, 3, 4)  # (H_out, W_out, groups, C_in, kh, kw, C_out)
        >>> local_conv(x, w).shape
        torch.Size([2, 4, 6, 6])
    """
    ndim, stride, padding, dilation, kernel, out_size = _check(
        input, weight, bias, stride, padding, dilation, groups
    )
    batch, c_in = input.shape[:2]
    c_g = c_in // groups
    o_g = weight.shape[-1]
    n_loc = math.prod(out_size)
    k = c_g * math.prod(kernel)
    x = F.pad(input, [p for pad in reversed(padding) for p in (pad, pad)]) if any(padding) else input
    patches = _patches(x, kernel, stride, dilation)  # (B, C_in, *out, *k)
    patches = patches.reshape(batch, groups, c_g, *out_size, *kernel)
    # (B, g, C_g, *out, *k) -> (*out, g, B, C_g, *k)
    spatial = list(range(3, 3 + ndim))
    taps = list(range(3 + ndim, 3 + 2 * ndim))
    patches = patches.permute(*spatial, 1, 0, 2, *taps).reshape(n_loc * groups, batch, k)
    w = weight.reshape(n_loc * groups, k, o_g)
    out = torch.bmm(patches, w)  # (L·g, B, O_g)
    out = out.reshape(*out_size, groups, batch, o_g)
    # (*out, g, B, O_g) -> (B, g, O_g, *out)
    out = out.permute(ndim + 1, ndim, ndim + 2, *range(ndim)).reshape(batch, groups * o_g, *out_size)
    if bias is not None:
        out = out + (bias if bias.dim() > 1 else bias.view(-1, *([1] * ndim)))
    return out
