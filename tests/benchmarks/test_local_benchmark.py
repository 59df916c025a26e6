"""``benchmarks/local.py``: its argument errors (timings are never asserted in tests)."""

from __future__ import annotations

import importlib.util
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


def load_script():
    spec = importlib.util.spec_from_file_location("local_benchmark_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_triton_kernels_run_only_on_cuda_and_torch_kernels_on_cuda_only_beside_them(monkeypatch):
    """On CPU: no layerlab-triton; on CUDA: layerlab-triton where triton imports, and layerlab-torch
    only where ``layerlab`` itself runs other kernels (else it would time the same code twice)."""
    bench = load_script()
    info = bench.shape_info(bench.SHAPES["c"])
    cpu, cuda = torch.device("cpu"), torch.device("cuda")

    def chosen(device, quick=False, shape="c"):
        return [n for n in bench.IMPLS if bench.runs(n, info, quick, shape, 1.0, 2.0, device)]

    assert "layerlab-triton" not in chosen(cpu)
    assert "layerlab-torch" in chosen(cpu) and "layerlab-torch" not in chosen(cpu, quick=True, shape="a")
    has_triton = importlib.util.find_spec("triton") is not None
    monkeypatch.delenv("LAYERLAB_CUDA_KERNELS", raising=False)  # default on CUDA: layerlab = pure torch
    assert ("layerlab-triton" in chosen(cuda)) == has_triton
    assert "layerlab-torch" not in chosen(cuda)
    monkeypatch.setenv("LAYERLAB_CUDA_KERNELS", "triton")  # layerlab = Triton where it imports
    assert ("layerlab-torch" in chosen(cuda)) == has_triton


def test_measure_shape_reports_extra_memory_as_peak_minus_the_produced_tensors():
    """A tiny run of the measuring code (structure only: timings are never asserted)."""
    bench = load_script()
    shape = (2, 3, 4, 7, 7, 3)  # B, C_in, C_out, H, W, k
    res = bench.measure_shape("tiny", shape, ["layerlab", "conv"], torch.device("cpu"), 1, repeats=1, warmup=0)
    b, c, o, h, w, k = shape
    local_params = (h - k + 1) * (w - k + 1) * (c * k * k * o + o)  # weight + per-location bias
    conv_params = c * k * k * o + o
    produced = {"layerlab": local_params, "conv": conv_params}
    for name, n_params in produced.items():
        floats = b * o * (h - k + 1) * (w - k + 1) + b * c * h * w + n_params  # output, dX, dW
        assert res[name]["produced_mib"] == pytest.approx(floats * 4 / 2**20)
        if res[name]["peak_mib"] is not None:
            assert res[name]["extra_mib"] == pytest.approx(res[name]["peak_mib"] - res[name]["produced_mib"])
        assert len(res[name]["fwdbwd_runs"]) == 1
    report = {"device": "cpu", "threads": {"1": {"limits": {"sgemm_gflops": 1.0, "copy_gbps": 1.0},
              "shapes": {"tiny": {"impls": res, "roofline": bench.roofline(bench.shape_info(shape), {"sgemm_gflops": 1.0, "copy_gbps": 1.0}), "macs": 0}}}}}
    table = bench.markdown(report)
    assert "extra MiB (peak − output, dX, dW)" in table
    assert table.count("| tiny | layerlab |") == 1 and table.count("| tiny | conv |") == 1
