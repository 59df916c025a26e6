"""Correctness of ``layerlab.functional.local_conv`` on every path.

References: ``local_conv_reference`` (naive float64 loops, shares no code with the op),
``torch.nn.functional.conv*d`` (a local op whose filters are all one conv filter is that conv) and
float64 ``gradcheck``. Paths: the C++ kernel sets (float32/float64 on CPU: "rows", positions along
the SIMD lanes; "direct", channels along the lanes and one small GEMM per position over buffered
input rows; and "gemm", one BLAS GEMM per position; ``use_kernel`` forces one, and every test that
forces one asserts that the forward and both gradients run on it) and the pure-torch kernels
(fallback, bfloat16, CUDA), compared with the references and with each other. Which set serves a
call: the kernel-choice rule in the docstring of ``layerlab/functional/local.py``.
"""

from __future__ import annotations

import contextlib
import platform
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from layerlab.errors import ArgumentError, ShapeError
from layerlab.functional import _local_ext, _local_torch, local_conv
from layerlab.functional.local import _LocalConvFunction, _backend, _cpp_available
from layerlab.functional.reference import local_conv_reference
from local_cases import make, out_size_of

CPP = _local_ext.load()
needs_cpp = pytest.mark.skipif(not CPP, reason="the C++ kernels could not be built here")
# the rows and direct kernels need x86-64 with AVX2 + FMA
AVX2 = CPP and platform.machine() in ("x86_64", "AMD64") and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
needs_avx2 = pytest.mark.skipif(not AVX2, reason="the rows and direct kernels need x86-64 with AVX2 and FMA")
PATHS = ["rows", "direct", "gemm", "torch"]
OPS = ["forward", "weight_grad", "input_grad"]

# ndim, in_size, c_in, c_out, kernel, stride, padding, dilation, groups
CASES = [
    (1, (11,), 4, 6, (3,), (2,), (1,), (1,), 2),  # floor drops the last input element
    (1, (9,), 3, 2, (4,), (1,), (2,), (2,), 1),
    (2, (7, 8), 3, 4, (3, 2), (1, 2), (0, 1), (1, 1), 1),
    (2, (9, 10), 4, 6, (3, 3), (2, 3), (1, 2), (2, 1), 2),  # floor drops rows and columns
    (2, (6, 6), 6, 3, (1, 1), (1, 1), (0, 0), (1, 1), 3),  # 1x1 kernel, depthwise-like groups
    (3, (5, 6, 5), 2, 4, (2, 3, 2), (1, 2, 2), (1, 0, 1), (1, 1, 2), 2),
]
# stride 1 along the last dimension: the row kernels apply. Output widths that leave a partial
# vector (8 float / 4 double lanes), padding, dilation and stride along the other dimensions,
# groups, and K = C_g * prod(kernel) that leave 3-, 2- and 1-wide register-tile remainders.
ROW_CASES = [
    (1, (21,), 1, 5, (3,), (1,), (2,), (2,), 1),  # out 21, K 3
    (2, (7, 13), 4, 6, (3, 3), (2, 1), (1, 1), (1, 2), 2),  # out (4, 11), K 18
    (2, (6, 9), 2, 5, (2, 3), (1, 1), (0, 2), (2, 1), 1),  # out (4, 11), K 12, C_out 5
    (3, (4, 5, 10), 2, 4, (2, 2, 3), (2, 1, 1), (1, 0, 1), (1, 2, 1), 2),  # out (3, 3, 10)
    (2, (5, 5), 7, 4, (1, 1), (1, 1), (0, 0), (1, 1), 1),  # out width 5, K 7
]
# The direct kernels' register tiles in float64 (V = 4 lanes): 28 output channels make a 4-vector
# and a 3-vector tile in the forward and dW (3 window elements per dW tile: K = 2 x 3), 28 input
# channels the same in dX; 4 samples make a 3-sample tile and a 1-sample one.
DIRECT_CASES = [
    (1, (6,), 2, 28, (3,), (1,), (1,), (1,), 1),
    (1, (6,), 28, 2, (3,), (1,), (1,), (1,), 1),
]


def applies(path, case):
    """Whether ``path``, forced, serves ``case`` (a contiguous input): rows needs stride 1 along the last
    dimension; direct, gemm and torch serve every contiguous input."""
    return path != "rows" or case[5][-1] == 1


def on_paths(cases, paths=PATHS):
    """``(case, path)`` pairs for the paths that serve each case."""
    return [(case, path) for case in cases for path in paths if applies(path, case)]


def case_id(case):
    return f"{case[0]}d-{case[1]}-c{case[2]}-{case[3]}-s{case[5]}-p{case[6]}-d{case[7]}-g{case[8]}"


@contextlib.contextmanager
def threads(n):
    """``torch.set_num_threads(n)`` inside the block."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _automatic_kernel_choice():
    """Tests that force a C++ kernel set (``kernels_of``) or the BLAS fallback leave the automatic
    choice and the BLAS behind."""
    if CPP:
        torch.ops.layerlab_local.ran()  # a test's ran() sees only its own calls
    yield
    if CPP:
        torch.ops.layerlab_local.use_kernel("auto")
        torch.ops.layerlab_local.use_blas(True)


def kernels_of(name):
    """The kernels of path ``name``; "rows"/"direct"/"gemm" also set the C++ ops' preference for the test."""
    if name == "torch":
        return _local_torch
    if not CPP:
        pytest.skip("the C++ kernels could not be built here")
    if name in ("rows", "direct") and not AVX2:
        pytest.skip(f"the {name} kernels need x86-64 with AVX2 and FMA")
    torch.ops.layerlab_local.use_kernel(name)
    return torch.ops.layerlab_local


def kernel_paths(case, dtype, memory_format=torch.contiguous_format):
    """The C++ kernel sets that the forward, weight_grad and input_grad ops pick for ``case`` under the
    current preference."""
    ndim, size, c_in, c_out, kernel, stride, padding, dilation, groups = case
    out = out_size_of(size, kernel, stride, padding, dilation)
    x = torch.empty(1, c_in, *size, dtype=dtype).to(memory_format=memory_format)
    weight_size = [*out, groups, c_in // groups, *kernel, c_out // groups]
    args = (weight_size, list(stride), list(padding), list(dilation), groups)
    return [torch.ops.layerlab_local.path(x, *args, op) for op in OPS]


def run(name, x, w, b, stride, padding, dilation, groups):
    """``local_conv`` forced onto one path; a forced C++ kernel set must serve the forward and both
    gradients (else the test would silently check another set)."""
    kernels = kernels_of(name)
    if name != "torch":
        args = (list(w.shape), list(stride), list(padding), list(dilation), groups)
        chosen = [torch.ops.layerlab_local.path(x, *args, op) for op in OPS]
        assert chosen == [name] * 3, f"use_kernel({name!r}), but forward, weight_grad, input_grad take {chosen}"
    return _LocalConvFunction.apply(x, w, b, list(stride), list(padding), list(dilation), groups, kernels)


def assert_ran(name):
    """The forward and both gradient ops of the C++ kernels ran on ``name`` since the last ``ran()``."""
    if name != "torch":
        assert torch.ops.layerlab_local.ran() == [name] * 3


def grads(out, tensors, grad):
    present = [t for t in tensors if t is not None]
    return torch.autograd.grad(out, present, grad)


@pytest.mark.parametrize("bias_mode", [None, "shared", "location"])
@pytest.mark.parametrize("case, path", on_paths(CASES + ROW_CASES + DIRECT_CASES), ids=lambda p: p if isinstance(p, str) else case_id(p))
def test_forward_and_gradients_match_loop_reference(case, bias_mode, path):
    (x, w, b), conf = make(case, batch=7 if case not in DIRECT_CASES else 4, bias_mode=bias_mode)
    ref = local_conv_reference(x, w, b, **conf)
    out = run(path, x, w, b, **conf)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    for got, want in zip(grads(out, (x, w, b), g), grads(ref, (x, w, b), g)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert_ran(path)


GRADCHECK_CASES = [
    (1, (7,), 2, 4, (3,), (2,), (1,), (1,), 2),
    (2, (5, 6), 2, 2, (2, 3), (2, 1), (1, 0), (1, 2), 1),
    (3, (3, 4, 3), 2, 2, (2, 2, 1), (1, 2, 1), (0, 1, 0), (1, 1, 1), 2),
]


@pytest.mark.parametrize(
    "case, path", on_paths(GRADCHECK_CASES + ROW_CASES[:2] + DIRECT_CASES), ids=lambda p: p if isinstance(p, str) else case_id(p)
)
def test_gradcheck_float64(case, path):
    (x, w, b), conf = make(case, batch=2, bias_mode="location")
    assert torch.autograd.gradcheck(lambda *t: run(path, *t, **conf), (x, w, b))
    (x, w, b), conf = make(case, batch=2, bias_mode="shared")
    assert torch.autograd.gradcheck(lambda *t: run(path, *t, **conf), (x, w, b))


@pytest.mark.parametrize(
    "case, path", on_paths(GRADCHECK_CASES + ROW_CASES[:1] + DIRECT_CASES[:1]),
    ids=lambda p: p if isinstance(p, str) else case_id(p),
)
def test_gradgradcheck_float64(case, path):
    """Second derivatives (the backward is itself differentiable): every pair of input, weight,
    bias and output gradient, checked against finite differences."""
    (x, w, b), conf = make(case, batch=2, bias_mode="location")
    assert torch.autograd.gradgradcheck(lambda *t: run(path, *t, **conf), (x, w, b))


def test_gradient_penalty_through_the_layer_matches_the_reference():
    """d/dW of ||d out / d x||² — the double backward a WGAN-GP style penalty takes."""
    (x, w, b), conf = make(ROW_CASES[1], batch=3, bias_mode="shared")

    def penalty_grads(fn):
        gx = torch.autograd.grad(fn(x, w, b, **conf).square().sum(), x, create_graph=True)[0]
        return torch.autograd.grad(gx.square().sum(), (x, w))

    for got, want in zip(penalty_grads(local_conv), penalty_grads(local_conv_reference)):
        torch.testing.assert_close(got, want)


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


# float32 cases large enough for several position tiles, direct and staged layouts, groups; the
# last one has enough samples, window elements and output channels for several sample chunks,
# window-element chunks and weight-pack chunks in the row kernels, and a partial vector per row
PATH_CASES = [
    (2, (20, 20), 3, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1),  # 400 positions: several tiles
    (2, (13, 11), 4, 8, (3, 3), (2, 1), (0, 2), (1, 2), 4),
    (1, (300,), 2, 4, (5,), (1,), (2,), (1,), 2),
    (3, (6, 7, 5), 4, 4, (3, 2, 3), (1, 1, 2), (1, 1, 1), (1, 2, 1), 2),
    (2, (6, 11), 64, 120, (3, 3), (1, 1), (0, 0), (1, 1), 1),  # K 576: several K chunks
]


@needs_cpp
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("case, kernel", on_paths(PATH_CASES, ["rows", "direct", "gemm"]), ids=lambda p: p if isinstance(p, str) else case_id(p))
def test_cpp_path_equals_torch_path_float32(case, n_threads, kernel):
    with threads(n_threads):
        big = case is PATH_CASES[-1]  # sums of 576 (forward) and 1080 (dx) float32 products
        (x, w, b), conf = make(case, batch=40 if big else 5, dtype=torch.float32)  # 40: dW in 2 sample chunks
        out_cpp = run(kernel, x, w, b, **conf)
        out_torch = run("torch", x, w, b, **conf)
        tol = 2e-4 if big else 1e-5
        torch.testing.assert_close(out_cpp, out_torch, rtol=tol, atol=tol)
        g = torch.randn_like(out_cpp)
        for a, c in zip(grads(out_cpp, (x, w, b), g), grads(out_torch, (x, w, b), g)):
            torch.testing.assert_close(a, c, rtol=10 * tol, atol=10 * tol)


@needs_cpp
@pytest.mark.parametrize("kernel", ["rows", "direct", "gemm"])
def test_cpp_backward_is_deterministic(kernel):
    (x, w, b), conf = make(PATH_CASES[0], batch=7, dtype=torch.float32)
    g = torch.randn(7, 8, 20, 20)
    first = grads(run(kernel, x, w, b, **conf), (x, w, b), g)
    second = grads(run(kernel, x, w, b, **conf), (x, w, b), g)
    for a, c in zip(first, second):
        assert torch.equal(a, c)


@needs_avx2
@pytest.mark.parametrize("dtype, lanes", [(torch.float32, 8), (torch.float64, 4)], ids=["float32", "float64"])
def test_kernel_choice_follows_the_rule_of_local_py(dtype, lanes):
    """The kernel-choice rule of ``layerlab/functional/local.py``'s docstring, at its boundaries, for
    the forward, weight_grad and input_grad ops (in that order)."""

    def case(c_in=2, c_out=2, width=10, stride=1, groups=1):  # output width ``width``
        return (2, (5, (width - 1) * stride + 3), c_in, c_out, (3, 3), (1, stride), (0, 0), (1, 1), groups)

    def paths(*args, memory_format=torch.contiguous_format, **kwargs):
        return kernel_paths(case(*args, **kwargs), dtype, memory_format)

    v = lanes
    # direct: >= 4 vectors of lane channels, per group: output channels for the forward and
    # weight_grad, input channels for input_grad
    assert paths(c_out=4 * v) == ["direct", "direct", "rows"]
    assert paths(c_out=4 * v - 1) == ["rows", "rows", "rows"]
    assert paths(c_in=4 * v) == ["rows", "rows", "direct"]
    assert paths(c_in=4 * v - 1) == ["rows", "rows", "rows"]
    assert paths(c_in=8 * v, c_out=8 * v, groups=2) == ["direct"] * 3
    assert paths(c_in=8 * v, c_out=8 * v, groups=4) == ["rows"] * 3
    # ... any stride
    assert paths(c_out=4 * v, stride=2) == ["direct", "direct", "gemm"]
    # rows: stride 1 along the last dimension and an output width >= V / 2
    assert paths(width=v // 2) == ["rows"] * 3
    assert paths(width=v // 2 - 1) == ["gemm"] * 3
    assert paths(width=1, c_out=4 * v) == ["direct", "direct", "gemm"]
    assert paths(stride=2) == ["gemm"] * 3
    assert kernel_paths(CASES[3], dtype) == ["gemm"] * 3  # stride along both dimensions
    # channels_last: gemm, whatever the channels
    cl = torch.channels_last
    assert paths(c_in=4 * v, c_out=4 * v, memory_format=cl) == ["gemm"] * 3
    # the preferences of use_kernel
    ops = torch.ops.layerlab_local
    assert ops.use_kernel("direct") == "auto"
    assert paths() == ["direct"] * 3 and paths(stride=2, width=1) == ["direct"] * 3
    assert paths(memory_format=cl) == ["gemm"] * 3
    assert ops.use_kernel("rows") == "direct"
    assert paths(c_in=4 * v, c_out=4 * v, width=1) == ["rows"] * 3
    assert paths(stride=2) == ["gemm"] * 3 and paths(memory_format=cl) == ["gemm"] * 3
    assert ops.use_kernel("gemm") == "rows"
    assert paths(c_in=4 * v, c_out=4 * v) == ["gemm"] * 3
    assert ops.use_kernel("auto") == "gemm"


@needs_avx2
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_path_names_the_kernel_set_each_op_runs(dtype):
    """``path(..., op)`` (the choice) against ``ran()`` (what the three ops then ran), on calls whose
    forward and input gradient take different sets, and on each of the three sets."""
    ops = torch.ops.layerlab_local
    wide = 32 if dtype == torch.float32 else 16
    cases = [
        (2, (5, 12), 2, wide, (3, 3), (1, 1), (0, 0), (1, 1), 1),  # direct, direct, rows
        (2, (5, 12), wide, 2, (3, 3), (1, 1), (1, 0), (1, 1), 1),  # rows, rows, direct
        (2, (5, 12), 2 * wide, 4, (3, 3), (1, 2), (0, 0), (1, 1), 2),  # gemm, gemm, direct
        CASES[3],  # gemm
    ]
    seen = set()
    for case in cases:
        for memory_format in (torch.contiguous_format, torch.channels_last):
            (x, w, b), conf = make(case, batch=3, dtype=dtype)
            x, w, b = x.detach().to(memory_format=memory_format), w.detach(), b.detach()
            args = [list(conf["stride"]), list(conf["padding"]), list(conf["dilation"]), conf["groups"]]
            ops.ran()
            out = ops.forward(x, w, b, *args)
            ops.weight_grad(out, x, list(w.shape), *args)
            ops.input_grad(out, w, x, *args)
            chosen = kernel_paths(case, dtype, memory_format)
            assert ops.ran() == chosen, (case, memory_format)
            seen.update(chosen)
    assert seen == {"direct", "rows", "gemm"}
    assert ops.ran() == ["", "", ""]  # read once


@needs_cpp
def test_path_rejects_unknown_ops():
    x = torch.empty(1, 3, 8, 8)
    with pytest.raises(RuntimeError, match=r"path expects op 'forward', 'weight_grad' or 'input_grad', got 'backward'"):
        torch.ops.layerlab_local.path(x, [6, 6, 1, 3, 3, 3, 4], [1, 1], [0, 0], [1, 1], 1, "backward")


# The row kernels' backward packs the output gradient a whole output row at a time when a row has
# >= 4 blocks (kGradRowBlocks) and the packed row fits 2 MiB, else block by block: float32 cases on
# each side (out 300: 38 blocks per row; out 40 with 512 channels: 5 blocks, a 2.7 MB row).
GRAD_ROW_CASES = [
    (PATH_CASES[2], 5),  # packed by row, groups 2
    ((1, (40,), 1, 512, (3,), (1,), (1,), (1,), 1), 32),  # row over the cap: packed by block
    ((2, (6, 33), 3, 8, (3, 3), (1, 1), (0, 0), (1, 1), 1), 9),  # 2-d: 4 blocks per row, the last partial
]


@needs_avx2
@pytest.mark.parametrize("case, batch", GRAD_ROW_CASES, ids=["by-row", "by-block", "by-row-2d"])
def test_row_backward_with_dy_packed_by_row_or_by_block(case, batch):
    """Same gradients as the pure-torch path, and the same bits on 1 and 2 threads."""
    (x, w, b), conf = make(case, batch=batch, dtype=torch.float32)
    g = torch.randn(batch, case[3], *out_size_of(case[1], case[4], case[5], case[6], case[7]))
    want = grads(run("torch", x, w, b, **conf), (x, w, b), g)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(grads(run("rows", x, w, b, **conf), (x, w, b), g))
    finally:
        torch.set_num_threads(previous)
    for one, two, ref in zip(*results, want):
        assert torch.equal(one, two)
        torch.testing.assert_close(one, ref, rtol=1e-4, atol=1e-4)


# The direct kernels buffer the input rows of a chunk of samples within 512 KiB (forward) or 1 MiB
# (weight gradient): 200-wide rows of 64 channels x 3 taps take 150 KiB per sample, so 7 samples go
# in chunks of 3, 3, 1 and 6, 1; on 2 threads the 6 output rows are split into column ranges too.
@needs_avx2
@pytest.mark.parametrize("threads", [1, 2])
def test_direct_kernels_in_sample_chunks(threads):
    case = (2, (6, 200), 64, 40, (3, 3), (1, 1), (1, 0), (1, 1), 1)
    (x, w, b), conf = make(case, batch=7, dtype=torch.float32, bias_mode="location")
    g = torch.randn(7, 40, *out_size_of(case[1], case[4], case[5], case[6], case[7]))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = run("direct", x, w, b, **conf)
        got = (out, *grads(out, (w,), g))
        out = run("torch", x, w, b, **conf)
        want = (out, *grads(out, (w,), g))
    finally:
        torch.set_num_threads(previous)
    for a, c in zip(got, want):
        torch.testing.assert_close(a, c, rtol=2e-4, atol=2e-4)


def assert_input_grad_splits(kernel, case, batch):
    """dx of ``kernel`` on 1-4 threads: close to the pure-torch path, and the same bits each time."""
    (x, w, b), conf = make(case, batch=batch, dtype=torch.float32)
    g = torch.randn(batch, case[3], *out_size_of(case[1], case[4], case[5], case[6], case[7]))
    want = grads(run("torch", x, w, b, **conf), (x,), g)[0]
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3, 4):
            torch.set_num_threads(threads)
            results.append(grads(run(kernel, x, w, b, **conf), (x,), g)[0])
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(results[0], want, rtol=1e-4, atol=1e-4)
    for other in results[1:]:
        assert torch.equal(results[0], other)


# The direct input gradient sums into a channels-last buffer of at most 8 MiB per task and splits
# dx between threads by slices of >= 4 vectors of input channels, else by ranges of input rows,
# else by samples. 1-d, 4096 positions x 64 channels take 1 MiB per sample: 10 samples go in chunks
# of 8 and 2 on 1 thread; the 8 channel vectors are split 4 + 4 on 2 and 3 threads, and into 2
# channel x 2 sample slices on 4. 2-d, 32 channels per group (4 vectors, one slice), stride 2 and
# dilation 2 down the rows: 12 input rows split in 2, 3 and 4 ranges, output rows reaching over the
# range boundaries.
@needs_avx2
@pytest.mark.parametrize(
    "case, batch",
    [((1, (4096,), 64, 8, (3,), (1,), (1,), (1,), 1), 10), ((2, (12, 20), 64, 8, (3, 3), (2, 1), (1, 1), (2, 1), 2), 7)],
    ids=["1d-chunks-channels", "2d-row-ranges"],
)
def test_direct_input_grad_in_chunks_and_slices(case, batch):
    assert_input_grad_splits("direct", case, batch)


# The row kernels' input gradient splits dx between threads by input channels where each thread
# gets >= 4 of them (kSliceChannels), else by samples, and by both with more threads than slices:
# 9 channels per group give 2 uneven channel slices (4 + 5) on 2 threads, and 2 x 2 on 4 threads.
@needs_avx2
def test_row_input_grad_split_by_channels_and_samples():
    assert_input_grad_splits("rows", (2, (7, 13), 18, 6, (3, 3), (1, 1), (1, 0), (1, 1), 2), 6)


# Every sum runs in a fixed order, whatever the number of threads. The threads split the work of
# this case differently on 1-4 threads: direct: output rows into column ranges (forward), input
# channel slices (dX: 8 float32 or 16 float64 vectors of 64 channels); rows: blocks, channel slices
# (dX); gemm: position tiles (forward, dW) and 3 sample chunks of 13 (dX).
@needs_cpp
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kernel", ["direct", "rows", "gemm"])
def test_every_kernel_set_gives_the_same_bits_on_1_to_4_threads(kernel, dtype):
    case = (2, (6, 11), 64, 40, (3, 3), (1, 1), (1, 0), (1, 1), 1)
    (x, w, b), conf = make(case, batch=39, dtype=dtype)
    g = torch.randn(39, 40, 6, 9, dtype=dtype)
    results = []
    for n in (1, 2, 3, 4):
        with threads(n):
            out = run(kernel, x, w, b, **conf)
            results.append((out, *grads(out, (x, w, b), g)))
        assert_ran(kernel)
    for other in results[1:]:
        for one, this in zip(results[0], other):
            assert torch.equal(one, this)


@pytest.mark.parametrize("path", PATHS)
def test_non_finite_values_stay_where_they_belong(path):
    """A NaN or inf in the input or the output gradient reaches exactly the outputs and gradients
    that depend on it: the unused lanes of partial vectors never leak into neighbours."""
    case = ROW_CASES[1]
    (x, w, b), conf = make(case, batch=4, bias_mode="location")
    x = x.detach().clone()
    x[1, 2, 3, 10] = float("nan")
    x[2, 0, 0, 0] = float("inf")
    x.requires_grad_()
    ref = local_conv_reference(x, w, b, **conf)
    out = run(path, x, w, b, **conf)
    assert torch.equal(out.isnan(), ref.isnan()) and torch.equal(out.isinf(), ref.isinf())
    g = torch.randn_like(ref)
    g[1, 3, 2, 10] = float("nan")  # the last valid lane of a row's partial vector
    g[3, 0, 1, 7] = float("inf")  # the last lane of a full vector (float32) next to the partial one
    for got, want in zip(grads(out, (x, w, b), g), grads(ref, (x, w, b), g)):
        assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.isinf(), want.isinf())


@needs_cpp
def test_use_kernel_rejects_unknown_names():
    with pytest.raises(RuntimeError, match=r"use_kernel expects 'auto', 'rows', 'gemm' or 'direct', got 'fast'"):
        torch.ops.layerlab_local.use_kernel("fast")
    assert torch.ops.layerlab_local.use_kernel("gemm") == "auto"
    assert torch.ops.layerlab_local.use_kernel("auto") == "gemm"


@needs_cpp
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["staged", "in-place"])
def test_gemm_kernels_without_blas_match_the_loop_reference(memory_format):
    """Where libtorch_cpu exports no sgemm_/dgemm_, the gemm kernels multiply with at::mm on views of
    their buffers; ``use_blas(False)`` takes that fallback here, where a BLAS is exported. The output
    blocks are staged for a contiguous output and written in place into a channels_last one."""
    ops = torch.ops.layerlab_local
    assert ops.has_blas()  # without one, every other gemm test runs the fallback already
    assert ops.use_blas(False) is True
    (x, w, b), conf = make(CASES[3], batch=5, bias_mode="location")
    x_in = x.detach().to(memory_format=memory_format).requires_grad_()
    ref = local_conv_reference(x, w, b, **conf)
    out = run("gemm", x_in, w, b, **conf)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    for got, want in zip(grads(out, (x_in, w, b), g), grads(ref, (x, w, b), g)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert_ran("gemm")
    assert ops.use_blas(True) is False


@pytest.mark.parametrize("path", ["gemm", "torch"])  # the kernels that serve channels_last inputs
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


def test_cpp_available_carries_the_mark_of_assume_constant_result():
    """local.py sets by hand the mark that torch.compiler.assume_constant_result sets (the public
    decorator imports torch._dynamo); if torch changes that mark, this test says so."""

    def probe():
        return True

    marks = vars(torch.compiler.assume_constant_result(probe))
    assert marks and all(getattr(_cpp_available, name, None) == value for name, value in marks.items())


def test_backend_is_cpp_for_cpu_float32_float64_when_built():
    for dtype in (torch.float32, torch.float64):
        assert _backend(torch.zeros(1, dtype=dtype)) is (torch.ops.layerlab_local if CPP else _local_torch)
    assert _backend(torch.zeros(1, dtype=torch.bfloat16)) is _local_torch


@needs_cpp
def test_import_skips_dynamo_and_a_traced_first_call_uses_cpp():
    """``import layerlab.nn`` does not import torch._dynamo (~1.5 s); in a fresh process whose first
    ``local_conv`` call is traced by torch.compile(fullgraph=True), the graph calls the C++ op."""
    code = (
        "import sys\n"
        "import torch\n"
        "import layerlab.nn\n"
        "from layerlab.functional import local_conv\n"
        "assert 'torch._dynamo' not in sys.modules, 'import layerlab.nn imported torch._dynamo'\n"
        "graphs = []\n"
        "def backend(gm, inputs):\n"
        "    graphs.append(gm.print_readable(print_output=False))\n"
        "    return gm.forward\n"
        "x, w = torch.randn(2, 3, 8, 8), torch.randn(6, 6, 1, 3, 3, 3, 4)\n"
        "out = torch.compile(lambda x, w: local_conv(x, w), fullgraph=True, backend=backend)(x, w)\n"
        "assert torch.equal(out, local_conv(x, w))\n"
        "assert 'torch.ops.layerlab_local.forward' in graphs[0], graphs[0]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


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
        (dict(stride=0), r"local_conv: stride must be positive integers\. Received: stride=0"),
        (dict(dilation=(1, 0)), r"local_conv: dilation must be positive integers\. Received: dilation=\(1, 0\)"),
        (dict(padding=-1), r"local_conv: padding must be non-negative integers\. Received: padding=-1"),
        (dict(stride=(1, 1, 1)), r"local_conv: stride must be an int or a tuple of 2 ints\. "
                                 r"Received: stride=\(1, 1, 1\)"),
        (dict(dilation=1.5), r"local_conv: dilation must be an int or a tuple of 2 ints\. Received: dilation=1\.5"),
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


@pytest.mark.parametrize("path", PATHS)
def test_expanded_output_gradient_from_sum(path):
    """``out.sum().backward()`` hands the backward a stride-0 gradient; it must be read correctly."""
    (x, w, b), conf = make(ROW_CASES[1], bias_mode="shared")
    gx, gw, gb = torch.autograd.grad(run(path, x, w, b, **conf).sum(), (x, w, b))
    rx, rw, rb = torch.autograd.grad(local_conv_reference(x, w, b, **conf).sum(), (x, w, b))
    for a, c in ((gx, rx), (gw, rw), (gb, rb)):
        torch.testing.assert_close(a, c)
