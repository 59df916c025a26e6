"""Pure-torch kernels of ``local_conv``: the fallback on CPU and the path for CUDA (and bfloat16).

Same three entry points and arguments as the C++ ops (``forward``, ``weight_grad``,
``input_grad``), built from ``Tensor.unfold`` and one strided-batched GEMM (``torch.bmm``, which
is cuBLAS ``gemmStridedBatched`` on CUDA) over location-major weights:

    P (L·G, B, K)  patches, K = C_g·∏kernel (channel-major, then taps)
    out_l = P_l @ W_l            W (L·G, K, O_g)
    dW_l  = P_lᵀ @ dY_l          patches recomputed, not saved
    dP_l  = dY_l @ W_lᵀ          folded back tap by tap (strided adds: deterministic, no atomics)

Unlike the C++ path this materialises the k²-inflated patch tensor ``P``.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from layerlab.functional._local_ext import memory_format

__all__ = ["forward", "weight_grad", "input_grad"]


def _patches(input, kernel, stride, padding, dilation, groups):
    """``(B, C, *in)`` → patches ``(L·G, B, K)``."""
    ndim = len(kernel)
    x = F.pad(input, [p for pad in reversed(padding) for p in (pad, pad)]) if any(padding) else input
    for d in range(ndim):
        x = x.unfold(2 + d, dilation[d] * (kernel[d] - 1) + 1, stride[d])[..., :: dilation[d]]
    batch, channels = input.shape[:2]
    out_size = x.shape[2 : 2 + ndim]
    x = x.reshape(batch, groups, channels // groups, *out_size, *kernel)
    # (B, G, C_g, *out, *k) -> (*out, G, B, C_g, *k)
    x = x.permute(*range(3, 3 + ndim), 1, 0, 2, *range(3 + ndim, 3 + 2 * ndim))
    return x.reshape(math.prod(out_size) * groups, batch, -1)


def _grad_rows(grad, groups):
    """``(B, C_out, *out)`` → ``(L·G, B, O_g)``."""
    batch = grad.shape[0]
    g = grad.reshape(batch, groups, grad.shape[1] // groups, -1)  # (B, G, O_g, L)
    return g.permute(3, 1, 0, 2).reshape(-1, batch, grad.shape[1] // groups)


def forward(input, weight, bias, stride, padding, dilation, groups):
    ndim = input.dim() - 2
    kernel = tuple(weight.shape[ndim + 2 : 2 * ndim + 2])
    out_size = tuple(weight.shape[:ndim])
    batch, o_g = input.shape[0], weight.shape[-1]
    p = _patches(input, kernel, stride, padding, dilation, groups)
    rows = torch.bmm(p, weight.reshape(p.shape[0], p.shape[2], o_g))  # (L·G, B, O_g)
    rows = rows.view(*out_size, groups, batch, o_g).permute(ndim + 1, ndim, ndim + 2, *range(ndim))
    out = torch.empty(
        (batch, groups * o_g, *out_size), dtype=input.dtype, device=input.device,
        memory_format=memory_format(input),
    )
    out.view(batch, groups, o_g, *out_size).copy_(rows)  # (B, G, O_g, *out)
    if bias is not None:
        out += bias if bias.dim() > 1 else bias.view(-1, *([1] * ndim))
    return out


def weight_grad(grad, input, weight_size, stride, padding, dilation, groups):
    ndim = input.dim() - 2
    kernel = tuple(weight_size[ndim + 2 : 2 * ndim + 2])
    p = _patches(input, kernel, stride, padding, dilation, groups)  # (L·G, B, K)
    return torch.bmm(p.transpose(1, 2), _grad_rows(grad, groups)).reshape(weight_size)


def input_grad(grad, weight, input, stride, padding, dilation, groups):
    ndim = input.dim() - 2
    batch, channels = input.shape[:2]
    out_size = tuple(weight.shape[:ndim])
    kernel = tuple(weight.shape[ndim + 2 : 2 * ndim + 2])
    w = weight.reshape(-1, weight.shape[ndim + 1] * math.prod(kernel), weight.shape[-1])
    dp = torch.bmm(_grad_rows(grad, groups), w.transpose(1, 2))  # (L·G, B, K)
    dp = dp.view(*out_size, groups, batch, channels // groups, *kernel)
    # (*out, G, B, C_g, *k) -> (B, G, C_g, *out, *k)
    dp = dp.permute(ndim + 1, ndim, ndim + 2, *range(ndim), *range(ndim + 3, 2 * ndim + 3))
    dp = dp.reshape(batch, channels, *out_size, *kernel)
    padded = [n + 2 * q for n, q in zip(input.shape[2:], padding)]
    dx = input.new_zeros((batch, channels, *padded))
    for tap in itertools.product(*(range(k) for k in kernel)):
        window = tuple(
            slice(t * d, t * d + s * (n - 1) + 1, s) for t, d, s, n in zip(tap, dilation, stride, out_size)
        )
        dx[(slice(None), slice(None)) + window] += dp[(Ellipsis,) + tap]
    crop = tuple(slice(q, q + n) for q, n in zip(padding, input.shape[2:]))
    return dx[(slice(None), slice(None)) + crop].contiguous(memory_format=memory_format(input))
