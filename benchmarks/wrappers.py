"""Overhead of layerlab's torch-subclass layers over the torch layers they extend.

layerlab's Conv/pool/norm/Dense/Flatten layers run torch's forward inside ``try`` and only
diagnose the input when torch raises: the success path costs nothing for the layers that repeat
torch's one-line forward, and one extra Python call for BatchNorm and ConvTranspose. This script
times each pair in one process, interleaving the two so that machine noise hits both alike, and
prints the time ratio layerlab / torch of the fastest rounds and the median of the per-round ratios
(target: ≤ 1.03).

Usage: ``python benchmarks/wrappers.py [--rounds 100] [--threads 2] [--only Conv]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import layerlab

# name, layerlab layer, torch layer, input shape; sizes are typical of small CNNs/MLPs on a CPU
CASES = [
    ("Dense 512->512, B=64", lambda: layerlab.Dense(512, in_features=512), lambda: nn.Linear(512, 512), (64, 512)),
    ("Dense lazy 512->512, B=64", lambda: layerlab.Dense(512), lambda: nn.LazyLinear(512), (64, 512)),
    ("Conv2d 32->64 k3, 16x16, B=32", lambda: layerlab.Conv2d(32, 64, 3, padding=1), lambda: nn.Conv2d(32, 64, 3, padding=1), (32, 32, 16, 16)),
    ("Conv1d 16->32 k5, L=128, B=32", lambda: layerlab.Conv1d(16, 32, 5), lambda: nn.Conv1d(16, 32, 5), (32, 16, 128)),
    ("ConvTranspose2d 64->32 k4 s2, 8x8, B=32", lambda: layerlab.ConvTranspose2d(64, 32, 4, 2, 1), lambda: nn.ConvTranspose2d(64, 32, 4, 2, 1), (32, 64, 8, 8)),
    ("MaxPool2d 2, 32x32x32, B=32", lambda: layerlab.MaxPool2d(2), lambda: nn.MaxPool2d(2), (32, 32, 32, 32)),
    ("AvgPool2d 2, 32x32x32, B=32", lambda: layerlab.AvgPool2d(2), lambda: nn.AvgPool2d(2), (32, 32, 32, 32)),
    ("BatchNorm2d 32, 16x16, B=32", lambda: layerlab.BatchNorm2d(32), lambda: nn.BatchNorm2d(32), (32, 32, 16, 16)),
    ("LayerNorm 256, B=64x16", lambda: layerlab.LayerNorm(256), lambda: nn.LayerNorm(256), (64, 16, 256)),
    ("GroupNorm 8x32, 16x16, B=32", lambda: layerlab.GroupNorm(8, 32), lambda: nn.GroupNorm(8, 32), (32, 32, 16, 16)),
    ("Flatten 64x8x8, B=64", lambda: layerlab.Flatten(), lambda: nn.Flatten(), (64, 64, 8, 8)),
    ("ReLU 64x32x32, B=32", lambda: layerlab.ReLU(), lambda: nn.ReLU(), (32, 64, 32, 32)),
    ("GlobalAvgPool 64x8x8, B=64", lambda: layerlab.GlobalAvgPool(), lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), (64, 64, 8, 8)),
]


def _time(module: nn.Module, x: torch.Tensor, calls: int, backward: bool) -> float:
    """Seconds per call, averaged over ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        out = module(x)
        if backward:
            out.sum().backward()
    return (time.perf_counter() - start) / calls


def measure(ours: nn.Module, theirs: nn.Module, x: torch.Tensor, rounds: int, backward: bool) -> tuple[float, float, float]:
    """Fastest seconds per call of both modules and the median of the per-round ratios.

    The two are timed back to back in every round (alternating which goes first), so a slow spell
    of a shared machine hits both. Two estimates of the overhead: the ratio of the fastest rounds
    (the cost without interference) and the median of the per-round ratios.
    """
    ours(x), theirs(x)  # materialise lazy layers, warm up
    theirs.load_state_dict(ours.state_dict())
    per_call = _time(theirs, x, 3, backward)
    calls = max(3, int(0.005 / max(per_call, 1e-7)))  # about 5 ms per timing
    a, b = [], []
    for i in range(rounds):
        first, second = (ours, theirs) if i % 2 == 0 else (theirs, ours)
        t1 = _time(first, x, calls, backward)
        t2 = _time(second, x, calls, backward)
        a.append(t1 if first is ours else t2)
        b.append(t2 if first is ours else t1)
    return min(a), min(b), statistics.median(x / y for x, y in zip(a, b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_argument_group("timing")
    group.add_argument("--rounds", type=int, default=100, help="interleaved timing rounds per case (default: 100)")
    group.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all cores)")
    group.add_argument("--only", default="", help="run only the cases whose name contains this text (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.rounds} interleaved rounds; µs per call in the "
          "fastest round; ratios layerlab/torch of the fastest rounds (best) and median of per-round ratios (median)")
    print(f"{'layer':42s} {'mode':9s} {'torch µs':>10s} {'layerlab µs':>12s} {'best':>7s} {'median':>7s}")
    worst = 0.0
    for name, make_ours, make_theirs, shape in CASES:
        if args.only not in name:
            continue
        ours, theirs = make_ours(), make_theirs()
        x = torch.randn(*shape)
        for mode, backward in (("forward", False), ("fwd+bwd", True)):
            if backward and not any(True for _ in ours.parameters()):
                x.requires_grad_(True)
            t_ours, t_theirs, ratio = measure(ours, theirs, x, args.rounds, backward)
            best = t_ours / t_theirs
            worst = max(worst, best)
            print(f"{name:42s} {mode:9s} {t_theirs * 1e6:10.1f} {t_ours * 1e6:12.1f} {best:7.3f} {ratio:7.3f}", flush=True)
    print(f"worst best-round ratio: {worst:.3f} (target ≤ 1.03)")


if __name__ == "__main__":
    main()
