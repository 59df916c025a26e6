"""Low-rank locally connected op: ``rank`` basis filter banks mixed per output position.

Elsayed et al. 2020 ("Revisiting spatial invariance with low-rank local connectivity"): the
filter bank at output position ``p`` is a weighted sum of ``R`` basis banks, each a conv kernel,

    kernel(p) = Σ_r α[p, r] · weight[r]          bias(p) = Σ_r α[p, r] · bias[r]

so ``out[b, o, p] = Σ_r α[p, r] · conv_r(x)[b, o, p]``: ONE convolution with ``R·C_out`` output
channels (every basis at every position), then a per-position weighted sum over ``r``. The
convolution is torch's (its speed, its autograd, every device); the mix is a product and a sum.

``combining_weights`` turns the trainable combining logits into ``α`` (the one home of the
factorisation and the normalisation); ``lowrank_local_conv`` takes ``α`` as a tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from layerlab.arith._args import choice
from layerlab.arith.specs import LOWRANK_NORMALIZE
from layerlab.errors import ShapeError

__all__ = ["combining_weights", "lowrank_local_conv", "lowrank_local_weight", "lowrank_local_bias"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def combining_weights(logits: torch.Tensor | Sequence[torch.Tensor], normalize: str | None = "softmax") -> torch.Tensor:
    r"""The combining weights ``α`` of every output position, ``(*out_size, R)``.

    Args:
        logits: a ``(*out_size, R)`` tensor ("full": one logit vector per position), or a sequence
            of one ``(out_d, R)`` tensor per spatial dim ("factorized": the logits at position
            ``(i, j)`` are ``rows[i] + cols[j]``, as Elsayed et al.'s code).
        normalize: over ``r`` at each position: ``"softmax"`` (``α ≥ 0``, ``Σ_r α = 1``), ``"l2"``
            (``‖α‖₂ = 1``, ``F.normalize``'s eps 1e-12) or ``None`` (``α`` = the logits).
            Default: ``"softmax"``.

    Examples:
        >>> rows, cols = torch.zeros(3, 2), torch.zeros(4, 2)
        >>> combining_weights([rows, cols])[0, 0]
        tensor([0.5000, 0.5000])
    """
    choice("combining_weights", "normalize", normalize, LOWRANK_NORMALIZE)
    if isinstance(logits, torch.Tensor):
        full = logits
    else:
        ndim = len(logits)
        # dim d of the position grid broadcasts factor d: shape (1, .., out_d, .., 1, R)
        full = sum(f.view([-1 if i == d else 1 for i in range(ndim)] + [f.shape[-1]]) for d, f in enumerate(logits))
    if normalize == "softmax":
        return torch.softmax(full, dim=-1)
    if normalize == "l2":
        return F.normalize(full, dim=-1)
    return full


class _Mix(torch.autograd.Function):
    """``out = Σ_r y[:, :, r]·α[r]`` over dim 2 of ``y (B, G, R, O_g, *out)``, ``α (R, 1, *out)``.

    Autograd's own backward of ``(y * α).sum(2)`` forms ``grad·y`` as a ``(B, G, R, O_g, *out)``
    temporary and reduces it over the broadcast dims; here ``α``'s gradient is one product and
    reduction per basis, ``(B, G, O_g, *out)`` at a time (1.2-1.7× less time for the whole layer
    step where the convolution is cheap, e.g. 3 input channels), and the forward accumulates one
    basis at a time. The backward is made of
    differentiable ops, so higher derivatives work, and ``torch.func`` transforms it (vmap rule
    generated from the forward; functorch has no batching rule for the in-place ``addcmul_``, so
    under ``vmap`` it runs its slower fallback and torch warns once).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(y, alpha):
        # one product-accumulate per basis into the output: 1.5-3.6× faster than (y * alpha).sum(2),
        # which writes and reads back a (B, G, R, O_g, *out) product
        out = y.select(2, 0) * alpha[0]
        for r in range(1, y.shape[2]):
            out.addcmul_(y.select(2, r), alpha[r])
        return out

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        y, alpha = ctx.saved_tensors
        grad_y = grad.unsqueeze(2) * alpha if ctx.needs_input_grad[0] else None
        grad_alpha = None
        if ctx.needs_input_grad[1]:
            grad_alpha = torch.stack([(y.select(2, r) * grad).sum(dim=(0, 1, 2)) for r in range(y.shape[2])])
            grad_alpha = grad_alpha.unsqueeze(1)  # (R, 1, *out)
        return grad_y, grad_alpha


def lowrank_local_conv(
    input: torch.Tensor,
    weight: torch.Tensor,
    combining: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    r"""Low-rank locally connected op over 1-, 2- or 3-d inputs.

    ``out[b, o, p] = Σ_r α[p, r] · (bias[r, o] + Σ_{c, t} x_pad[b, c, p·stride + t·dilation]
    · weight[r, o, c, t])`` (groups=1 shown; with groups, output channel ``o`` reads the input
    channels of its group, as a conv).

    Args:
        input: ``(B, C_in, *in_size)``.
        weight: ``(R, C_out, C_in // groups, *kernel_size)``: ``weight[r]`` is a conv weight.
        combining: ``α``, ``(*out_size, R)`` (see :func:`combining_weights`).
        bias: ``None`` (default), ``(R, C_out)`` (one per basis bank, mixed by ``α`` like the
            kernels) or ``(C_out,)`` (added after the mix).
        stride, padding (zeros, both sides), dilation: int or tuple. Defaults: 1, 0, 1.
        groups: Default: 1.

    Shape:
        Output ``(B, C_out, *out_size)``, ``out = floor((in + 2·padding − dilation·(kernel − 1)
        − 1) / stride) + 1``; it must equal ``combining.shape[:-1]``.

    Examples:
        >>> x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 5, 3, 3, 3)  # R=4, C_out=5
        >>> lowrank_local_conv(x, w, torch.full((6, 6, 4), 0.25)).shape
        torch.Size([2, 5, 6, 6])
    """
    ndim = input.dim() - 2
    if ndim not in _CONV or weight.dim() != ndim + 3 or combining.dim() != ndim + 1 or combining.shape[-1] != weight.shape[0]:
        raise ShapeError(
            "lowrank_local_conv: expected a (B, C_in, *in_size) input with 1-3 spatial dims, a "
            "(R, C_out, C_in // groups, *kernel_size) weight and (*out_size, R) combining weights. "
            f"Received: input of shape {tuple(input.shape)}, weight of shape {tuple(weight.shape)}, "
            f"combining of shape {tuple(combining.shape)}"
        )
    rank, c_out = weight.shape[:2]
    per_group = c_out // groups
    # conv channel q = (g·R + r)·O_g + o: grouped convs need each group's channels together
    conv_weight = weight.unflatten(1, (groups, per_group)).transpose(0, 1).flatten(0, 2)
    conv_bias = None
    if bias is not None and bias.dim() == 2:
        conv_bias = bias.unflatten(1, (groups, per_group)).transpose(0, 1).flatten()
    y = _CONV[ndim](input, conv_weight, conv_bias, stride, padding, dilation, groups)  # (B, G·R·O_g, *out)
    out_size = tuple(y.shape[2:])
    if tuple(combining.shape[:-1]) != out_size:
        raise ShapeError(
            f"lowrank_local_conv: the combining weights are for output size {tuple(combining.shape[:-1])}, "
            f"but the input {tuple(input.shape)} gives {out_size}: build them for this input size"
        )
    # (R, 1, *out), contiguous: the product with a strided view of the (*out, R) layout ran 1.2-1.5× slower
    alpha = combining.movedim(-1, 0).contiguous().unsqueeze(1)
    out = _Mix.apply(y.unflatten(1, (groups, rank, per_group)), alpha).flatten(1, 2)  # (B, C_out, *out)
    if bias is not None and bias.dim() == 1:
        out = out + bias.view(c_out, *(1,) * ndim)
    return out


def lowrank_local_weight(weight: torch.Tensor, combining: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """The filter bank of every position, ``Σ_r α[p, r]·weight[r]``, in the locally connected layout.

    Args:
        weight: ``(R, C_out, C_in // groups, *kernel_size)``.
        combining: ``α``, ``(*out_size, R)``.
        groups: Default: 1.

    Shape:
        ``(*out_size, groups, C_in // groups, *kernel_size, C_out // groups)`` (Contract 3 of
        ``docs/ARCHITECTURE.md``): :func:`layerlab.functional.local_conv` with it and
        :func:`lowrank_local_bias` gives :func:`lowrank_local_conv`'s output.

    Examples:
        >>> lowrank_local_weight(torch.randn(2, 4, 3, 3, 3), torch.rand(5, 6, 2)).shape
        torch.Size([5, 6, 1, 3, 3, 3, 4])
    """
    ndim = combining.dim() - 1
    kernels = torch.tensordot(combining, weight, dims=([-1], [0]))  # (*out, C_out, C_in/g, *k)
    kernels = kernels.unflatten(ndim, (groups, weight.shape[1] // groups))  # (*out, G, O_g, C_in/g, *k)
    return kernels.movedim(ndim + 1, -1)


def lowrank_local_bias(bias: torch.Tensor | None, combining: torch.Tensor) -> torch.Tensor | None:
    """The bias of every position in the locally connected layout.

    ``(R, C_out)`` → ``(C_out, *out_size)``: ``Σ_r α[p, r]·bias[r]``; a ``(C_out,)`` shared bias
    and ``None`` are returned as they are.

    Examples:
        >>> lowrank_local_bias(torch.randn(2, 4), torch.rand(5, 6, 2)).shape
        torch.Size([4, 5, 6])
    """
    if bias is None or bias.dim() == 1:
        return bias
    return torch.tensordot(combining, bias, dims=([-1], [0])).movedim(-1, 0)
