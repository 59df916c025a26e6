"""Test data for ``local_conv`` and ``local_conv_transpose``, shared by ``test_local_conv.py``,
``test_local_conv_transpose.py`` and ``local_triton_cases.py``.

A case is ``(ndim, in_size, c_in, c_out, kernel, stride, padding, dilation, groups)``; a transposed
case ``(ndim, in_size, c_in, c_out, kernel, stride, padding, output_padding, dilation, groups)``.
"""

from __future__ import annotations

import torch

from layerlab.arith import output_sizes, transposed_output_size


def out_size_of(size, kernel, stride, padding, dilation):
    """The conv output size (``layerlab.arith``, checked against torch in ``tests/arith``)."""
    return output_sizes(size, kernel, stride, padding, dilation)


def make(case, batch=3, bias_mode="location", dtype=torch.float64, seed=0, device="cpu"):
    """Random input, location-major weight and bias for ``case`` (leaf tensors requiring grad, drawn
    in float64 on the CPU so that every dtype and device gets the same values) and the op's keyword
    arguments."""
    ndim, size, c_in, c_out, kernel, stride, padding, dilation, groups = case
    gen = torch.Generator().manual_seed(seed)
    out = out_size_of(size, kernel, stride, padding, dilation)
    x = torch.randn(batch, c_in, *size, generator=gen, dtype=torch.float64)
    w = torch.randn(*out, groups, c_in // groups, *kernel, c_out // groups, generator=gen, dtype=torch.float64)
    b = {
        None: None,
        "shared": torch.randn(c_out, generator=gen, dtype=torch.float64),
        "location": torch.randn(c_out, *out, generator=gen, dtype=torch.float64),
    }[bias_mode]
    leaves = [t if t is None else t.to(device, dtype).requires_grad_() for t in (x, w, b)]
    return leaves, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def transposed_out_size(case):
    """The transposed op's output size (``layerlab.arith``, checked against torch in ``tests/arith``)."""
    _, size, _, _, kernel, stride, padding, output_padding, dilation, _ = case
    return tuple(transposed_output_size(*a) for a in zip(size, kernel, stride, padding, output_padding, dilation))


def make_transposed(case, batch=3, bias_mode="location", dtype=torch.float64, seed=0, device="cpu"):
    """Random input, weight ``(*in_size, groups, C_out/groups, *k, C_in/groups)`` and bias of a transposed
    ``case`` (leaf tensors requiring grad, drawn in float64 on the CPU) and the op's keyword arguments."""
    ndim, size, c_in, c_out, kernel, stride, padding, output_padding, dilation, groups = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c_in, *size, generator=gen, dtype=torch.float64)
    w = torch.randn(*size, groups, c_out // groups, *kernel, c_in // groups, generator=gen, dtype=torch.float64)
    b = {
        None: None,
        "shared": torch.randn(c_out, generator=gen, dtype=torch.float64),
        "location": torch.randn(c_out, *transposed_out_size(case), generator=gen, dtype=torch.float64),
    }[bias_mode]
    leaves = [t if t is None else t.to(device, dtype).requires_grad_() for t in (x, w, b)]
    return leaves, dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation,
                        groups=groups)
