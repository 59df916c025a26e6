"""Low-rank locally connected 2-d layer against the convolution it is built on, side by side in one process.

Implementations (same input, float32, on ``--device`` (CPU by default), input requires grad so dX and
every parameter gradient are computed):

  lowrank     ``layerlab.LowRankLocallyConnected2d(C, O, k, rank=R)`` (factorized softmax combining
              weights, per-basis bias): one ``F.conv2d`` with ``R·O`` outputs, then the per-position mix
  conv-Rx     ``torch.nn.Conv2d(C, R·O, k)``: the convolution inside ``lowrank``, alone (the target:
              ``lowrank`` within 1.5× of its time)
  conv        ``torch.nn.Conv2d(C, O, k)``: full sharing, the same output shape
  local       ``layerlab.LocallyConnected2d(C, O, k)``: no sharing, the same output shape

Timing: rounds interleave the implementations (noise on a shared machine hits all alike); each number
is the min and the median over ``--repeats`` rounds, after ``--warmup`` rounds, of one forward+backward
step (and of the forward alone); on CUDA the device is synchronized before both clock readings.
The ratios printed are of medians: ``lowrank / conv-Rx`` is the cost of the mix.

Usage:
    python benchmarks/lowrank.py --quick            # < ~1 min on 2 cores: rank 4, fewer rounds
    python benchmarks/lowrank.py --ranks 2 4 8      # the full table (docs/benchmarks.md)
    python benchmarks/lowrank.py --device cuda
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
from pathlib import Path

import torch
from _machine import cpu_model, resolve_device, wall_seconds
from torch import nn

import layerlab

# name: (B, C_in, C_out, H, W, k); stride 1, padding 0 (the shapes of benchmarks/local.py)
SHAPES = {
    "a": (64, 3, 32, 32, 32, 3),
    "b": (64, 32, 64, 16, 16, 3),
    "c": (128, 1, 16, 28, 28, 5),
}
IMPLS = ["lowrank", "conv-Rx", "conv", "local"]
TARGET = 1.5  # lowrank / conv-Rx








def build(name: str, shape, rank: int, device: torch.device) -> nn.Module:
    """The module ``name`` for ``shape = (B, C_in, C_out, H, W, k)`` on ``device``."""
    _, c, o, h, w, k = shape
    if name == "lowrank":
        return layerlab.LowRankLocallyConnected2d(c, o, k, rank, input_size=(h, w), device=device)
    if name == "conv-Rx":
        return nn.Conv2d(c, rank * o, k, device=device)
    if name == "conv":
        return nn.Conv2d(c, o, k, device=device)
    return layerlab.LocallyConnected2d(c, o, k, input_size=(h, w), device=device)


def measure(shape, rank: int, impls, device: torch.device, repeats: int, warmup: int) -> dict:
    """Min and median milliseconds of the forward and of forward+backward, per implementation."""
    torch.manual_seed(0)
    b, c, _, h, w, _ = shape
    x = torch.randn(b, c, h, w, device=device, requires_grad=True)
    modules = {name: build(name, shape, rank, device) for name in impls}
    grads = {}
    for name, module in modules.items():
        with torch.no_grad():
            grads[name] = torch.randn_like(module(x))

    def step(name):
        x.grad = None
        modules[name].zero_grad(set_to_none=True)
        modules[name](x).backward(grads[name])

    def forward(name):
        with torch.no_grad():
            modules[name](x)

    times = {name: {"fwd": [], "fwdbwd": []} for name in impls}
    for round_ in range(warmup + repeats):
        for name in impls:
            fwd = wall_seconds(lambda name=name: forward(name), device)
            fwdbwd = wall_seconds(lambda name=name: step(name), device)
            if round_ >= warmup:
                times[name]["fwd"].append(1e3 * fwd)
                times[name]["fwdbwd"].append(1e3 * fwdbwd)
    return {
        name: {f"{kind}_{stat}": fn(values) for kind, values in t.items()
               for stat, fn in (("min", min), ("median", statistics.median))}
        for name, t in times.items()
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run = parser.add_argument_group("run")
    run.add_argument("--quick", action="store_true", help="rank 4 only, 5 rounds (default: off)")
    run.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run (default: cpu)")
    run.add_argument("--threads", type=int, default=1, help="CPU threads, ignored on CUDA (default: 1)")
    run.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES), help="shapes (default: a b c)")
    run.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8], help="ranks R (default: 2 4 8)")
    run.add_argument("--repeats", type=int, default=None, help="timed rounds (default: 5 quick, 11 full)")
    run.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default: 2)")
    run.add_argument("--no-local", action="store_true", help="leave out LocallyConnected2d (default: include it)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", type=Path, default=None, help="also write the report to this JSON file (default: none)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    ranks = [4] if args.quick else args.ranks
    repeats = args.repeats or (5 if args.quick else 11)
    impls = [name for name in IMPLS if not (args.no_local and name == "local")]
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "python": platform.python_version(), "device": str(device),
        "hardware": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "threads": None if device.type == "cuda" else args.threads,
        "load_average": [round(v, 1) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "repeats": repeats, "warmup": args.warmup, "results": [],
    }
    print(f"{report['date']}  torch {report['torch']}  {report['hardware']}  threads {report['threads']}  "
          f"load {report['load_average']}")
    print("ms per step, median (min); ratios of medians; target lowrank/conv-Rx <= "
          f"{TARGET} (forward+backward)")
    for shape_name in args.shapes:
        shape = SHAPES[shape_name]
        for rank in ranks:
            res = measure(shape, rank, impls, device, repeats, args.warmup)
            report["results"].append({"shape": shape_name, "dims": list(shape), "rank": rank, "times": res})
            print(f"\nshape {shape_name} (B, C_in, C_out, H, W, k) = {shape}, rank {rank}")
            for name in impls:
                s = res[name]
                print(f"  {name:8s} fwd {s['fwd_median']:8.2f} ({s['fwd_min']:7.2f})   "
                      f"fwd+bwd {s['fwdbwd_median']:8.2f} ({s['fwdbwd_min']:7.2f})")
            ratio = {kind: res["lowrank"][f"{kind}_median"] / res["conv-Rx"][f"{kind}_median"]
                     for kind in ("fwd", "fwdbwd")}
            line = f"  lowrank / conv-Rx: fwd {ratio['fwd']:.2f}×, fwd+bwd {ratio['fwdbwd']:.2f}×"
            for other in ("conv", "local"):
                if other in res:
                    line += f"; lowrank / {other}: {res['lowrank']['fwdbwd_median'] / res[other]['fwdbwd_median']:.2f}×"
            print(line)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
