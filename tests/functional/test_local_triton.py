"""The Triton kernels of ``local_conv`` (``_local_triton``) and the choice of kernels for CUDA tensors.

The kernels themselves are checked by ``local_triton_cases.py``, run here in subprocesses: with
``TRITON_INTERPRET=1`` (the Triton interpreter, on CPU tensors; everywhere) and, where torch sees
a CUDA GPU, compiled on the GPU. Subprocesses because the interpreter is a process-wide mode of
triton, fixed when triton is imported (its own ``tl`` functions are decorated then), so it can
neither be switched on in this process, where torch.compile may already have imported triton, nor
be left on for the tests that follow. The interpreter runs every ``tl`` op of every program in
Python: the cases are tiny, and split in two runs of about equal length that pytest-xdist can spread.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from layerlab.functional import _local_torch
from layerlab.functional import local as local_module

HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install layerlab[gpu])")
ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).with_name("local_triton_cases.py")


def run_cases(selection: str | None, interpret: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "PYTEST_ADDOPTS")}
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)]
    if selection:
        command += ["-k", selection]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    summary = output.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary and "error" not in summary, output


@needs_triton
@pytest.mark.slow
@pytest.mark.parametrize("selection", ["reference or test_gradcheck", "not (reference or test_gradcheck)"],
                         ids=["reference-gradcheck", "gradgradcheck-dtypes-layouts-edges"])
def test_kernels_in_the_triton_interpreter(selection):
    run_cases(selection, interpret=True)


@needs_triton
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_kernels_compiled_on_the_gpu():
    run_cases(None, interpret=False)


# ---- which kernels -------------------------------------------------------------------------------


@needs_triton
def test_cuda_tensors_use_the_triton_kernels_only_when_the_environment_asks(monkeypatch):
    """Opt-in (``LAYERLAB_CUDA_KERNELS=triton``) until the kernels have run on a GPU."""
    from layerlab.functional import _local_triton

    for value in ("triton", "TRITON", " triton "):
        monkeypatch.setenv("LAYERLAB_CUDA_KERNELS", value)
        for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            assert local_module._select("cuda", dtype) is _local_triton
    monkeypatch.delenv("LAYERLAB_CUDA_KERNELS")
    assert local_module._select("cuda", torch.float32) is _local_torch
    for value in ("torch", "", "cuda"):
        monkeypatch.setenv("LAYERLAB_CUDA_KERNELS", value)
        assert local_module._select("cuda", torch.float32) is _local_torch


def test_cuda_tensors_use_the_torch_kernels_without_triton(monkeypatch):
    monkeypatch.setenv("LAYERLAB_CUDA_KERNELS", "triton")
    monkeypatch.setitem(local_module._TRITON, "ok", False)
    assert local_module._select("cuda", torch.float32) is _local_torch


def test_cpu_choice_does_not_depend_on_triton_or_the_environment(monkeypatch):
    cpp = torch.ops.layerlab_local if local_module._cpp_available() else _local_torch
    for value in (None, "torch", "triton"):
        if value is None:
            monkeypatch.delenv("LAYERLAB_CUDA_KERNELS", raising=False)
        else:
            monkeypatch.setenv("LAYERLAB_CUDA_KERNELS", value)
        assert local_module._backend(torch.zeros(1)) is cpp
        assert local_module._backend(torch.zeros(1, dtype=torch.float64)) is cpp
        assert local_module._backend(torch.zeros(1, dtype=torch.bfloat16)) is _local_torch


def test_triton_is_imported_lazily_and_its_absence_means_the_torch_kernels():
    """``import layerlab`` and CPU calls never import triton; without triton, CUDA picks pure torch."""
    code = (
        "import sys\n"
        "import torch\n"
        "import layerlab, layerlab.nn\n"
        "from layerlab.functional import local_conv\n"
        "local_conv(torch.randn(2, 3, 8, 8), torch.randn(6, 6, 1, 3, 3, 3, 4))\n"
        "assert 'triton' not in sys.modules, 'triton imported'\n"
        "sys.modules['triton'] = None  # import triton now raises ImportError\n"
        "from layerlab.functional import local, _local_torch\n"
        "assert local._select('cuda', torch.float32) is _local_torch\n"
        "assert 'layerlab.functional._local_triton' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LAYERLAB_CUDA_KERNELS"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr


def test_asking_for_triton_without_triton_warns_once_and_uses_the_torch_kernels():
    code = (
        "import sys, warnings\n"
        "import torch\n"
        "sys.modules['triton'] = None  # import triton now raises ImportError\n"
        "from layerlab.functional import local, _local_torch\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    assert local._select('cuda', torch.float32) is _local_torch\n"
        "    assert local._select('cuda', torch.float32) is _local_torch\n"
        "messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]\n"
        "assert len(messages) == 1, messages\n"
        "print(messages[0])\n"
    )
    env = {**os.environ, "LAYERLAB_CUDA_KERNELS": "triton"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert "LAYERLAB_CUDA_KERNELS=triton, but triton cannot be imported" in result.stdout
    assert "pip install layerlab[gpu]" in result.stdout


# ---- launch parameters ---------------------------------------------------------------------------


@needs_triton
def test_float32_dot_is_ieee_unless_torch_allows_tf32():
    from layerlab.functional import _local_triton

    previous = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        assert {_local_triton._precision(t) for t in (torch.float16, torch.bfloat16, torch.float32, torch.float64)} == {"ieee"}
        torch.backends.cuda.matmul.allow_tf32 = True
        assert _local_triton._precision(torch.float32) == "tf32"
        assert _local_triton._precision(torch.float64) == "ieee"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


@needs_triton
def test_blocks_are_powers_of_two_of_at_least_16():
    from layerlab.functional import _local_triton

    assert [_local_triton._block(n, 64) for n in (0, 1, 16, 17, 33, 64, 65, 1000)] == [16, 16, 16, 32, 64, 64, 64, 64]
    assert _local_triton._block(1000, 32) == 32
