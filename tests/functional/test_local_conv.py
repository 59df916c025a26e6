"""Correctness of ``layerlab.functional.local_conv`` on every path.

References: ``local_conv_reference`` (naive float64 loops, shares no code with the op),
``torch.nn.functional.conv*d`` (a local op whose filters are all one conv filter is that conv) and
float64 ``gradcheck``. Paths: the C++ kernels (float32/float64 on CPU) and the pure-torch kernels
(fallback, bfloat16, CUDA), compared with the references and with each other.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from layerlab.errors import ArgumentError, ShapeError
from layerlab.functional import _local_ext, _local_torch, local_conv
from layerlab.functional.local import _LocalConvFunction
from layerlab.functional.reference import local_conv_reference

CPP = _local_ext.load()
needs_cpp = pytest.mark.skipif(not CPP, reason="the C++ kernels could not be built here")

# ndim, in_size, c_in, c_out, kernel, stride, padding, dilation, groups
CASES = [
    (1, (11,), 4, 6, (3,), (2,), (1,), (1,), 2),  # floor drops the last input element
    (1, (9,), 3, 2, (4,), (1,), (2,), (2,), 1),
    (2, (7, 8), 3, 4, (3, 2), (1, 2), (0, 1), (1, 1), 1),
    (2, (9, 10), 4, 6, (3, 3), (2, 3), (1, 2), (2, 1), 2),  # floor drops rows and columns
    (2, (6, 6), 6, 3, (1, 1), (1, 1), (0, 0), (1, 1), 3),  # 1x1 kernel, depthwise-like groups
    (3, (5, 6, 5), 2, 4, (2, 3, 2), (1, 2, 2), (1, 0, 1), (1, 1, 2), 2),
]


def out_size_of(size, kernel, stride, padding, dilation):
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in zip(size, padding, dilation, kernel, stride))


def make(case, batch=3, bias_mode="location", dtype=torch.float64, seed=0):
    """Random input, location-major weight and bias for ``case`` (leaf tensors requiring grad)."""
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
    leaves = [t if t is None else t.to(dtype).requires_grad_() for t in (x, w, b)]
    return leaves, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def kernels_of(name):
    if name == "cpp":
        if not CPP:
            pytest.skip("the C++ kernels could not be built here")
        return torch.ops.layerlab_local
    return _local_torch


def run(name, x, w, b, stride, padding, dilation, groups):
    """``local_conv`` forced onto one path."""
    return _LocalConvFunction.apply(x, w, b, list(stride), list(padding), list(dilation), groups, kernels_of(name))


def grads(out, tensors, grad):
    present = [t for t in tensors if t is not None]
    return torch.autograd.grad(out, present, grad)


@pytest.mark.parametrize("path", ["cpp", "torch"])
@pytest.mark.parametrize("bias_mode", [None, "shared", "location"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}d-{c[1]}-s{c[5]}-p{c[6]}-d{c[7]}-g{c[8]}")
def test_forward_and_gradients_match_loop_reference(case, bias_mode, path):
    (x, w, b), conf = make(case, bias_mode=bias_mode)
    ref = local_conv_reference(x, w, b, **conf)
    out = run(path, x, w, b, **conf)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    for got, want in zip(grads(out, (x, w, b), g), grads(ref, (x, w, b), g)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


GRADCHECK_CASES = [
    (1, (7,), 2, 4, (3,), (2,), (1,), (1,), 2),
    (2, (5, 6), 2, 2, (2, 3), (2, 1), (1, 0), (1, 2), 1),
    (3, (3, 4, 3), 2, 2, (2, 2, 1), (1, 2, 1), (0, 1, 0), (1, 1, 1), 2),
]


@pytest.mark.parametrize("path", ["cpp", "torch"])
@pytest.mark.parametrize("case", GRADCHECK_CASES, ids=["1d", "2d", "3d"])
def test_gradcheck_float64(case, path):
    (x, w, b), conf = make(case, batch=2, bias_mode="location")
    assert torch.autograd.gradcheck(lambda *t: run(path, *t, **conf), (x, w, b))
    (x, w, b), conf = make(case, batch=2, bias_mode="shared")
    assert torch.autograd.gradcheck(lambda *t: run(path, *t, **conf), (x, w, b))


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_shared_filters_equal_torch_conv(ndim):
    """Every position using one conv filter (a broadcast, non-contiguous weight) is that conv."""
    gen = torch.Generator().manual_seed(1)
    c_in, c_out, groups, kernel = 4, 6, 2, (3, 2, 2)[:ndim]
    x = torch.randn(2, c_in, *(9, 8, 7)[:ndim], dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(c_out, c_in // groups, *kernel, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(c_out, dtype=torch.float64, generator=gen, requires_grad=True)
    conv = (F.conv1d, F.conv2d, F.conv3d)[ndim - 1]
    ref = conv(x, w, b, stride=2, padding=1, dilation=1, groups=groups)
    local_w = w.view(groups, c_out // groups, c_in // groups, *kernel).movedim(1, -1)
    local_w = local_w.expand(*ref.shape[2:], *local_w.shape)
    out = local_conv(x, local_w, b, stride=2, padding=1, groups=groups)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    for got, want in zip(grads(out, (x, w, b), g), grads(ref, (x, w, b), g)):
        torch.testing.assert_close(got, want)


# float32 cases large enough for several position tiles, direct and staged layouts, groups
PATH_CASES = [
    (2, (20, 20), 3, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1),  # 400 positions: several tiles
    (2, (13, 11), 4, 8, (3, 3), (2, 1), (0, 2), (1, 2), 4),
    (1, (300,), 2, 4, (5,), (1,), (2,), (1,), 2),
    (3, (6, 7, 5), 4, 4, (3, 2, 3), (1, 1, 2), (1, 1, 1), (1, 2, 1), 2),
]


@needs_cpp
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", PATH_CASES, ids=lambda c: f"{c[0]}d-{c[1]}-g{c[8]}")
def test_cpp_path_equals_torch_path_float32(case, threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        (x, w, b), conf = make(case, batch=5, dtype=torch.float32)
        out_cpp = run("cpp", x, w, b, **conf)
        out_torch = run("torch", x, w, b, **conf)
        torch.testing.assert_close(out_cpp, out_torch, rtol=1e-5, atol=1e-5)
        g = torch.randn_like(out_cpp)
        for a, c in zip(grads(out_cpp, (x, w, b), g), grads(out_torch, (x, w, b), g)):
            torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-4)
    finally:
        torch.set_num_threads(previous)


@needs_cpp
def test_cpp_backward_is_deterministic():
    (x, w, b), conf = make(PATH_CASES[0], batch=7, dtype=torch.float32)
    g = torch.randn(7, 8, 20, 20)
    first = grads(run("cpp", x, w, b, **conf), (x, w, b), g)
    second = grads(run("cpp", x, w, b, **conf), (x, w, b), g)
    for a, c in zip(first, second):
        assert torch.equal(a, c)


@pytest.mark.parametrize("path", ["cpp", "torch"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_channels_last_input_gives_channels_last_output_and_same_values(ndim, path):
    case = CASES[3] if ndim == 2 else CASES[5]
    fmt = torch.channels_last if ndim == 2 else torch.channels_last_3d
    (x, w, b), conf = make(case, bias_mode="location")
    x_cl = x.detach().to(memory_format=fmt).requires_grad_()
    for g_format in (torch.contiguous_format, fmt):
        ref = local_conv_reference(x, w, b, **conf)
        out = run(path, x_cl, w, b, **conf)
        assert out.is_contiguous(memory_format=fmt) and not out.is_contiguous()
        torch.testing.assert_close(out, ref)
        g = torch.randn_like(ref).contiguous(memory_format=g_format)
        got, want = grads(out, (x_cl, w, b), g), grads(ref, (x, w, b), g)
        assert got[0].is_contiguous(memory_format=fmt)
        for a, c in zip(got, want):
            torch.testing.assert_close(a, c)


def test_bfloat16_within_tolerance_of_float64_reference():
    (x, w, b), conf = make(CASES[3], bias_mode="location", dtype=torch.bfloat16)
    out = local_conv(x, w, b, **conf)
    assert out.dtype == torch.bfloat16
    ref = local_conv_reference(x.double(), w.double(), b.double(), **conf)
    scale = ref.abs().max()
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=0.02 * scale.item())
    g = torch.randn_like(ref)
    got = grads(out, (x, w, b), g.bfloat16())
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, w, b))
    want = grads(local_conv_reference(xd, wd, bd, **conf), (xd, wd, bd), g)
    for a, c in zip(got, want):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a.double(), c, rtol=0, atol=0.02 * c.abs().max().item())


def test_torch_compile_matches_eager():
    """dynamo + AOT autograd over the autograd.Function and the ops' fake implementations."""
    (x, w, b), conf = make(CASES[3], dtype=torch.float32)

    def f(x, w, b):
        return torch.relu(local_conv(x, w, b, **conf))

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out, ref = compiled(x, w, b), f(x, w, b)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    for a, c in zip(grads(out, (x, w, b), g), grads(ref, (x, w, b), g)):
        torch.testing.assert_close(a, c)


@needs_cpp
def test_cpp_ops_pass_opcheck():
    """Schema and fake (meta) implementations agree with the real kernels (strides included)."""
    (x, w, b), conf = make(CASES[3], dtype=torch.float32)
    args = [list(conf["stride"]), list(conf["padding"]), list(conf["dilation"]), conf["groups"]]
    x, w, b = x.detach(), w.detach(), b.detach()
    out = torch.ops.layerlab_local.forward(x, w, b, *args)
    tests = ("test_schema", "test_faketensor")
    for xin in (x, x.to(memory_format=torch.channels_last)):
        torch.library.opcheck(torch.ops.layerlab_local.forward, (xin, w, b, *args), test_utils=tests)
        torch.library.opcheck(torch.ops.layerlab_local.input_grad, (torch.randn_like(out), w, xin, *args), test_utils=tests)
    torch.library.opcheck(
        torch.ops.layerlab_local.weight_grad, (torch.randn_like(out), x, list(w.shape), *args), test_utils=tests
    )


def test_empty_batch():
    (x, w, b), conf = make(CASES[3], batch=0, dtype=torch.float32)
    out = local_conv(x, w, b, **conf)
    assert out.shape == (0, 6, *w.shape[:2])
    gx, gw, gb = grads(out, (x, w, b), torch.ones_like(out))
    assert gx.shape == x.shape and not gw.any() and not gb.any()


def test_build_failure_warns_and_falls_back(monkeypatch):
    import torch.utils.cpp_extension as cpp_extension

    def broken(**kwargs):
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.setattr(cpp_extension, "load", broken)
    monkeypatch.delenv("LAYERLAB_NO_EXTENSION", raising=False)
    monkeypatch.setattr(_local_ext, "_STATE", {})
    with pytest.warns(RuntimeWarning, match=r"could not build the C\+\+ kernels of local_conv \(RuntimeError: "
                      r"Ninja is required.*using the slower pure-torch path"):
        assert _local_ext.load() is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _local_ext.load() is False  # warned once


def test_no_extension_env_var_skips_the_build_silently(monkeypatch):
    monkeypatch.setenv("LAYERLAB_NO_EXTENSION", "1")
    monkeypatch.setattr(_local_ext, "_STATE", {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _local_ext.load() is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_path_matches_cpu():
    (x, w, b), conf = make(CASES[3], dtype=torch.float32)
    out = local_conv(x.cuda(), w.cuda(), b.cuda(), **conf)
    torch.testing.assert_close(out.cpu(), local_conv(x, w, b, **conf), rtol=1e-4, atol=1e-4)


# ---- bad input: pinned messages ----------------------------------------------------------------


def test_wrong_input_rank():
    with pytest.raises(ShapeError, match=r"expected a 3-d, 4-d or 5-d input \(B, C_in, \*spatial\).*"
                       r"Received: input of shape \(1, 1, 1, 3, 8, 8\); add the batch dimension"):
        local_conv(torch.randn(1, 1, 1, 3, 8, 8), torch.randn(6, 6, 1, 3, 3, 3, 4))
    with pytest.raises(ShapeError, match=r"Received: input of shape \(8, 8\)"):
        local_conv(torch.randn(8, 8), torch.randn(6, 6, 1, 3, 3, 3, 4))


def test_wrong_weight_rank():
    with pytest.raises(ShapeError, match=r"expected a 7-d location-major weight \(\*out_size, groups, "
                       r"C_in // groups, \*kernel_size, C_out // groups\) for a 2-d input\. Received: weight "
                       r"of shape \(4, 3, 3, 3\)"):
        local_conv(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3))


def test_weight_built_for_another_input_size():
    with pytest.raises(ShapeError, match=r"weight of shape \(6, 6, 1, 3, 3, 3, 4\) does not fit an input of "
                       r"shape \(1, 3, 10, 10\) with stride=\(1, 1\), padding=\(0, 0\), dilation=\(1, 1\), "
                       r"groups=1: expected weight shape .* = \(8, 8, 1, 3, 3, 3\) \+ \(C_out // groups,\)"):
        local_conv(torch.randn(1, 3, 10, 10), torch.randn(6, 6, 1, 3, 3, 3, 4))
    with pytest.raises(ShapeError, match=r"with stride=\(2, 2\).*= \(3, 3, 1, 3, 3, 3\)"):
        local_conv(torch.randn(1, 3, 8, 8), torch.randn(6, 6, 1, 3, 3, 3, 4), stride=2)


def test_weight_groups_or_channels_do_not_match():
    with pytest.raises(ShapeError, match=r"groups=1: expected weight shape .* = \(6, 6, 1, 3, 3, 3\)"):
        local_conv(torch.randn(1, 3, 8, 8), torch.randn(6, 6, 1, 2, 3, 3, 4))


def test_channels_not_divisible_by_groups():
    with pytest.raises(ArgumentError, match=r"in_channels must be divisible by groups\. Received: "
                       r"in_channels=3, groups=2; choose groups dividing 3"):
        local_conv(torch.randn(1, 3, 8, 8), torch.randn(6, 6, 2, 1, 3, 3, 4), groups=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(groups=0), r"groups must be a positive integer\. Received: groups=0"),
        (dict(stride=0), r"stride and dilation must be >= 1 and padding >= 0\. Received: stride=\(0, 0\)"),
        (dict(padding=-1), r"Received: stride=\(1, 1\), padding=\(-1, -1\)"),
        (dict(stride=(1, 1, 1)), r"stride must be an int or a tuple of 2 ints for a 2-d input\. "
                                 r"Received: stride=\(1, 1, 1\)"),
        (dict(dilation=1.5), r"dilation must be an int or a tuple of 2 ints .* Received: dilation=1\.5"),
    ],
)
def test_impossible_arguments(kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        local_conv(torch.randn(1, 3, 8, 8), torch.randn(6, 6, 1, 3, 3, 3, 4), **kwargs)


def test_input_too_small():
    with pytest.raises(ShapeError, match=r"the input's spatial size \(2, 2\) is too small for kernel_size=\(3, 3\), "
                       r"padding=\(0, 0\), dilation=\(1, 1\): output size would be \(0, 0\); use a larger input"):
        local_conv(torch.randn(1, 3, 2, 2), torch.randn(1, 1, 1, 3, 3, 3, 4))


def test_bias_of_wrong_shape():
    with pytest.raises(ShapeError, match=r"bias must have shape \(4,\) \['shared'\] or \(4, 6, 6\) \['location'\]\. "
                       r"Received: bias of shape \(4, 8, 8\)"):
        local_conv(torch.randn(1, 3, 8, 8), torch.randn(6, 6, 1, 3, 3, 3, 4), torch.randn(4, 8, 8))


@pytest.mark.parametrize("path", ["cpp", "torch"])
def test_expanded_output_gradient_from_sum(path):
    """``out.sum().backward()`` hands the backward a stride-0 gradient; it must be read correctly."""
    (x, w, b), conf = make(CASES[3], bias_mode="shared")
    gx, gw, gb = torch.autograd.grad(run(path, x, w, b, **conf).sum(), (x, w, b))
    rx, rw, rb = torch.autograd.grad(local_conv_reference(x, w, b, **conf).sum(), (x, w, b))
    for a, c in ((gx, rx), (gw, rw), (gb, rb)):
        torch.testing.assert_close(a, c)
