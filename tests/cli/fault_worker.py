"""A `layerlab` CLI child process with a fault on demand, for the tests of real kills and signals.

    python fault_worker.py slow SECONDS -- ARGV...        # zoo model "slow": the mlp, sleeping SECONDS per step
    python fault_worker.py hang-checkpoint -- ARGV...     # the 2nd checkpoint write stalls after its first chunk

``hang-checkpoint`` writes half the bytes of the second checkpoint into its temporary file, then
sleeps in 0.1 s slices for up to a minute: time for the parent to send SIGKILL or two SIGINTs.
"""

from __future__ import annotations

import sys
import time

from torch import nn

from layerlab.cli.main import main
from layerlab.train import checkpoint
from layerlab.zoo import MODELS, build


class Slow(nn.Module):
    """The zoo mlp, sleeping ``sleep`` seconds per training step (state dict keys ``net.*``)."""

    def __init__(self, input_shape, num_classes, sleep: float = 0.0) -> None:
        super().__init__()
        self.net = build("mlp", input_shape, num_classes)
        self.sleep = sleep

    def forward(self, x):
        if self.training and self.sleep:
            time.sleep(self.sleep)
        return self.net(x)


def register_slow(sleep: float) -> None:
    MODELS["slow"] = lambda shape, classes, width: Slow(shape, classes, sleep)


def _hang_on_second_checkpoint() -> None:
    real = checkpoint._write
    calls = {"n": 0}

    def write(file, data):
        calls["n"] += 1
        if calls["n"] < 2:
            return real(file, data)
        file.write(data[: len(data) // 2])
        file.flush()
        for _ in range(600):
            time.sleep(0.1)
        return real(file, data)

    checkpoint._write = write


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    if mode == "slow":
        register_slow(float(sys.argv[2]))
    elif mode == "hang-checkpoint":
        _hang_on_second_checkpoint()
    sys.exit(main(rest))
