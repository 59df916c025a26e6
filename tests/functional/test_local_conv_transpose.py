"""Correctness of ``layerlab.functional.local_conv_transpose`` on every kernel set.

References: ``local_conv_transpose_reference`` (naive float64 scatter loops over input positions,
shares no code with the op), ``torch.nn.functional.conv_transpose*d`` (every position holding one
filter bank is that transposed conv) and float64 ``gradcheck``/``gradgradcheck``. Kernel sets: the
C++ ones ("rows", "direct", "gemm", forced with ``use_kernel``; each test that forces one asserts
that the three local ops ran on it) and the pure-torch fallback; the Triton kernels are checked in
``local_triton_cases.py``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from layerlab.errors import ArgumentError, ShapeError
from layerlab.functional import local_conv_transpose
from layerlab.functional.local_transpose import _apply, _check
from layerlab.functional.reference import local_conv_transpose_reference
from local_cases import make_transposed as make
from local_cases import transposed_out_size as out_size_of
from test_local_conv import CPP, kernels_of

PATHS = ["rows", "direct", "gemm", "torch"]
CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}

# ndim, in_size, c_in, c_out, kernel, stride, padding, output_padding, dilation, groups
CASES = [
    (1, (6,), 4, 6, (3,), (2,), (1,), (1,), (1,), 2),
    (1, (5,), 3, 2, (4,), (1,), (2,), (1,), (2,), 1),  # output_padding ≥ stride (dilation 2): cropped path
    (1, (4,), 2, 3, (3,), (2,), (1,), (2,), (3,), 1),  # output_padding ≥ stride, > padding: zeros appended
    (2, (4, 5), 3, 4, (3, 2), (1, 2), (0, 1), (0, 1), (1, 1), 1),
    (2, (3, 4), 4, 6, (3, 3), (2, 3), (1, 2), (1, 2), (2, 1), 2),
    (2, (4, 4), 6, 3, (1, 1), (1, 1), (0, 0), (0, 0), (1, 1), 3),  # 1x1 kernel, depthwise-like groups
    (3, (2, 3, 2), 2, 4, (2, 3, 2), (1, 2, 2), (1, 0, 1), (0, 1, 1), (1, 1, 2), 2),
]
# the direct kernels' register tiles need many lane channels: C_in of the transposed op is the
# lane dim of its forward (the local input gradient), C_out that of its backward ops
DIRECT_CASES = [(1, (5,), 28, 2, (3,), (1,), (1,), (0,), (1,), 1), (1, (5,), 2, 28, (3,), (1,), (1,), (0,), (1,), 1)]


def case_id(case):
    return (f"{case[0]}d-{case[1]}-c{case[2]}-{case[3]}-k{case[4]}-s{case[5]}-p{case[6]}-op{case[7]}-d{case[8]}"
            f"-g{case[9]}")


def on_paths(cases, paths=PATHS):
    """``(case, path)`` pairs; "rows" serves only stride 1 along the last dimension."""
    return [(case, path) for case in cases for path in paths if path != "rows" or case[5][-1] == 1]


def run(path, x, w, b, **conf):
    """``local_conv_transpose`` on the kernels of ``path``."""
    kernels = kernels_of(path)
    stride, padding, output_padding, dilation, out_size = _check(x, w, b, *conf.values())
    return _apply(x, w, b, stride, padding, output_padding, dilation, conf["groups"], out_size, kernels)


def assert_ran(path):
    """The op's forward ran the local input gradient, its backward the local forward and weight gradient,
    all on the forced C++ kernel set."""
    if path != "torch":
        assert torch.ops.layerlab_local.ran() == [path] * 3


@pytest.fixture(autouse=True)
def _automatic_kernel_choice():
    if CPP:
        torch.ops.layerlab_local.ran()
    yield
    if CPP:
        torch.ops.layerlab_local.use_kernel("auto")


def grads(out, tensors, grad):
    return torch.autograd.grad(out, [t for t in tensors if t is not None], grad)


@pytest.mark.parametrize("bias_mode", [None, "shared", "location"])
@pytest.mark.parametrize("case, path", on_paths(CASES + DIRECT_CASES), ids=lambda p: p if isinstance(p, str) else case_id(p))
def test_forward_and_gradients_match_loop_reference(case, bias_mode, path):
    (x, w, b), conf = make(case, bias_mode=bias_mode)
    ref = local_conv_transpose_reference(x, w, b, **conf)
    out = run(path, x, w, b, **conf)
    assert tuple(out.shape[2:]) == out_size_of(case)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    for got, want in zip(grads(out, (x, w, b), g), grads(ref, (x, w, b), g)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert_ran(path)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_one_filter_bank_everywhere_is_torch_conv_transpose(case):
    """Independent of the loop reference: torch's own transposed conv, weight ``(C_in, C_out/g, *k)``."""
    ndim, size, c_in, c_out, kernel, stride, padding, output_padding, dilation, groups = case
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, c_in, *size, generator=gen, dtype=torch.float64)
    w = torch.randn(c_in, c_out // groups, *kernel, generator=gen, dtype=torch.float64)
    bias = torch.randn(c_out, generator=gen, dtype=torch.float64)
    bank = w.view(groups, c_in // groups, c_out // groups, *kernel).movedim(1, -1)  # (G, C_out/G, *k, C_in/G)
    local = local_conv_transpose(x, bank.expand(*size, *bank.shape), bias, stride, padding, output_padding,
                                 dilation, groups)
    want = CONV_T[ndim](x, w, bias, stride, padding, output_padding, groups, dilation)
    torch.testing.assert_close(local, want, rtol=1e-12, atol=1e-12)


GRADCHECK_CASES = [
    (1, (4,), 2, 4, (3,), (2,), (1,), (1,), (1,), 2),
    (1, (4,), 2, 2, (2,), (1,), (1,), (1,), (2,), 1),  # the cropped path
    (2, (3, 3), 2, 2, (2, 3), (2, 1), (1, 0), (1, 0), (1, 2), 1),
    (3, (2, 2, 2), 2, 2, (2, 2, 1), (1, 2, 1), (0, 1, 0), (0, 1, 0), (1, 1, 1), 2),
]


@pytest.mark.parametrize("case, path", on_paths(GRADCHECK_CASES), ids=lambda p: p if isinstance(p, str) else case_id(p))
def test_gradcheck_float64(case, path):
    for bias_mode in ("location", "shared"):
        (x, w, b), conf = make(case, batch=2, bias_mode=bias_mode)
        assert torch.autograd.gradcheck(lambda *t: run(path, *t, **conf), (x, w, b))


@pytest.mark.parametrize("case, path", on_paths(GRADCHECK_CASES[:3]), ids=lambda p: p if isinstance(p, str) else case_id(p))
def test_gradgradcheck_float64(case, path):
    """Second derivatives, built from the local op's three functions, against finite differences."""
    (x, w, b), conf = make(case, batch=2, bias_mode="location")
    assert torch.autograd.gradgradcheck(lambda *t: run(path, *t, **conf), (x, w, b))


@pytest.mark.parametrize("path", ["gemm", "torch"])  # the kernel sets that serve channels_last inputs
@pytest.mark.parametrize("ndim", [2, 3])
def test_channels_last_input_gives_channels_last_output_and_same_values(ndim, path):
    case = CASES[4] if ndim == 2 else CASES[6]
    (x, w, b), conf = make(case, bias_mode="shared")
    fmt = torch.channels_last if ndim == 2 else torch.channels_last_3d
    xl = x.detach().to(memory_format=fmt).requires_grad_()
    out = run(path, xl, w, b, **conf)
    assert out.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(out, local_conv_transpose_reference(x, w, b, **conf), rtol=1e-12, atol=1e-12)
    g = torch.randn_like(out)
    for got, want in zip(grads(out, (xl, w, b), g), grads(run(path, x, w, b, **conf), (x, w, b), g)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not CPP, reason="the C++ kernels could not be built here")
def test_cpu_float_uses_the_cpp_kernels_when_built():
    """The public op runs its forward and both gradients on the C++ ops (the fallback only where they
    are not built)."""
    (x, w, b), conf = make(CASES[3])
    local_conv_transpose(x, w, b, **conf).sum().backward()
    assert all(torch.ops.layerlab_local.ran())


def test_bfloat16_runs_on_the_torch_kernels_within_tolerance():
    (x, w, b), conf = make(CASES[4], bias_mode="location")
    out = local_conv_transpose(x.detach().bfloat16(), w.detach().bfloat16(), b.detach().bfloat16(), **conf)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), local_conv_transpose_reference(x, w, b, **conf), rtol=0.05, atol=0.3)


def test_torch_compile_matches_eager():
    (x, w, b), conf = make(CASES[4], bias_mode="location")

    def f(x, w, b):
        return local_conv_transpose(x, w, b, **conf)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out, ref = compiled(x, w, b), f(x, w, b)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    for got, want in zip(grads(out, (x, w, b), g), grads(ref, (x, w, b), g)):
        torch.testing.assert_close(got, want)


def test_empty_batch():
    (x, w, b), conf = make(CASES[3], batch=1)
    out = local_conv_transpose(x[:0], w, b, **conf)
    assert out.shape == (0, 4, *out_size_of(CASES[3]))


# ---- errors --------------------------------------------------------------------------------------


def test_wrong_input_rank():
    with pytest.raises(ShapeError, match=r"local_conv_transpose: expected a 3-d, 4-d or 5-d input \(B, C_in, "
                       r"\*spatial\) .* Received: input of shape \(4, 5\); add the batch dimension"):
        local_conv_transpose(torch.zeros(4, 5), torch.zeros(5, 1, 1, 3, 4))


def test_wrong_weight_rank():
    with pytest.raises(ShapeError, match=r"expected a 7-d location-major weight \(\*in_size, groups, C_out // groups, "
                       r"\*kernel_size, C_in // groups\) for a 2-d input. Received: weight of shape \(3, 3\)"):
        local_conv_transpose(torch.zeros(1, 2, 3, 3), torch.zeros(3, 3))


def test_weight_built_for_another_input_size():
    """A weight over another grid (e.g. the local layer's OUTPUT grid by mistake) is refused."""
    with pytest.raises(ShapeError, match=r"weight of shape \(4, 4, 1, 3, 2, 2, 2\) does not fit an input of shape "
                       r"\(1, 2, 3, 3\) with groups=1: expected weight shape \(\*in_size, groups, C_out // groups, "
                       r"\*kernel_size, C_in // groups\) = \(3, 3, 1\) \+ \(C_out // groups,\) \+ \(2, 2, 2\)"):
        local_conv_transpose(torch.zeros(1, 2, 3, 3), torch.zeros(4, 4, 1, 3, 2, 2, 2))
    with pytest.raises(ShapeError, match=r"does not fit an input of shape \(1, 2, 3, 3\) with groups=2"):
        local_conv_transpose(torch.zeros(1, 2, 3, 3), torch.zeros(3, 3, 1, 3, 2, 2, 2), groups=2)


def test_channels_not_divisible_by_groups():
    with pytest.raises(ArgumentError, match=r"local_conv_transpose: in_channels must be divisible by groups. "
                       r"Received: in_channels=3, groups=2"):
        local_conv_transpose(torch.zeros(1, 3, 3), torch.zeros(3, 2, 1, 2, 1), groups=2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(output_padding=2, stride=2), r"local_conv_transpose: output_padding must be smaller than stride or "
                                       r"dilation \(as torch\). Received: output_padding=2, stride=2, dilation=1"),
    (dict(stride=0), r"local_conv_transpose: stride must be positive"),
    (dict(padding=-1), r"local_conv_transpose: padding must be non-negative"),
    (dict(groups=0), r"local_conv_transpose: groups must be a positive integer"),
])
def test_impossible_arguments(kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        local_conv_transpose(torch.zeros(1, 2, 4), torch.zeros(4, 1, 3, 2, 2), **kwargs)


def test_padding_that_crops_everything():
    with pytest.raises(ShapeError, match=r"local_conv_transpose: the output size \(0,\) of an input of shape "
                       r"\(1, 2, 1\) is empty: padding=\(1,\) crops more than the full output"):
        local_conv_transpose(torch.zeros(1, 2, 1), torch.zeros(1, 1, 3, 2, 2), padding=1)


def test_bias_of_wrong_shape():
    with pytest.raises(ShapeError, match=r"bias must have shape \(3,\) \['shared'\] or \(3, 6\) \['location'\]. "
                       r"Received: bias of shape \(3, 4\)"):
        local_conv_transpose(torch.zeros(1, 2, 4), torch.zeros(4, 1, 3, 3, 2), torch.zeros(3, 4))


def test_mixed_dtypes():
    with pytest.raises(ArgumentError, match=r"local_conv_transpose: input, weight and bias must have the same dtype. "
                       r"Received: input torch.float64, weight torch.float32"):
        local_conv_transpose(torch.zeros(1, 2, 4, dtype=torch.float64), torch.zeros(4, 1, 3, 3, 2))
