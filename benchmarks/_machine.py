"""What the benchmarks of ``benchmarks/`` share about the machine: the CPU's name, the device asked
for, and wall-clock timing that waits for queued CUDA work.

The scripts import it as ``_machine`` (their folder is on ``sys.path`` when run as
``python benchmarks/NAME.py``)."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``; exits with an explanation when CUDA is asked for but torch sees no GPU."""
    if name == "cuda" and not torch.cuda.is_available():
        build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise SystemExit(
            f"--device cuda: expected a CUDA GPU visible to torch, found torch.cuda.is_available() == False "
            f"(torch {torch.__version__}, {build}). Run on a machine with an NVIDIA GPU and a CUDA build "
            "of torch (check nvidia-smi and CUDA_VISIBLE_DEVICES), or use --device cpu."
        )
    return torch.device(name)


def sync(device: torch.device) -> None:
    """Wait for the queued CUDA work on ``device``; nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def wall_seconds(fn, device: torch.device) -> float:
    """Wall seconds of ``fn()``; on CUDA the device is synchronized before both clock readings."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start
