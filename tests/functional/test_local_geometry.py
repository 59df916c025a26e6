"""The locally connected op's output size is ``layerlab.arith``'s, on every kernel set.

``local_conv`` checks the weight's leading ``out_size`` dims against
:func:`layerlab.arith.output_sizes`; the C++ op computes its own loop bounds and refuses a weight
that does not fit them. On random configurations (ndim 1-3, stride, padding, dilation, groups),
the C++ op called directly (past the Python checks), the pure-torch kernels and ``local_conv``
all return ``(B, C_out, *out)`` with ``out`` from ``arith`` (itself checked against torch's conv
here and in ``tests/arith``), and the C++ op rejects a weight one position larger.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from layerlab.arith import output_sizes
from layerlab.errors import ArgumentError
from layerlab.functional import _local_ext, _local_torch, local_conv
from layerlab.nn import LocallyConnected2d

CPP = _local_ext.load()
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _configs(count: int, seed: int = 0):
    """Random ``(ndim, in_size, c_in, c_out, kernel, stride, padding, dilation, groups)`` whose
    output is not empty."""
    rng = random.Random(seed)
    found = []
    while len(found) < count:
        ndim = rng.randint(1, 3)
        groups = rng.choice((1, 1, 2, 3))
        kernel = tuple(rng.randint(1, 4) for _ in range(ndim))
        stride = tuple(rng.randint(1, 3) for _ in range(ndim))
        padding = tuple(rng.randint(0, 2) for _ in range(ndim))
        dilation = tuple(rng.randint(1, 3) for _ in range(ndim))
        in_size = tuple(rng.randint(1, 9 if ndim < 3 else 6) for _ in range(ndim))
        if min(output_sizes(in_size, kernel, stride, padding, dilation)) < 1:
            continue
        found.append((ndim, in_size, groups * rng.randint(1, 2), groups * rng.randint(1, 2), kernel, stride,
                      padding, dilation, groups))
    return found


@pytest.mark.parametrize("case", _configs(40))
def test_every_kernel_set_returns_the_arith_output_size(case):
    ndim, in_size, c_in, c_out, kernel, stride, padding, dilation, groups = case
    out = output_sizes(in_size, kernel, stride, padding, dilation)
    x = torch.randn(2, c_in, *in_size)
    w = torch.randn(*out, groups, c_in // groups, *kernel, c_out // groups)
    conf = (list(stride), list(padding), list(dilation), groups)
    expected = (2, c_out, *out)
    conv = CONV[ndim](x, torch.randn(c_out, c_in // groups, *kernel), stride=stride, padding=padding,
                      dilation=dilation, groups=groups)
    assert tuple(conv.shape) == expected
    assert tuple(local_conv(x, w, None, stride, padding, dilation, groups).shape) == expected
    assert tuple(_local_torch.forward(x, w, None, *conf).shape) == expected
    if CPP:
        assert tuple(torch.ops.layerlab_local.forward(x, w, None, *conf).shape) == expected
        larger = torch.randn(*out[:-1], out[-1] + 1, *w.shape[ndim:])
        with pytest.raises(RuntimeError, match="weight does not fit the output size"):
            torch.ops.layerlab_local.forward(x, larger, None, *conf)


def test_a_float64_input_to_a_float32_layer_names_both_dtypes_and_the_fix():
    layer = LocallyConnected2d(3, 4, 3, input_size=(6, 6))
    with pytest.raises(ArgumentError, match=r"local_conv: input, weight and bias must have the same dtype\. "
                       r"Received: input torch\.float64, weight torch\.float32, bias torch\.float32\. Fix: "
                       r"convert the layer to the input's dtype \(layer\.to\(torch\.float64\)\) or the input to "
                       r"the layer's \(x\.to\(torch\.float32\)\)"):
        layer(torch.randn(1, 3, 6, 6, dtype=torch.float64))


def test_a_bias_of_another_dtype_is_named():
    x, w = torch.randn(1, 3, 6), torch.randn(4, 1, 3, 3, 2)
    with pytest.raises(ArgumentError, match=r"Received: input torch\.float32, weight torch\.float32, "
                       r"bias torch\.float64\."):
        local_conv(x, w, torch.zeros(2, dtype=torch.float64))
