"""Checks of the Triton kernels of ``local_conv`` (``layerlab.functional._local_triton``).

Not collected by the suite itself (the name does not start with ``test_``):
``tests/functional/test_local_triton.py`` runs this file with pytest in a subprocess with
``TRITON_INTERPRET=1``, where the kernels run on CPU tensors under the Triton interpreter, and,
where torch sees a CUDA GPU, once more without it, compiled, on the GPU. A subprocess because the
interpreter is a process-wide mode of triton: the kernels and triton's own ``tl`` functions must
all be decorated while ``TRITON_INTERPRET=1`` is set, i.e. triton must be imported under it, and a
process whose triton was imported otherwise (e.g. by torch.compile) cannot switch.

References: ``local_conv_reference`` (naive float64 loops) and ``_local_torch``; float64
``gradcheck``/``gradgradcheck`` through ``_LocalConvFunction`` with these kernels; the transposed op
``local_conv_transpose`` on these kernels against ``local_conv_transpose_reference``. The interpreter
is slow (every ``tl`` op of every program is a Python call), so the shapes are tiny, except one
case whose batch, channels and K need several blocks of every kind.
"""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("triton")

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
if not INTERPRETED and not torch.cuda.is_available():
    pytest.skip("run with TRITON_INTERPRET=1 (Triton interpreter) or on a CUDA GPU", allow_module_level=True)
DEVICE = "cpu" if INTERPRETED else "cuda"
if INTERPRETED:
    # the interpreter checks every int32 add/sub/mul for overflow, which doubles its run time; the
    # shapes here are far too small to overflow (this process runs only this file)
    import dataclasses

    from triton.runtime import interpreter

    builder = getattr(interpreter, "interpreter_builder", None)
    if hasattr(getattr(builder, "options", None), "sanitize_overflow"):
        builder.options = dataclasses.replace(builder.options, sanitize_overflow=False)

from layerlab.errors import ArgumentError  # noqa: E402
from layerlab.functional import _local_torch  # noqa: E402
from layerlab.functional import _local_triton as kernels  # noqa: E402
from layerlab.functional.local import _LocalConvFunction  # noqa: E402
from layerlab.functional.local_transpose import _apply, _check  # noqa: E402
from layerlab.functional.reference import local_conv_reference, local_conv_transpose_reference  # noqa: E402
import local_cases  # noqa: E402  (tests/functional, on sys.path under pytest)

# ndim, in_size, c_in, c_out, kernel, stride, padding, dilation, groups
CASES = [
    (1, (9,), 4, 6, (3,), (2,), (1,), (1,), 2),  # floor drops the last input element
    (1, (8,), 3, 2, (3,), (1,), (2,), (2,), 1),
    (2, (5, 6), 3, 4, (3, 2), (1, 2), (1, 0), (2, 1), 1),
    (2, (5, 4), 4, 6, (2, 2), (2, 1), (1, 1), (1, 2), 2),  # floor drops the last row
    (3, (3, 4, 3), 2, 4, (2, 2, 1), (1, 2, 1), (1, 0, 0), (1, 1, 1), 2),
]
IDS = ["1d-s2-g2", "1d-p2-d2", "2d-d2", "2d-s2-g2", "3d-g2"]
# 67 samples (two 64-sample blocks, three 32-sample chunks of the weight-gradient loop), K = 210
# (seven 32-wide chunks, four 64-wide blocks), 70 input and output channels (two 64-wide blocks,
# three 32-wide chunks): every kernel loops and masks partial blocks
BLOCKS_CASE = (1, (5,), 70, 70, (3,), (1,), (1,), (1,), 1)
BLOCKS_BATCH = 67
# smaller still for gradcheck, which runs the kernels tens of times per case
GRADCHECK_CASES = [
    (1, (5,), 2, 4, (2,), (2,), (1,), (1,), 2),
    (2, (3, 4), 2, 2, (2, 2), (2, 1), (1, 0), (1, 2), 1),
    (3, (2, 3, 2), 2, 2, (2, 2, 1), (1, 2, 1), (0, 1, 0), (1, 1, 1), 2),
]


def make(case, batch=2, bias_mode="location", dtype=torch.float64, seed=0):
    """``local_cases.make`` on DEVICE, with 2 samples by default."""
    return local_cases.make(case, batch=batch, bias_mode=bias_mode, dtype=dtype, seed=seed, device=DEVICE)


def run(x, w, b, stride, padding, dilation, groups):
    """``local_conv`` on the Triton kernels."""
    return _LocalConvFunction.apply(x, w, b, stride, padding, dilation, groups, kernels)


def grads(out, tensors, grad):
    return torch.autograd.grad(out, [t for t in tensors if t is not None], grad)


def reference(x, w, b, conf):
    """Float64 loop reference on CPU, with leaves of its own (for reference gradients)."""
    leaves = [None if t is None else t.detach().cpu().double().requires_grad_() for t in (x, w, b)]
    return local_conv_reference(*leaves, **conf), leaves


# ---- float64 against the loop reference --------------------------------------------------------


# every case once, every bias mode (which only the forward kernel reads) on 1-, 2- and 3-d cases
BIAS_RUNS = [(0, None), (0, "location"), (1, "shared"), (2, "location"), (3, None), (3, "shared"), (4, "location")]


@pytest.mark.parametrize("case, bias_mode", [(CASES[i], mode) for i, mode in BIAS_RUNS],
                         ids=[f"{IDS[i]}-bias-{mode}" for i, mode in BIAS_RUNS])
def test_reference_forward_and_gradients_float64(case, bias_mode):
    (x, w, b), conf = make(case, bias_mode=bias_mode)
    out = run(x, w, b, **conf)
    ref, leaves = reference(x, w, b, conf)
    assert out.is_contiguous() and out.dtype == torch.float64
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    for got, want in zip(grads(out, (x, w, b), g.to(DEVICE)), grads(ref, leaves, g)):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-12, atol=1e-12)


def test_reference_several_blocks_of_every_kind():
    (x, w, b), conf = make(BLOCKS_CASE, batch=BLOCKS_BATCH, bias_mode="shared")
    out = run(x, w, b, **conf)
    ref, leaves = reference(x, w, b, conf)
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    for got, want in zip(grads(out, (x, w, b), g.to(DEVICE)), grads(ref, leaves, g)):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-12, atol=1e-12)


def test_reference_three_ops_equal_the_torch_kernels():
    """The three entry points called directly, against ``_local_torch``'s (location bias, 2-d)."""
    (x, w, b), conf = make(CASES[3], batch=3)
    x, w, b = x.detach(), w.detach(), b.detach()
    args = (conf["stride"], conf["padding"], conf["dilation"], conf["groups"])
    out = kernels.forward(x, w, b, *args)
    torch.testing.assert_close(out, _local_torch.forward(x, w, b, *args), rtol=1e-12, atol=1e-12)
    g = torch.randn_like(out)
    torch.testing.assert_close(kernels.weight_grad(g, x, list(w.shape), *args),
                               _local_torch.weight_grad(g, x, list(w.shape), *args), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kernels.input_grad(g, w, x, *args), _local_torch.input_grad(g, w, x, *args),
                               rtol=1e-12, atol=1e-12)


# ndim, in_size, c_in, c_out, kernel, stride, padding, output_padding, dilation, groups
TRANSPOSED_CASES = [
    (1, (4,), 4, 2, (3,), (2,), (1,), (1,), (1,), 2),
    (1, (4,), 2, 3, (3,), (1,), (2,), (1,), (2,), 1),  # output_padding ≥ stride: the cropped path
    (2, (3, 3), 2, 4, (2, 3), (2, 1), (1, 0), (1, 0), (1, 2), 1),
]


def run_transposed(x, w, b, **conf):
    """``local_conv_transpose`` on the Triton kernels."""
    stride, padding, output_padding, dilation, out_size = _check(x, w, b, *conf.values())
    return _apply(x, w, b, stride, padding, output_padding, dilation, conf["groups"], out_size, kernels)


@pytest.mark.parametrize("case", TRANSPOSED_CASES, ids=["1d-s2-g2", "1d-cropped", "2d"])
def test_reference_transposed_op_float64(case):
    """The transposed op runs the three kernels in swapped roles: forward = input_grad, and back."""
    (x, w, b), conf = local_cases.make_transposed(case, batch=2, bias_mode="location", device=DEVICE)
    out = run_transposed(x, w, b, **conf)
    leaves = [t.detach().cpu().requires_grad_() for t in (x, w, b)]
    ref = local_conv_transpose_reference(*leaves, **conf)
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    for got, want in zip(grads(out, (x, w, b), g.to(DEVICE)), grads(ref, leaves, g)):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-12, atol=1e-12)


def test_gradcheck_transposed_op_float64():
    """First and second derivatives against finite differences (fast mode)."""
    (x, w, b), conf = local_cases.make_transposed(TRANSPOSED_CASES[0], batch=2, bias_mode="shared", device=DEVICE)
    assert torch.autograd.gradcheck(lambda *t: run_transposed(*t, **conf), (x, w, b), fast_mode=True)
    assert torch.autograd.gradgradcheck(lambda *t: run_transposed(*t, **conf), (x, w, b), fast_mode=True)


# ---- gradcheck ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case, bias_mode", list(zip(GRADCHECK_CASES, ["location", "shared", "location"])),
                         ids=["1d", "2d", "3d"])
def test_gradcheck_float64(case, bias_mode):
    """First derivatives against finite differences (fast mode: random projections of the Jacobian)."""
    (x, w, b), conf = make(case, bias_mode=bias_mode)
    assert torch.autograd.gradcheck(lambda *t: run(*t, **conf), (x, w, b), fast_mode=True)


@pytest.mark.parametrize("case", GRADCHECK_CASES[:2], ids=["1d", "2d"])
def test_gradgradcheck_float64(case):
    """gradgradcheck: the backward, itself built from the three kernels, is differentiable."""
    (x, w, b), conf = make(case, bias_mode="location")
    assert torch.autograd.gradgradcheck(lambda *t: run(*t, **conf), (x, w, b), fast_mode=True)


# ---- low precision, layouts, edge cases ----------------------------------------------------------


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float16, 0.01), (torch.bfloat16, 0.02)])
@pytest.mark.parametrize("case", [CASES[0], CASES[3]], ids=["1d", "2d"])
def test_low_precision_within_tolerance_of_float64(case, dtype, tol):
    """float32 (IEEE ``tl.dot``: TF32 is off by default), float16 and bfloat16 (float32 accumulation):
    every result in the input's dtype and within ``tol`` × its largest magnitude of the reference."""
    (x, w, b), conf = make(case, bias_mode="location", dtype=dtype)
    out = run(x, w, b, **conf)
    ref, leaves = reference(x, w, b, conf)  # the same (rounded) values, in float64
    assert out.dtype == dtype
    torch.testing.assert_close(out.cpu().double(), ref, rtol=0, atol=tol * ref.abs().max().item())
    g = torch.randn_like(ref).to(dtype)
    for got, want in zip(grads(out, (x, w, b), g.to(DEVICE)), grads(ref, leaves, g.double())):
        assert got.dtype == dtype
        torch.testing.assert_close(got.cpu().double(), want, rtol=0, atol=tol * want.abs().max().item())


@pytest.mark.parametrize("ndim", [2, 3])
def test_channels_last_input_gives_channels_last_output_and_gradient(ndim):
    case = CASES[3] if ndim == 2 else CASES[4]
    fmt = torch.channels_last if ndim == 2 else torch.channels_last_3d
    (x, w, b), conf = make(case, bias_mode="location")
    x_cl = x.detach().to(memory_format=fmt).requires_grad_()
    out = run(x_cl, w, b, **conf)
    assert out.is_contiguous(memory_format=fmt) and not out.is_contiguous()
    ref, leaves = reference(x, w, b, conf)
    torch.testing.assert_close(out.cpu(), ref)
    g = torch.randn_like(ref)
    got, want = grads(out, (x_cl, w, b), g.to(DEVICE)), grads(ref, leaves, g)
    assert got[0].is_contiguous(memory_format=fmt)
    for a, c in zip(got, want):
        torch.testing.assert_close(a.cpu(), c)


def test_expanded_output_gradient_and_broadcast_weight():
    """``out.sum()`` hands the backward a stride-0 gradient; an expanded weight is not contiguous."""
    (x, w, b), conf = make(CASES[1], bias_mode="shared")
    gx, gw, gb = torch.autograd.grad(run(x, w[:1].expand_as(w), b, **conf).sum(), (x, w, b))
    xr, wr, br = (t.detach().cpu().requires_grad_() for t in (x, w, b))
    rx, rw, rb = torch.autograd.grad(local_conv_reference(xr, wr[:1].expand_as(wr), br, **conf).sum(), (xr, wr, br))
    for a, c in ((gx, rx), (gw, rw), (gb, rb)):
        torch.testing.assert_close(a.cpu(), c)


def test_empty_batch():
    (x, w, b), conf = make(CASES[3], batch=0)
    out = run(x, w, b, **conf)
    assert out.shape == (0, 6, *w.shape[:2])
    gx, gw, gb = grads(out, (x, w, b), torch.ones_like(out))
    assert gx.shape == x.shape and gw.shape == w.shape and not gw.any() and not gb.any()


def test_mixed_dtypes_are_refused_with_an_explanation():
    (x, w, b), conf = make(CASES[0], bias_mode=None)
    with pytest.raises(ArgumentError, match=r"local_conv \(Triton kernels, forward\): expected tensors of one dtype "
                       r"among float16, bfloat16, float32 and float64\. Received: torch\.float64, torch\.float32; "
                       r"convert them with \.to\(dtype\) first"):
        kernels.forward(x.detach(), w.detach().float(), None, *conf.values())
