"""How long a run of trainings will take, from a few timed steps, before it starts.

The estimate of one training is ``step_seconds × steps`` with ``steps = ceil(N / batch) × epochs``
training steps (evaluation adds ~10 %, the allowance below); a step is timed as the median of
:data:`TIMED_STEPS` forward + backward + Adam passes on one batch, after one untimed step (the first
pays one-time costs: kernel compilation, allocator warm-up).

Examples:
    >>> estimate_seconds({"mlp": 0.01, "cnn": 0.03}, ["mlp", "cnn", "cnn"], steps=600)
    46.2
    >>> describe_estimate(79.2)
    'estimated ~1.3 min for the whole run (from 3 timed steps per model)'
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from layerlab.data import Dataset
from layerlab.train.metrics import loss_and_correct

__all__ = ["TIMED_STEPS", "ANNOUNCE_ABOVE_SECONDS", "time_step", "estimate_seconds", "describe_estimate"]

TIMED_STEPS = 3
# a run estimated to take longer than this announces its estimate
ANNOUNCE_ABOVE_SECONDS = 60.0
# evaluation on the test split after every epoch, as a share of the training steps' time
_EVALUATION_ALLOWANCE = 1.1


def time_step(model: nn.Module, data: Dataset, batch_size: int, loss: str = "ce") -> float:
    """Seconds of one training step of ``model`` on a ``(batch_size, *input_shape)`` batch of ``data``.

    The model's weights are restored afterwards, so the timing does not change the training. On
    the CPU, in the process's threads: the estimate of a run on another device is that of a CPU run.
    """
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.as_tensor(data.x_train[:batch_size])  # (B, *input_shape)
    y = torch.as_tensor(data.y_train[:batch_size])  # (B,)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.0)
    seconds = []
    model.train()
    for _ in range(TIMED_STEPS + 1):
        started = time.perf_counter()
        value, _ = loss_and_correct(model(x), y, loss)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - started)
    model.load_state_dict(state)
    return statistics.median(seconds[1:])


def estimate_seconds(step_seconds: dict[str, float], trainings: list[str], steps: int) -> float:
    """Seconds for ``trainings`` (one model name per training) of ``steps`` steps each, given each
    model's ``step_seconds``, with the evaluation allowance; rounded to 0.1 s."""
    return round(sum(step_seconds[name] for name in trainings) * steps * _EVALUATION_ALLOWANCE, 1)


def describe_estimate(seconds: float) -> str:
    """The line a command prints before a long run."""
    return f"estimated ~{seconds / 60:.1f} min for the whole run (from {TIMED_STEPS} timed steps per model)"
