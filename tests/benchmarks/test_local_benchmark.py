"""``benchmarks/local.py``: its argument errors (timings are never asserted in tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "local.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_device_cuda_without_a_gpu_exits_with_an_explanation(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cuda", "--quick", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "--device cuda: expected a CUDA GPU visible to torch, found torch.cuda.is_available() == False" in result.stderr
    assert "or use --device cpu" in result.stderr
    assert not (tmp_path / "out").exists()
