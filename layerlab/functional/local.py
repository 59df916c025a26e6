"""The locally connected ("unshared") convolution.

A locally connected layer computes exactly the multiply-adds of a convolution of the same shape,
but every output position has its own filter bank:

    out[b, g·O_g + o, p] = bias[...] + Σ_c Σ_t  x_pad[b, g·C_g + c, p·stride + t·dilation]
                                                 · weight[p, g, c, t, o]

with ``C_g = C_in / groups``, ``O_g = C_out / groups``, ``p`` an output position and ``t`` a kernel
tap. Output sizes follow the convolution formula
``out = floor((in + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1``.

Three implementations, same results:

- float32/float64 CPU tensors: the C++ kernels of ``csrc/`` (compiled on first use, see
  ``_local_ext``), three kernel sets chosen per op and call by the rule below.
- CUDA tensors, with the environment variable ``LAYERLAB_CUDA_KERNELS=triton`` (and ``triton``
  installed): the Triton kernels of ``_local_triton`` (implicit im2col into ``tl.dot`` per output
  position; the input gradient in gather form). Opt-in: they are verified in the Triton
  interpreter, not compiled or timed on a GPU.
- Everything else (CUDA tensors by default, bfloat16 on CPU, CPU inputs when no compiler is
  available): the pure-torch kernels of ``_local_torch`` (unfold + one strided-batched
  ``torch.bmm``, cuBLAS on CUDA).

None of these stores the k²-inflated patch tensor. Every backward pass saves only ``input`` and
``weight`` and is deterministic (no atomics). Derivatives of any order work (the backward is built
from the same three ops). Timings: ``docs/benchmarks.md``.

Kernel choice on CPU — the one statement of this rule (``choose_kernel`` in ``csrc/local_conv.cpp``
implements it; README, ``docs/`` and the C++ sources refer here). Each op — forward, weight
gradient, input gradient — picks its kernel set per call. Its *lane channels* are a group's output
channels ``C_out / groups`` for the forward and the weight gradient and a group's input channels
``C_in / groups`` for the input gradient; ``V`` is the lanes of an AVX2 vector, 8 float32 or
4 float64. An input that is neither contiguous nor channels_last counts as contiguous (the ops
copy it so).

1. "direct" (channels along the SIMD lanes, one small GEMM per output position over buffered
   input rows, weights read in place): x86-64 with AVX2 and FMA (checked at run time), an input
   that is not channels_last, and at least ``4·V`` lane channels (32 float32, 16 float64: whole
   register tiles).
2. "rows" (output positions along the SIMD lanes, NCHW read and written in place, per-block packed
   weights): where "direct" is not chosen, x86-64 with AVX2 and FMA, an input that is not
   channels_last, stride 1 along the last spatial dimension, and an output width of at least
   ``V / 2`` (4 float32, 2 float64: vectors at least half full).
3. "gemm" (one BLAS GEMM per output position over a per-thread patch buffer): everything else —
   channels_last inputs (its fast case), stride > 1 along the last dimension, narrow outputs, other
   CPUs.

For tests and benchmarks, ``torch.ops.layerlab_local.use_kernel(name)`` sets a preference and
returns the previous one: "direct" (wherever the input is not channels_last, any channel count),
"rows" (never "direct"; wherever stride 1 along the last dimension and the input is not
channels_last, any width), "gemm" (always) or "auto" (the rule above).
``torch.ops.layerlab_local.path(input, weight_size, stride, padding, dilation, groups, op)`` names
the set that ``op`` ("forward", the default; "weight_grad"; "input_grad") of such a call takes, and
``torch.ops.layerlab_local.ran()`` the sets that the three ops ran in their last calls.
"""

from __future__ import annotations

import os
import warnings

import torch

from layerlab.arith import window_output_sizes
from layerlab.arith._args import ntuple, positive_int
from layerlab.errors import ArgumentError, ShapeError
from layerlab.functional import _local_ext, _local_torch

__all__ = ["local_conv"]


def _check(input, weight, bias, stride, padding, dilation, groups):
    """Validate arguments; return ``(ndim, stride, padding, dilation, kernel, out_size)``.

    ``out_size`` is :func:`layerlab.arith.window_output_sizes`'; the weight's leading dims must equal it,
    and every kernel set takes the output size from them (the C++ op checks its own loop bounds
    against them, ``tests/functional/test_local_geometry.py``)."""
    ndim = _check_batched("local_conv", "locally connected op", input)
    stride = ntuple("local_conv", "stride", stride, ndim, minimum=1)
    padding = ntuple("local_conv", "padding", padding, ndim, minimum=0)
    dilation = ntuple("local_conv", "dilation", dilation, ndim, minimum=1)
    groups = positive_int("local_conv", "groups", groups)
    c_in = input.shape[1]
    _check_groups("local_conv", c_in, groups)
    _check_weight_rank("local_conv", weight, ndim, "(*out_size, groups, C_in // groups, *kernel_size, C_out // groups)")
    _check_dtypes(input, weight, bias)
    kernel = tuple(weight.shape[ndim + 2 : 2 * ndim + 2])
    out_size = window_output_sizes("local_conv", input.shape[2:], kernel, stride, padding, dilation)
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


def _check_batched(who: str, op: str, input) -> int:
    """The number of spatial dims of a batched ``(B, C_in, *spatial)`` input (1, 2 or 3)."""
    if not isinstance(input, torch.Tensor) or input.dim() not in (3, 4, 5):
        shape = tuple(input.shape) if isinstance(input, torch.Tensor) else type(input).__name__
        raise ShapeError(
            f"{who}: expected a 3-d, 4-d or 5-d input (B, C_in, *spatial) for a 1-d, 2-d or 3-d {op}. "
            f"Received: input of shape {shape}; add the batch dimension with input.unsqueeze(0) if it "
            "is a single sample"
        )
    return input.dim() - 2


def _check_groups(who: str, c_in: int, groups: int) -> None:
    if c_in % groups:
        raise ArgumentError(
            f"{who}: in_channels must be divisible by groups. Received: in_channels={c_in}, "
            f"groups={groups}; choose groups dividing {c_in}"
        )


def _check_weight_rank(who: str, weight, ndim: int, layout: str) -> None:
    """A location-major weight of ``layout`` has rank ``2·ndim + 3``."""
    expected_rank = 2 * ndim + 3
    if not isinstance(weight, torch.Tensor) or weight.dim() != expected_rank:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ShapeError(
            f"{who}: expected a {expected_rank}-d location-major weight {layout} for a {ndim}-d "
            f"input. Received: weight of shape {shape}"
        )


def _check_dtypes(input, weight, bias, who: str = "local_conv") -> None:
    """Input, weight and bias must share one dtype (no kernel mixes them, and torch's conv neither)."""
    given = [("input", input), ("weight", weight)] + [("bias", bias)] * (bias is not None)
    if any(t.dtype != input.dtype for _, t in given):
        received = ", ".join(f"{name} {t.dtype}" for name, t in given)
        raise ArgumentError(
            f"{who}: input, weight and bias must have the same dtype. Received: {received}. "
            f"Fix: convert the layer to the input's dtype (layer.to({input.dtype})) or the input to "
            f"the layer's (x.to({weight.dtype}))"
        )


def _cpp_available() -> bool:
    """Whether the C++ kernels are built (builds them on first call); a constant for torch.compile."""
    return _local_ext.load()


# torch.compile must call _cpp_available() while tracing and keep the result as a constant: traced
# instead, load() meets a lock and a compiler run, and fullgraph=True fails. That is what
# @torch.compiler.assume_constant_result does, by setting only this mark, but it imports
# torch._dynamo first (~1.5 s on every `import layerlab.nn`). Decorating later cannot replace it:
# the first call may itself be traced, and code run during a trace is simulated, not executed. So
# the mark is set here directly; tests/functional/test_local_conv.py checks that the public
# decorator still sets exactly this mark.
_cpp_available._dynamo_marked_constant = True


_TRITON: dict[str, bool] = {}


def _triton_available() -> bool:
    """Whether ``LAYERLAB_CUDA_KERNELS=triton`` asks for the Triton kernels and ``_local_triton``
    (with ``triton``) imports; the import is tried once, on the first such CUDA call. A constant
    for torch.compile, like ``_cpp_available``. Warns once when they are asked for but triton
    does not import."""
    if os.environ.get("LAYERLAB_CUDA_KERNELS", "").strip().lower() != "triton":
        return False
    if "ok" not in _TRITON:
        try:
            import layerlab.functional._local_triton  # noqa: F401  (imports triton)
        except ImportError as exc:
            _TRITON["ok"] = False
            warnings.warn(
                f"layerlab: LAYERLAB_CUDA_KERNELS=triton, but triton cannot be imported ({exc}); "
                "using the unfold + torch.bmm kernels on CUDA. Install it with "
                "`pip install layerlab[gpu]`, or unset LAYERLAB_CUDA_KERNELS",
                RuntimeWarning,
                stacklevel=4,
            )
        else:
            _TRITON["ok"] = True
    return _TRITON["ok"]


_triton_available._dynamo_marked_constant = True


def _select(device_type: str, dtype: torch.dtype):
    """The kernels for a tensor on ``device_type`` of ``dtype``: C++ for float32/float64 on CPU when
    built; Triton on CUDA when asked for (``LAYERLAB_CUDA_KERNELS=triton``) and importable; else
    pure torch."""
    if device_type == "cpu" and dtype in (torch.float32, torch.float64) and _cpp_available():
        return torch.ops.layerlab_local
    if device_type == "cuda" and _triton_available():
        from layerlab.functional import _local_triton  # here: imports triton, an optional dependency

        return _local_triton
    return _local_torch


def _backend(input: torch.Tensor):
    """The kernels for this input (see ``_select``)."""
    return _select(input.device.type, input.dtype)


class _LocalConvFunction(torch.autograd.Function):
    """Autograd for ``local_conv``: saves only ``input`` and ``weight``; the backward recomputes
    the patches. ``kernels`` is ``torch.ops.layerlab_local`` (C++) or the ``_local_torch`` or
    ``_local_triton`` module.

    The op is bilinear in (input, weight), and so are its two gradients; each gradient is an
    autograd function whose own backward is built from the other two ops, so derivatives of any
    order work (e.g. gradient penalties):

        y  = F(x, W)                dx = A(dy, W) = F_x(W)ᵀ dy      dW = G(dy, x) = F_W(x)ᵀ dy
        A: d/d dy · v = F(v, W),    d/dW · v = G(dy, v)
        G: d/d dy · V = F(x, V),    d/dx · V = A(dy, V)
    """

    @staticmethod
    def forward(ctx, input, weight, bias, stride, padding, dilation, groups, kernels):
        ctx.save_for_backward(input, weight)
        ctx.conf = (stride, padding, dilation, groups, kernels)
        ctx.bias_dim = None if bias is None else bias.dim()
        return kernels.forward(input, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        input, weight = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = _InputGrad.apply(grad, weight, input, *ctx.conf)
        if ctx.needs_input_grad[1]:
            grad_weight = _WeightGrad.apply(grad, input, list(weight.shape), *ctx.conf)
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0) if ctx.bias_dim > 1 else grad.sum([0, *range(2, grad.dim())])
        return grad_input, grad_weight, grad_bias, None, None, None, None, None


class _InputGrad(torch.autograd.Function):
    """``dx = A(dy, W)``; ``input`` only gives the size and memory format of ``dx``."""

    @staticmethod
    def forward(ctx, grad, weight, input, stride, padding, dilation, groups, kernels):
        ctx.save_for_backward(grad, weight)
        ctx.conf = (stride, padding, dilation, groups, kernels)
        return kernels.input_grad(grad, weight, input, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, v):
        grad, weight = ctx.saved_tensors
        d_grad = d_weight = None
        if ctx.needs_input_grad[0]:
            d_grad = _LocalConvFunction.apply(v, weight, None, *ctx.conf)
        if ctx.needs_input_grad[1]:
            d_weight = _WeightGrad.apply(grad, v, list(weight.shape), *ctx.conf)
        return d_grad, d_weight, None, None, None, None, None, None


class _WeightGrad(torch.autograd.Function):
    """``dW = G(dy, x)`` of shape ``weight_size``."""

    @staticmethod
    def forward(ctx, grad, input, weight_size, stride, padding, dilation, groups, kernels):
        ctx.save_for_backward(grad, input)
        ctx.conf = (stride, padding, dilation, groups, kernels)
        return kernels.weight_grad(grad, input, weight_size, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, v):
        grad, input = ctx.saved_tensors
        d_grad = d_input = None
        if ctx.needs_input_grad[0]:
            d_grad = _LocalConvFunction.apply(input, v, None, *ctx.conf)
        if ctx.needs_input_grad[1]:
            d_input = _InputGrad.apply(grad, v, input, *ctx.conf)
        return d_grad, d_input, None, None, None, None, None, None


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
    return _LocalConvFunction.apply(
        input, weight, bias, list(stride), list(padding), list(dilation), groups, _backend(input)
    )
