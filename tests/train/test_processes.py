"""Training across processes: SIGTERM to a child, a killed DDP rank.

2 processes against 1 with the same global batch: tests/cli/test_train.py (through torchrun).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from layerlab.train import fit
from train_worker import TinyNet, config, tiny_data

WORKER = Path(__file__).with_name("train_worker.py")


def start(out: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), "--out", str(out), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        pytest.fail(f"worker hung for {timeout} s; stderr:\n{stderr}")
    return process.returncode, stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ddp_env(rank: int, world_size: int, port: int) -> dict:
    return {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_WORLD_SIZE":
            str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}


def test_sigterm_to_a_training_child_leaves_a_checkpoint_that_resumes_exactly(tmp_path):
    out = tmp_path / "run"
    child = start(out, "--epochs", "3", "--step-sleep", "0.03")
    deadline = time.monotonic() + 120  # generous: a loaded machine can take 20 s just to import torch
    while not (out / "metrics.json").exists():  # epoch 1 is done and checkpointed
        if child.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"child ended or stalled before epoch 1: {finish(child)}")
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    returncode, stderr = finish(child)
    assert returncode == 128 + signal.SIGTERM, stderr
    assert "training stopped by SIGTERM at epoch 2, step" in stderr or "at the end of epoch" in stderr, stderr
    assert f"checkpoint written to {out / 'checkpoint.pt'}; continue with `layerlab train --out {out} --resume`" in stderr

    resumed, straight = TinyNet(), TinyNet()
    fit(resumed, tiny_data(), config(epochs=3), out_dir=out, resume=True, progress=False)
    fit(straight, tiny_data(), config(epochs=3), progress=False)
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


def test_a_killed_rank_makes_the_other_exit_with_a_message(tmp_path):
    port = free_port()
    ranks = [start(tmp_path, "--die-at-step", "5", "--ddp-timeout", "60", env=ddp_env(r, 2, port)) for r in range(2)]
    dead_code, _ = finish(ranks[1], timeout=120)
    died = time.monotonic()
    survivor_code, survivor_err = finish(ranks[0], timeout=90)
    assert dead_code == -signal.SIGKILL
    assert survivor_code == 2, survivor_err
    assert "error: rank 0 of 2: a collective operation failed (" in survivor_err
    assert ("another worker has probably died or hung past ddp_timeout — check its log, then restart all workers "
            "with --resume") in survivor_err
    assert time.monotonic() - died < 60 + 15  # ddp_timeout at worst (a closed socket is seen at once) + exit
