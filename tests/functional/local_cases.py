"""Test data for ``local_conv``, shared by ``test_local_conv.py`` and ``local_triton_cases.py``.

A case is ``(ndim, in_size, c_in, c_out, kernel, stride, padding, dilation, groups)``.
"""

from __future__ import annotations

import torch

from layerlab.arith import output_sizes


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
