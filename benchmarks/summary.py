"""How long ``layerlab.summary`` takes on a ResNet-50 (25.6 M params) and a 12-layer transformer (86.4 M).

Each model is summarised in a fresh process (``--rounds`` processes per model), which prints:

- ``import torch``: the seconds ``import torch`` took (not part of the summary's cost);
- ``first``: the first ``summary(model, input_shape)`` of the process, from a model built on the
  meta device. It includes what torch does lazily on its first meta-tensor op: importing
  ``torch._dynamo`` (its type-promotion meta kernels are wrapped in ``torch._disable_dynamo``),
  which any meta-tensor trace pays once per process, with or without layerlab's op recorder;
- ``torch._dynamo``: the seconds of that import alone, measured in a separate process after
  ``import torch``;
- ``again``: a second summary of the same model in the same process (the cost of the trace and
  the counting themselves).

The models are ``benchmarks/summary_models.py``'s ``resnet50`` and ``vit_base`` on ``3x224x224``.
Timings are wall-clock seconds; the median over the rounds is printed. No timing is asserted in
the tests.

Usage: ``python benchmarks/summary.py [--rounds 3] [--threads 2] [--only resnet50]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = ("resnet50", "vit_base")

# run in a fresh interpreter: the times of import torch, the first summary and a second one
CHILD = """
import json, sys, time
start = time.perf_counter()
import torch
imported = time.perf_counter()
torch.set_num_threads({threads})
sys.path.insert(0, {here!r})
from summary_models import MODELS
from layerlab.analysis import summary
build, shape = MODELS[{name!r}]
with torch.device("meta"):
    model = build()
begin = time.perf_counter()
first = summary(model, shape)
middle = time.perf_counter()
summary(model, shape)
end = time.perf_counter()
print(json.dumps({{"import": imported - start, "first": middle - begin, "again": end - middle,
                  "params": first.total.params, "macs": first.total.macs, "rows": len(first.layers)}}))
"""

DYNAMO = """
import json, time
import torch
start = time.perf_counter()
import torch._dynamo
print(json.dumps({"dynamo": time.perf_counter() - start}))
"""


def _run(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per model (default: 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each process (default: 2)")
    parser.add_argument("--only", choices=MODELS, help="time one model (default: both)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.threads < 1:
        parser.error(f"--rounds and --threads must be positive. Received: --rounds {args.rounds} --threads {args.threads}")
    import torch  # here: only for the version line

    print(f"torch {torch.__version__}, python {sys.version.split()[0]}, {args.threads} threads, median of {args.rounds} processes")
    dynamo = statistics.median(_run(DYNAMO)["dynamo"] for _ in range(args.rounds))
    print(f"import torch._dynamo after import torch: {dynamo:.2f} s")
    print(f"{'model':<10} {'params':>12} {'MACs':>16} {'rows':>5} {'import torch':>13} {'first':>7} {'again':>7}")
    for name in (args.only,) if args.only else MODELS:
        runs = [_run(CHILD.format(threads=args.threads, here=str(HERE), name=name)) for _ in range(args.rounds)]
        med = {key: statistics.median(run[key] for run in runs) for key in ("import", "first", "again")}
        info = runs[0]
        print(f"{name:<10} {info['params']:>12,} {info['macs']:>16,} {info['rows']:>5} {med['import']:>12.2f}s "
              f"{med['first']:>6.2f}s {med['again']:>6.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
