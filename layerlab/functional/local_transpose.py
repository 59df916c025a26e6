"""The transposed locally connected op: the adjoint of ``local_conv``, as ``conv_transpose`` is of ``conv``.

Every *input* position ``i`` has its own filter bank, which scatters into the output:

    out[b, g·O_g + o, i·stride − padding + t·dilation] += x[b, g·C_g + c, i] · weight[i, g, o, t, c]

summed over ``i``, ``c`` and the kernel taps ``t``, with ``C_g = C_in / groups`` and ``O_g = C_out /
groups``. Output sizes follow the transposed convolution formula
``out = (in − 1)·stride − 2·padding + dilation·(kernel − 1) + output_padding + 1``
(:func:`layerlab.arith.transposed_output_size`).

The weight ``(*in_size, groups, C_out // groups, *kernel_size, C_in // groups)`` is, unchanged, the
weight of the locally connected layer ``local_conv`` from ``C_out`` channels on the output grid to
``C_in`` channels on the input grid (same kernel, stride, padding, dilation and groups): this op is
that layer's input gradient, and its dense-equivalent matrix is that layer's, transposed. So it
runs on the kernels of ``local_conv`` (C++, pure torch, Triton; chosen as in
``layerlab/functional/local.py``) without kernels of its own:

    forward          = local_conv's input gradient    A(x, W)
    input gradient   = local_conv's forward           F(dy, W)
    weight gradient  = local_conv's weight gradient   G(x, dy)   (roles of grad and input swapped)

built from the same three autograd functions as ``local_conv``, so derivatives of any order work.

Where ``output_padding ≥ stride`` along a dimension (torch allows it when ``dilation > stride``),
the local layer over the output grid would have more positions than the input grid; along such a
dimension the op runs unpadded on the full output ``(in − 1)·stride + dilation·(kernel − 1) + 1``
and crops ``padding`` on the left, and on the right ``padding − output_padding`` (a negative crop
appends zeros).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from layerlab.arith import transposed_output_size
from layerlab.arith._args import ntuple, positive_int
from layerlab.arith.specs import check_output_padding
from layerlab.errors import ShapeError
from layerlab.functional._local_ext import memory_format
from layerlab.functional.local import (
    _backend,
    _check_batched,
    _check_dtypes,
    _check_groups,
    _check_weight_rank,
    _InputGrad,
)

__all__ = ["local_conv_transpose"]

WHO = "local_conv_transpose"


def _check(input, weight, bias, stride, padding, output_padding, dilation, groups):
    """Validate arguments; return ``(stride, padding, output_padding, dilation, out_size)``."""
    ndim = _check_batched(WHO, "transposed locally connected op", input)
    stride = ntuple(WHO, "stride", stride, ndim, minimum=1)
    padding = ntuple(WHO, "padding", padding, ndim, minimum=0)
    output_padding = ntuple(WHO, "output_padding", output_padding, ndim, minimum=0)
    dilation = ntuple(WHO, "dilation", dilation, ndim, minimum=1)
    groups = positive_int(WHO, "groups", groups)
    check_output_padding(WHO, output_padding, stride, dilation)
    c_in = input.shape[1]
    _check_groups(WHO, c_in, groups)
    _check_weight_rank(WHO, weight, ndim, "(*in_size, groups, C_out // groups, *kernel_size, C_in // groups)")
    _check_dtypes(input, weight, bias, WHO)
    in_size = tuple(input.shape[2:])
    kernel = tuple(weight.shape[ndim + 2 : 2 * ndim + 2])
    if tuple(weight.shape[:ndim]) != in_size or weight.shape[ndim] != groups or weight.shape[-1] != c_in // groups:
        raise ShapeError(
            f"{WHO}: weight of shape {tuple(weight.shape)} does not fit an input of shape "
            f"{tuple(input.shape)} with groups={groups}: expected weight shape (*in_size, groups, "
            f"C_out // groups, *kernel_size, C_in // groups) = {in_size + (groups,)} + (C_out // groups,) "
            f"+ {kernel + (c_in // groups,)}; the input size differs from the one the weight was built for"
        )
    out_size = tuple(
        transposed_output_size(n, k, s, p, op, d)
        for n, k, s, p, op, d in zip(in_size, kernel, stride, padding, output_padding, dilation)
    )
    if min(out_size) < 1:
        raise ShapeError(
            f"{WHO}: the output size {out_size} of an input of shape {tuple(input.shape)} is empty: "
            f"padding={padding} crops more than the full output (in − 1)·stride + dilation·(kernel − 1) "
            f"+ 1 + output_padding. Fix: less padding or a larger input"
        )
    c_out = groups * weight.shape[ndim + 1]
    if bias is not None and tuple(bias.shape) not in ((c_out,), (c_out,) + out_size):
        raise ShapeError(
            f"{WHO}: bias must have shape ({c_out},) ['shared'] or {(c_out,) + out_size} "
            f"['location']. Received: bias of shape {tuple(bias.shape)}"
        )
    return stride, padding, output_padding, dilation, out_size


def local_conv_transpose(input, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    r"""Transposed locally connected op over 1-, 2- or 3-d inputs: a filter bank per *input* position.

    ``out[b, g·O_g + o, i·s − p + t·d] += x[b, g·C_g + c, i] · weight[i, g, o, t, c]`` summed over
    ``i, c, t`` (+ bias), with ``C_g = C_in/groups`` and ``O_g = C_out/groups``. Equals
    ``torch.nn.functional.conv_transpose*d`` when every position holds the same filter bank.

    Args:
        input: ``(B, C_in, *in_size)``.
        weight: location-major ``(*in_size, groups, C_out // groups, *kernel_size, C_in // groups)``:
            the weight of ``local_conv`` from ``C_out`` channels on the output grid to ``C_in``
            channels on the input grid (this op is its input gradient).
        bias: ``None`` (default), ``(C_out, *out_size)`` (one per channel and output position) or
            ``(C_out,)`` (shared per channel).
        stride: int or tuple. Default: 1.
        padding: crop of each side of the full output, int or tuple. Default: 0.
        output_padding: extra size on the right of each dim, smaller than stride or dilation.
            Default: 0.
        dilation: spacing between kernel taps, int or tuple. Default: 1.
        groups: blocked connections from input to output channels. Default: 1.

    Shape:
        - Input: ``(B, C_in, *in_size)``
        - Output: ``(B, C_out, *out_size)`` with
          ``out = (in − 1)·stride − 2·padding + dilation·(kernel − 1) + output_padding + 1``

    Examples:
        >>> x = torch.randn(2, 4, 3, 3)
        >>> w = torch.randn(3, 3, 1, 6, 3, 3, 4)  # (H_in, W_in, groups, C_out, kh, kw, C_in)
        >>> local_conv_transpose(x, w, stride=2, output_padding=1).shape
        torch.Size([2, 6, 8, 8])
    """
    stride, padding, output_padding, dilation, out_size = _check(
        input, weight, bias, stride, padding, output_padding, dilation, groups
    )
    return _apply(input, weight, bias, stride, padding, output_padding, dilation, groups, out_size, _backend(input))


def _apply(input, weight, bias, stride, padding, output_padding, dilation, groups, out_size, kernels):
    """The op on checked arguments (tuples), with ``kernels`` as in ``local.py`` (C++ ops or a module)."""
    ndim = input.dim() - 2
    kernel = weight.shape[ndim + 2 : 2 * ndim + 2]
    # per dim: the local op's padding, and the grid it runs on (the output, or the full output when
    # output_padding ≥ stride and the local op over the output grid would have extra positions)
    cropped = [op >= s for op, s in zip(output_padding, stride)]
    op_padding = [0 if c else p for c, p in zip(cropped, padding)]
    grid = [
        transposed_output_size(n, k, s, 0, 0, d) if c else o
        for c, n, s, d, k, o in zip(cropped, input.shape[2:], stride, dilation, kernel, out_size)
    ]
    c_out = groups * weight.shape[ndim + 1]
    # only its size and memory format are read: the layout of the output
    like = torch.empty((input.shape[0], c_out, *grid), dtype=input.dtype, device=input.device,
                       memory_format=memory_format(input))
    out = _InputGrad.apply(
        input, weight, like, list(stride), op_padding, list(dilation), groups, kernels
    )
    if any(cropped):
        # F.pad takes the last dim first; a negative amount crops
        out = F.pad(out, [q for c, p, op in reversed(list(zip(cropped, padding, output_padding)))
                          for q in ((-p, op - p) if c else (0, 0))])
    if bias is not None:
        out = out + (bias if bias.dim() > 1 else bias.view(-1, *([1] * ndim)))
    return out
