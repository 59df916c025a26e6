"""A tiny deterministic training job, used in-process by the tests and as a child process.

Run as a script (the way ``torchrun`` starts a worker: ``RANK``/``WORLD_SIZE``/``MASTER_*`` in the
environment) it trains with checkpoints in ``--out``::

    python train_worker.py --out DIR [--epochs 3] [--step-sleep 0.0] [--die-at-step N] [--ddp-timeout 60]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from layerlab.errors import LayerlabError
from layerlab.train import TrainConfig, TrainingInterrupted, fit

FEATURES, CLASSES = 16, 4


def tiny_data(n_train: int = 256, n_test: int = 64, seed: int = 0) -> SimpleNamespace:
    """Inputs ``(N, 1, 16)`` labelled by a random linear teacher (learnable, not trivial)."""
    rng = np.random.default_rng(seed)
    teacher = rng.normal(size=(FEATURES, CLASSES))
    x = rng.normal(size=(n_train + n_test, 1, FEATURES)).astype(np.float32)
    y = (x[:, 0] @ teacher).argmax(axis=1).astype(np.int64)
    return SimpleNamespace(name="tiny", x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
                           y_test=y[n_train:])


class TinyNet(nn.Module):
    """Flatten → Linear(16, 32) → ReLU → Linear(32, 4), with faults on demand at a training step.

    ``signal_at_step``: send SIGTERM to this process during that step (1-based, counted per process);
    ``die_at_step``: SIGKILL this process then; ``nan_at_step``: output NaN then;
    ``step_sleep``: seconds to sleep per step (gives a parent time to send signals).
    """

    def __init__(self, seed: int = 0, step_sleep: float = 0.0, die_at_step: int | None = None,
                 signal_at_step: int | None = None, nan_at_step: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, CLASSES))
        self.step_sleep, self.die_at_step, self.calls = step_sleep, die_at_step, 0
        self.signal_at_step, self.nan_at_step = signal_at_step, nan_at_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.training:
            self.calls += 1
            if self.calls == self.die_at_step:
                os.kill(os.getpid(), signal.SIGKILL)  # a worker dying without a word
            if self.calls == self.signal_at_step:
                os.kill(os.getpid(), signal.SIGTERM)
            if self.calls == self.nan_at_step:
                out = out * float("nan")
            time.sleep(self.step_sleep)
        return out


def config(epochs: int = 3, batch_size: int = 16, **overrides) -> TrainConfig:
    recipe = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "seed": 1, "device": "cpu", **overrides}
    return TrainConfig(epochs=epochs, batch_size=batch_size, **recipe)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--step-sleep", type=float, default=0.0)
    parser.add_argument("--die-at-step", type=int, default=None)
    parser.add_argument("--ddp-timeout", type=float, default=60.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))
    model = TinyNet(step_sleep=args.step_sleep, die_at_step=args.die_at_step if rank == 1 else None)
    try:
        fit(model, tiny_data(), config(args.epochs, ddp_timeout=args.ddp_timeout), out_dir=args.out, progress=False)
    except TrainingInterrupted as err:
        print(err, file=sys.stderr)
        return 128 + err.signal_number
    except LayerlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
