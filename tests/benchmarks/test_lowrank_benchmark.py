"""``benchmarks/lowrank.py``: its structure on a tiny shape (timings are never asserted in tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "lowrank.py"


def load_script():
    spec = importlib.util.spec_from_file_location("lowrank_benchmark_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_measure_times_every_implementation_on_the_same_output_shape():
    bench = load_script()
    shape = (2, 3, 4, 7, 7, 3)  # B, C_in, C_out, H, W, k
    modules = {name: bench.build(name, shape, 2, torch.device("cpu")) for name in bench.IMPLS}
    x = torch.randn(2, 3, 7, 7)
    assert modules["conv-Rx"](x).shape == (2, 8, 5, 5)  # rank × the output channels
    assert {name: tuple(m(x).shape) for name, m in modules.items() if name != "conv-Rx"} == {
        "lowrank": (2, 4, 5, 5), "conv": (2, 4, 5, 5), "local": (2, 4, 5, 5)}
    res = bench.measure(shape, 2, bench.IMPLS, torch.device("cpu"), repeats=1, warmup=0)
    assert set(res) == set(bench.IMPLS)
    assert set(res["lowrank"]) == {"fwd_min", "fwd_median", "fwdbwd_min", "fwdbwd_median"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_device_cuda_without_a_gpu_exits_with_an_explanation():
    with pytest.raises(SystemExit, match=r"--device cuda: expected a CUDA GPU visible to torch"):
        load_script().main(["--device", "cuda", "--quick"])
