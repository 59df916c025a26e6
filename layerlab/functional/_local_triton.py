"""Triton kernels of ``local_conv`` for CUDA tensors.

Same three entry points and arguments as ``_local_torch`` and the C++ ops (``forward``,
``weight_grad``, ``input_grad``). Every case is run as a 3-d one (1-d and 2-d get leading
singleton dimensions: kernel 1, stride 1, padding 0), over contiguous NCDHW tensors and
location-major weights viewed as ``W (L, G, K, O_g)`` with ``K = C_g·∏kernel`` (channel-major,
then taps). No program ever stores the k²-inflated patch tensor: patches are gathered from ``x``
by index arithmetic (implicit im2col, masked loads give the zero padding) straight into registers.

    forward      program (p, batch block, group × out-channel block): Y[b, o, p] = P_p[b, :] @ W_p[:, o]
                 in BLOCK_K chunks of K with ``tl.dot``, bias added before the one store
    weight_grad  program (p, group × K block, out-channel block): dW_p = P_pᵀ @ dY_p, the batch
                 reduced by a loop inside the program: every element of dW is written once
    input_grad   program (input position i, batch block, group × in-channel block): the gather
                 form dX[b, c, i] = Σ_t dY[b, :, p(i, t)] @ W[p(i, t), c, t, :]ᵀ over the taps t
                 whose output position p(i, t) exists (p·stride + t·dilation − padding = i);
                 every element of dX is written once

No atomics anywhere, so all three are deterministic. Accumulation is float32 for
float16/bfloat16/float32 inputs (float64 for float64), stored in the input's dtype; float32
``tl.dot`` runs in full precision ("ieee") unless ``torch.backends.cuda.matmul.allow_tf32`` is set.
Outputs follow ``_local_ext.memory_format(input)`` (channels_last in, channels_last out).

The kernels also run on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1`` set
before this module is imported); that is how the tests check them on machines without a GPU.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from layerlab.errors import ArgumentError
from layerlab.functional._local_ext import memory_format

__all__ = ["forward", "weight_grad", "input_grad"]


# ---- kernels ---------------------------------------------------------------------------------


@triton.jit
def _forward_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    B, C_in, G, C_g, O_g,
    ID, IH, IW, OD, OH, OW, KD, KH, KW,
    SD, SH, SW, PD, PH, PW, DD, DH, DW,
    HAS_BIAS: tl.constexpr, BIAS_PER_LOCATION: tl.constexpr, IS_FP64: tl.constexpr, DOT_FP32: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_O: tl.constexpr,
):
    pid_p = tl.program_id(0)
    pid_b = tl.program_id(1)
    pid_go = tl.program_id(2)
    n_ob = (O_g + BLOCK_O - 1) // BLOCK_O
    g = pid_go // n_ob
    ob = pid_go % n_ob
    ow = pid_p % OW
    oh = (pid_p // OW) % OH
    od = pid_p // (OW * OH)
    L = OD * OH * OW
    KV = KD * KH * KW
    K = C_g * KV
    IN = ID * IH * IW

    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_o = ob * BLOCK_O + tl.arange(0, BLOCK_O)
    mask_b = offs_b < B
    mask_o = offs_o < O_g
    x_rows = offs_b.to(tl.int64) * C_in * IN + (g * C_g).to(tl.int64) * IN
    w_base = (pid_p.to(tl.int64) * G + g) * K * O_g
    if IS_FP64:
        acc = tl.zeros((BLOCK_B, BLOCK_O), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_B, BLOCK_O), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        c = offs_k // KV
        t = offs_k % KV
        iw = ow * SW + (t % KW) * DW - PW
        ih = oh * SH + ((t // KW) % KH) * DH - PH
        id_ = od * SD + (t // (KW * KH)) * DD - PD
        ok = (offs_k < K) & (id_ >= 0) & (id_ < ID) & (ih >= 0) & (ih < IH) & (iw >= 0) & (iw < IW)
        x_cols = c.to(tl.int64) * IN + (id_ * IH + ih).to(tl.int64) * IW + iw
        a = tl.load(x_ptr + x_rows[:, None] + x_cols[None, :], mask=mask_b[:, None] & ok[None, :], other=0.0)
        w = tl.load(
            w_ptr + w_base + offs_k.to(tl.int64)[:, None] * O_g + offs_o[None, :],
            mask=(offs_k < K)[:, None] & mask_o[None, :], other=0.0,
        )
        if DOT_FP32:
            a = a.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(a, w, acc, input_precision=PRECISION)

    co = (g * O_g + offs_o).to(tl.int64)
    if HAS_BIAS:
        if BIAS_PER_LOCATION:
            bias = tl.load(b_ptr + co * L + pid_p, mask=mask_o, other=0.0)
        else:
            bias = tl.load(b_ptr + co, mask=mask_o, other=0.0)
        acc += bias.to(acc.dtype)[None, :]
    y_offs = offs_b.to(tl.int64)[:, None] * G * O_g * L + co[None, :] * L + pid_p
    tl.store(y_ptr + y_offs, acc.to(y_ptr.dtype.element_ty), mask=mask_b[:, None] & mask_o[None, :])


@triton.jit
def _weight_grad_kernel(
    dy_ptr, x_ptr, dw_ptr,
    B, C_in, G, C_g, O_g,
    ID, IH, IW, OD, OH, OW, KD, KH, KW,
    SD, SH, SW, PD, PH, PW, DD, DH, DW,
    IS_FP64: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_O: tl.constexpr,
):
    pid_p = tl.program_id(0)
    pid_gk = tl.program_id(1)
    pid_o = tl.program_id(2)
    KV = KD * KH * KW
    K = C_g * KV
    n_kb = (K + BLOCK_K - 1) // BLOCK_K
    g = pid_gk // n_kb
    kb = pid_gk % n_kb
    ow = pid_p % OW
    oh = (pid_p // OW) % OH
    od = pid_p // (OW * OH)
    L = OD * OH * OW
    IN = ID * IH * IW

    offs_k = kb * BLOCK_K + tl.arange(0, BLOCK_K)
    offs_o = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
    mask_k = offs_k < K
    mask_o = offs_o < O_g
    c = offs_k // KV
    t = offs_k % KV
    iw = ow * SW + (t % KW) * DW - PW
    ih = oh * SH + ((t // KW) % KH) * DH - PH
    id_ = od * SD + (t // (KW * KH)) * DD - PD
    ok = mask_k & (id_ >= 0) & (id_ < ID) & (ih >= 0) & (ih < IH) & (iw >= 0) & (iw < IW)
    x_cols = (g * C_g + c).to(tl.int64) * IN + (id_ * IH + ih).to(tl.int64) * IW + iw
    co = (g * O_g + offs_o).to(tl.int64)
    if IS_FP64:
        acc = tl.zeros((BLOCK_K, BLOCK_O), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_K, BLOCK_O), dtype=tl.float32)
    for b0 in range(0, B, BLOCK_B):
        offs_b = b0 + tl.arange(0, BLOCK_B)
        mask_b = offs_b < B
        pt = tl.load(
            x_ptr + x_cols[:, None] + offs_b.to(tl.int64)[None, :] * C_in * IN,
            mask=ok[:, None] & mask_b[None, :], other=0.0,
        )  # (BLOCK_K, BLOCK_B): the patches of position p, transposed
        dy = tl.load(
            dy_ptr + offs_b.to(tl.int64)[:, None] * G * O_g * L + co[None, :] * L + pid_p,
            mask=mask_b[:, None] & mask_o[None, :], other=0.0,
        )  # (BLOCK_B, BLOCK_O)
        if DOT_FP32:
            pt = pt.to(tl.float32)
            dy = dy.to(tl.float32)
        acc = tl.dot(pt, dy, acc, input_precision=PRECISION)
    dw_offs = ((pid_p.to(tl.int64) * G + g) * K + offs_k)[:, None] * O_g + offs_o[None, :]
    tl.store(dw_ptr + dw_offs, acc.to(dw_ptr.dtype.element_ty), mask=mask_k[:, None] & mask_o[None, :])


@triton.jit
def _input_grad_kernel(
    dy_ptr, w_ptr, dx_ptr,
    B, C_in, G, C_g, O_g,
    ID, IH, IW, OD, OH, OW, KD, KH, KW,
    SD, SH, SW, PD, PH, PW, DD, DH, DW,
    IS_FP64: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_O: tl.constexpr,
):
    pid_i = tl.program_id(0)
    pid_b = tl.program_id(1)
    pid_gc = tl.program_id(2)
    n_cb = (C_g + BLOCK_C - 1) // BLOCK_C
    g = pid_gc // n_cb
    cb = pid_gc % n_cb
    iw = pid_i % IW
    ih = (pid_i // IW) % IH
    id_ = pid_i // (IW * IH)
    L = OD * OH * OW
    KV = KD * KH * KW
    K = C_g * KV
    IN = ID * IH * IW

    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_b = offs_b < B
    mask_c = offs_c < C_g
    ar_o = tl.arange(0, BLOCK_O)
    dy_rows = offs_b.to(tl.int64)[:, None] * G * O_g * L
    w_cols = offs_c.to(tl.int64)[None, :] * KV * O_g
    mask_bc = mask_b[:, None] & mask_c[None, :]
    if IS_FP64:
        acc = tl.zeros((BLOCK_B, BLOCK_C), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_B, BLOCK_C), dtype=tl.float32)
    # taps t = (kd, kh, kw) whose output position p exists: p·stride + t·dilation − padding == i
    # along every dimension (the numerator is >= 0, divisible by the stride, the quotient < out)
    for kd in range(0, KD):
        nd = id_ + PD - kd * DD
        pd = tl.where(nd >= 0, nd, 0) // SD
        if (nd >= 0) & (pd * SD == nd) & (pd < OD):
            for kh in range(0, KH):
                nh = ih + PH - kh * DH
                ph = tl.where(nh >= 0, nh, 0) // SH
                if (nh >= 0) & (ph * SH == nh) & (ph < OH):
                    for kw in range(0, KW):
                        nw = iw + PW - kw * DW
                        pw = tl.where(nw >= 0, nw, 0) // SW
                        if (nw >= 0) & (pw * SW == nw) & (pw < OW):
                            p = ((pd * OH + ph) * OW + pw).to(tl.int64)
                            t = (kd * KH + kh) * KW + kw
                            # W[p, g, c, t, :] of the channel block, read as (BLOCK_O, BLOCK_C)
                            w_at = w_ptr + ((p * G + g) * K + t) * O_g + w_cols
                            dy_at = dy_ptr + dy_rows + p
                            for o0 in range(0, O_g, BLOCK_O):
                                offs_o = o0 + ar_o
                                mask_o = offs_o < O_g
                                dy = tl.load(
                                    dy_at + (g * O_g + offs_o).to(tl.int64)[None, :] * L,
                                    mask=mask_b[:, None] & mask_o[None, :], other=0.0,
                                )  # (BLOCK_B, BLOCK_O)
                                wt = tl.load(w_at + offs_o[:, None], mask=mask_o[:, None] & mask_c[None, :], other=0.0)
                                if DOT_FP32:
                                    dy = dy.to(tl.float32)
                                    wt = wt.to(tl.float32)
                                acc = tl.dot(dy, wt, acc, input_precision=PRECISION)
    dx_offs = offs_b.to(tl.int64)[:, None] * C_in * IN + (g * C_g + offs_c).to(tl.int64)[None, :] * IN + pid_i
    tl.store(dx_ptr + dx_offs, acc.to(dx_ptr.dtype.element_ty), mask=mask_bc)


# ---- launchers -------------------------------------------------------------------------------

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _block(n: int, most: int) -> int:
    """A power-of-two block for an extent ``n``: at least 16 (``tl.dot``'s minimum), at most ``most``."""
    return max(16, min(most, triton.next_power_of_2(max(n, 1))))


def _precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision: TF32 only for float32 and only when torch allows it for matmuls."""
    return "tf32" if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 else "ieee"


def _dot_fp32(t: torch.Tensor) -> bool:
    """Whether ``tl.dot`` gets its operands cast to float32: only for bfloat16 on CPU tensors, i.e.
    under the Triton interpreter, whose ``tl.dot`` multiplies the raw bits of bfloat16 operands as
    integers (triton 3.8). Products of bfloat16 values are exact in float32, so this computes what
    the GPU's bfloat16 ``tl.dot`` with a float32 accumulator computes (up to summation order)."""
    return t.dtype == torch.bfloat16 and not t.is_cuda


def _geometry(input_shape, weight_shape, stride, padding, dilation):
    """``(B, C_in, G, C_g, O_g)`` and the 27 sizes of the 3-d problem (in, out, kernel, stride,
    padding, dilation; 1-d and 2-d cases padded with leading singleton dimensions)."""
    ndim = len(input_shape) - 2
    lead = 3 - ndim
    in_size = (1,) * lead + tuple(input_shape[2:])
    out_size = (1,) * lead + tuple(weight_shape[:ndim])
    kernel = (1,) * lead + tuple(weight_shape[ndim + 2 : 2 * ndim + 2])
    conf = ((1,) * lead + tuple(stride), (0,) * lead + tuple(padding), (1,) * lead + tuple(dilation))
    sizes = (*in_size, *out_size, *kernel, *(v for c in conf for v in c))
    groups, c_g, o_g = weight_shape[ndim], weight_shape[ndim + 1], weight_shape[-1]
    return (input_shape[0], input_shape[1], groups, c_g, o_g), sizes


def _check_dtypes(name: str, *tensors: torch.Tensor) -> torch.dtype:
    dtype = tensors[0].dtype
    if dtype not in _DTYPES or any(t.dtype != dtype for t in tensors):
        raise ArgumentError(
            f"local_conv (Triton kernels, {name}): expected tensors of one dtype among float16, bfloat16, "
            f"float32 and float64. Received: {', '.join(str(t.dtype) for t in tensors)}; convert them "
            "with .to(dtype) first"
        )
    return dtype


def _on_device(t: torch.Tensor):
    """Launch on ``t``'s GPU (Triton launches on the current device); nothing for CPU tensors (interpreter)."""
    return torch.cuda.device(t.device) if t.is_cuda else _NoDevice()


class _NoDevice:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def forward(input, weight, bias, stride, padding, dilation, groups):
    tensors = (input, weight) if bias is None else (input, weight, bias)
    dtype = _check_dtypes("forward", *tensors)
    ndim = input.dim() - 2
    fmt = memory_format(input)
    (batch, c_in, g, c_g, o_g), sizes = _geometry(input.shape, weight.shape, stride, padding, dilation)
    out_size = tuple(weight.shape[:ndim])
    out = torch.empty((batch, g * o_g, *out_size), dtype=dtype, device=input.device)
    if out.numel() == 0:
        return out.contiguous(memory_format=fmt)
    x, w = input.contiguous(), weight.contiguous()
    b = None if bias is None else bias.contiguous()
    k = c_g * math.prod(weight.shape[ndim + 2 : 2 * ndim + 2])
    block_b, block_k, block_o = _block(batch, 64), _block(k, 32), _block(o_g, 64)
    grid = (math.prod(out_size), triton.cdiv(batch, block_b), g * triton.cdiv(o_g, block_o))
    with _on_device(x):
        _forward_kernel[grid](
            x, w, out if b is None else b, out,
            batch, c_in, g, c_g, o_g, *sizes,
            HAS_BIAS=b is not None, BIAS_PER_LOCATION=b is not None and b.dim() > 1,
            IS_FP64=dtype == torch.float64, DOT_FP32=_dot_fp32(x), PRECISION=_precision(dtype),
            BLOCK_B=block_b, BLOCK_K=block_k, BLOCK_O=block_o, num_warps=4,
        )
    return out.contiguous(memory_format=fmt)


def weight_grad(grad, input, weight_size, stride, padding, dilation, groups):
    dtype = _check_dtypes("weight_grad", grad, input)
    ndim = input.dim() - 2
    weight_size = list(weight_size)
    (batch, c_in, g, c_g, o_g), sizes = _geometry(input.shape, weight_size, stride, padding, dilation)
    dw = torch.empty(weight_size, dtype=dtype, device=input.device)
    if dw.numel() == 0:
        return dw
    x, dy = input.contiguous(), grad.contiguous()
    k = c_g * math.prod(weight_size[ndim + 2 : 2 * ndim + 2])
    block_b, block_k, block_o = _block(batch, 32), _block(k, 64), _block(o_g, 64)
    grid = (math.prod(weight_size[:ndim]), g * triton.cdiv(k, block_k), triton.cdiv(o_g, block_o))
    with _on_device(x):
        _weight_grad_kernel[grid](
            dy, x, dw,
            batch, c_in, g, c_g, o_g, *sizes,
            IS_FP64=dtype == torch.float64, DOT_FP32=_dot_fp32(x), PRECISION=_precision(dtype),
            BLOCK_B=block_b, BLOCK_K=block_k, BLOCK_O=block_o, num_warps=4,
        )
    return dw


def input_grad(grad, weight, input, stride, padding, dilation, groups):
    dtype = _check_dtypes("input_grad", grad, weight)
    fmt = memory_format(input)
    (batch, c_in, g, c_g, o_g), sizes = _geometry(input.shape, weight.shape, stride, padding, dilation)
    dx = torch.empty(tuple(input.shape), dtype=dtype, device=input.device)
    if dx.numel() == 0:
        return dx.contiguous(memory_format=fmt)
    dy, w = grad.contiguous(), weight.contiguous()
    block_b, block_c, block_o = _block(batch, 64), _block(c_g, 64), _block(o_g, 32)
    grid = (math.prod(input.shape[2:]), triton.cdiv(batch, block_b), g * triton.cdiv(c_g, block_c))
    with _on_device(dy):
        _input_grad_kernel[grid](
            dy, w, dx,
            batch, c_in, g, c_g, o_g, *sizes,
            IS_FP64=dtype == torch.float64, DOT_FP32=_dot_fp32(dy), PRECISION=_precision(dtype),
            BLOCK_B=block_b, BLOCK_C=block_c, BLOCK_O=block_o, num_warps=4,
        )
    return dx.contiguous(memory_format=fmt)
