"""``layerlab train``: train one zoo model on one data set, with checkpoints and exact resume.

Examples (wall times measured on 2 cores shared with other jobs)::

    layerlab train --model cnn --out runs/cnn            # compare's recipe: 93.3% on MNIST-1D, 43 s
    layerlab train --out runs/cnn --resume                # continue after Ctrl-C, a crash or SIGTERM
    torchrun --nproc_per_node 2 -m layerlab train --model cnn --batch-size 50 --out runs/ddp

A run estimated to take over a minute says so first (from 3 timed steps). Every epoch ends with an
evaluation on the test split, one line on stderr (--no-progress hides it) and, with --out, an atomic checkpoint
(checkpoint.pt), metrics.csv and metrics.json; config.json and args.json hold the resolved recipe
and arguments, written once when the run starts. --out is checked (created, writable, room for the
checkpoints) before anything is loaded, and locked while the run writes: a second run on the same
folder is refused with the first one's pid and command. --resume reads args.json, so only --out is
needed; flags given with --resume override it, and a change that alters the results (lr, epochs,
--model, --width, --limit, other data: the data's SHA-256 is recorded) is refused naming the field.
Resumed runs end bit-identical to uninterrupted ones (same machine, threads and number of processes).

Ctrl-C or SIGTERM finishes the current step, writes a checkpoint and exits (130/143) with the command
that resumes; a NaN/Inf loss stops with a message and keeps the last good checkpoint.

Multi-process (DDP): under torchrun each process trains on its share of every batch; --batch-size is
per process, so the global batch is --batch-size x --nproc_per_node (the 2-process run with
--batch-size 50 matches a 1-process run with --batch-size 100). gloo on CPU, nccl on CUDA; only rank 0
writes files and prints; a dead worker makes the others stop within --ddp-timeout seconds.
"""

from __future__ import annotations

import argparse
import json
import math

from layerlab.cli.helptext import add_command
from layerlab.errors import ArgumentError
from layerlab.train.config import (DEFAULT_RECIPE, DEFAULT_THREADS, MAX_THREADS, check_dataset_argument,
                                   check_threads, default_warmup)

HELP = "train a zoo model with checkpoints, exact --resume, NaN guard and torchrun DDP"

# run arguments besides the TrainConfig fields; those come from DEFAULT_RECIPE, the recipe `compare` uses too
RUN_DEFAULTS = {"dataset": "mnist1d", "limit": None, "model": "cnn", "width": 1.0, "threads": DEFAULT_THREADS}
# run arguments that change the results: --resume refuses a change (the data itself is compared by hash)
IDENTITY = ("limit", "model", "width")


def register(subparsers: argparse._SubParsersAction) -> None:
    d = DEFAULT_RECIPE
    parser = add_command(subparsers, "train", HELP, __doc__)
    # every option defaults to None so that --resume can tell given flags from defaults
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", metavar="NAME|PATH", help="built-in mnist1d, mnist or digits, or a path: IDX "
                      "folder, CIFAR folder, .npz, image folder (default: mnist1d)")
    data.add_argument("--limit", type=int, metavar="N", help="keep at most N samples per split (default: all)")
    model = parser.add_argument_group("model")
    model.add_argument("--model", metavar="NAME", help="zoo model: mlp, cnn, lcn, tiled, lowrank, allconv, logistic, "
                       "... (default: cnn)")
    model.add_argument("--width", type=float, help="zoo width: scales channels and hidden units (default: 1.0)")
    train = parser.add_argument_group("training")
    train.add_argument("--optimizer", choices=("sgd", "adam"), help=f"(default: {d.optimizer})")
    train.add_argument("--lr", type=float, help=f"peak learning rate (default: {d.lr:g})")
    train.add_argument("--momentum", type=float, help=f"SGD momentum (default: {d.momentum:g})")
    train.add_argument("--weight-decay", type=float, help=f"L2 penalty (default: {d.weight_decay:g})")
    train.add_argument("--batch-size", type=int, help=f"samples per step PER PROCESS; global batch = batch size x "
                       f"number of processes (default: {d.batch_size})")
    train.add_argument("--epochs", type=int, help=f"(default: {d.epochs})")
    train.add_argument("--schedule", choices=("cosine", "step", "none"), help=f"lr schedule (default: {d.schedule})")
    train.add_argument("--warmup-epochs", type=int, help=f"linear warmup epochs (default: {d.warmup_epochs}, none with --epochs 1)")
    train.add_argument("--lr-step-size", type=int, help=f"epochs between decays of --schedule step "
                       f"(default: {d.lr_step_size})")
    train.add_argument("--lr-gamma", type=float, help=f"decay factor of --schedule step (default: {d.lr_gamma:g})")
    train.add_argument("--loss", choices=("ce", "bce"), help=f"ce: softmax cross-entropy; bce: sigmoid per class, "
                       f"multi-label (default: {d.loss})")
    train.add_argument("--grad-clip", type=float, metavar="MAX_NORM", help="clip the gradient norm (default: off)")
    train.add_argument("--seed", type=int, help=f"seeds init, data order, torch/numpy/python (default: {d.seed})")
    train.add_argument("--deterministic", action=argparse.BooleanOptionalAction,
                       help="torch.use_deterministic_algorithms(True, warn_only=True) (default: off)")
    system = parser.add_argument_group("system")
    system.add_argument("--device", help=f"auto, cpu, cuda or cuda:N; under torchrun cuda:LOCAL_RANK "
                        f"(default: {d.device})")
    system.add_argument("--threads", type=int, help=f"torch CPU threads per process, 1 to {MAX_THREADS}; the zoo's "
                        f"models are so small that 1 thread beats 2 (default: {DEFAULT_THREADS})")
    system.add_argument("--num-workers", type=int, help=f"data-loader processes (default: {d.num_workers})")
    system.add_argument("--ddp-timeout", type=float, metavar="SECONDS", help=f"how long a process waits for the "
                        f"others before it stops (default: {d.ddp_timeout:g})")
    output = parser.add_argument_group("output")
    output.add_argument("--out", metavar="DIR", help="run folder: checkpoint.pt, metrics.csv/.json, config.json, "
                        "args.json (default: none, nothing is saved)")
    output.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint "
                        "(default: off)")
    output.add_argument("--json", action="store_true", help="print the result as JSON (default: off)")
    output.add_argument("--no-progress", action="store_true", help="hide the progress: a line per epoch on "
                        "stderr, and bars of the steps on a terminal (default: shown)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import os
    import sys
    from pathlib import Path

    import torch

    from layerlab.data import load_dataset
    from layerlab.experiments.estimate import ANNOUNCE_ABOVE_SECONDS, describe_estimate, estimate_seconds, time_step
    from layerlab.train import TrainConfig, TrainingInterrupted, fit, seed_everything
    from layerlab.train.data import steps_per_epoch
    from layerlab.train.rundir import prepare_out_dir, printable
    from layerlab.zoo import build

    out = Path(args.out) if args.out is not None else None
    if args.resume and out is None:
        raise ArgumentError("--resume needs --out DIR, the folder of the run to continue")
    given = {k.replace("-", "_"): v for k, v in vars(args).items() if v is not None}
    saved = _saved_arguments(out / "args.json") if args.resume else {}
    changed = [f"--{k}: run {saved.get(k, RUN_DEFAULTS[k])!r} != now {given[k]!r}" for k in IDENTITY
               if args.resume and k in given and given[k] != saved.get(k, RUN_DEFAULTS[k])]
    if changed:
        raise ArgumentError(f"cannot resume {out}: {'; '.join(changed)}; these change the results; resume with the "
                            "run's own values (omit the flag), or start a new run in another --out folder")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    defaults = {**RUN_DEFAULTS, **DEFAULT_RECIPE.to_dict()}
    resolved = {k: given.get(k, saved.get(k, default)) for k, default in defaults.items()}
    if "warmup_epochs" not in given and "warmup_epochs" not in saved:
        resolved["warmup_epochs"] = default_warmup(resolved["epochs"])
    check_dataset_argument(resolved["dataset"])
    if resolved["threads"] is not None:
        torch.set_num_threads(check_threads(resolved["threads"]))
    config = TrainConfig(**{k: v for k, v in resolved.items() if k in fields})
    rank = int(os.environ.get("RANK", "0"))
    if args.out is not None and rank == 0:
        prepare_out_dir(args.out, needed_bytes=0)  # before loading anything; fit checks room for the checkpoints

    dataset = load_dataset(resolved["dataset"], seed=0, limit=resolved["limit"])
    seed_everything(config.seed)
    model = build(resolved["model"], dataset.input_shape, dataset.num_classes, resolved["width"])
    if rank == 0 and not args.no_progress and not args.resume:
        steps = steps_per_epoch(len(dataset.y_train), config.batch_size, 1) * config.epochs
        seconds = estimate_seconds({"model": time_step(model, dataset, config.batch_size, config.loss)}, ["model"],
                                   steps)
        if seconds > ANNOUNCE_ABOVE_SECONDS:
            print(describe_estimate(seconds), file=sys.stderr, flush=True)
    try:
        result = fit(model, dataset, config, out_dir=out, resume=args.resume, progress=not args.no_progress,
                     args_record=resolved)
    except TrainingInterrupted as err:
        if rank == 0:
            print(f"layerlab train: {err}", file=sys.stderr)
        return 128 + err.signal_number
    if rank != 0:
        return 0
    last = result.history[-1]
    if args.json:
        print(json.dumps({"model": resolved["model"], "dataset": dataset.name, "world_size": result.world_size,
                          "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                          "final": last, "history": result.history, "train_seconds": result.train_seconds,
                          "out_dir": args.out, "checkpoint": str(result.checkpoint) if result.checkpoint else None},
                         indent=2))
    else:
        print(f"{resolved['model']} on {printable(dataset.name)}: test accuracy {100 * last['test_accuracy']:.2f}% "
              f"(loss {last['test_loss']:.4f}) after {last['epoch']} epochs, {result.train_seconds:.1f} s"
              f"{f', {result.world_size} processes' if result.world_size > 1 else ''}"
              f"{f'; run folder {out}' if out else ''}")
    return 0


def _saved_arguments(path) -> dict:
    """The arguments in a run's ``args.json``, checked: a JSON object whose run arguments have the right types.

    The TrainConfig fields are checked when the config is made (``TrainConfig.__post_init__``).
    """
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ArgumentError(f"--resume: cannot read {path} ({err}); is {path.parent} a folder written by "
                            "layerlab train --out?") from err
    if not isinstance(saved, dict):
        raise ArgumentError(f"--resume: {path} must hold a JSON object of arguments. Received: a JSON "
                            f"{type(saved).__name__}; it is damaged; delete the run folder and start a new run")
    where = f"--resume: {path}"
    if "dataset" in saved:
        check_dataset_argument(saved["dataset"], f"{where}: ")
    if saved.get("threads") is not None:
        check_threads(saved["threads"], f"{where}: ")
    limit, model, width = (saved.get(k, RUN_DEFAULTS[k]) for k in ("limit", "model", "width"))
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ArgumentError(f"{where}: limit must be null or a positive integer. Received: {limit!r}")
    if not isinstance(model, str):
        raise ArgumentError(f"{where}: model must be a zoo name. Received: {model!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise ArgumentError(f"{where}: width must be a number > 0. Received: {width!r}")
    return saved
