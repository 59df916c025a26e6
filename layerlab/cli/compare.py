"""``layerlab compare``: which layer type for my data? Dense vs conv vs local vs all-conv, with and
without shuffled positions; or, with --sweep sharing, accuracy against how much the layer shares.

Examples (wall times on 2 cores)::

    layerlab compare --out runs/compare                 # the main job: MNIST-1D, 8 trainings, ~1 min
    layerlab compare --dataset mnist --seeds 3 --epochs 10 --out runs/mnist        # 24 trainings, 15 min
    layerlab compare --dataset path/to/data.npz --model mlp,cnn --no-permute-pixels --json
    layerlab compare --sweep sharing --dataset poskeys --out runs/poskeys   # 42 trainings, ~10 min

--sweep sharing trains the axis convolution (cnn) -> tiled (--tiles) -> low-rank locally connected
(--ranks) -> locally connected (lcn), all with cnn's skeleton at the cnn's MACs and one recipe,
3 seeds by default, and plots test accuracy against the number of independent filter banks
(sharing.png). Each finished training is saved to DIR/runs.jsonl at once; --resume continues a
stopped sweep in the same --out.

A run estimated to take over a minute says so first (from 3 timed steps of each model).

Each model is trained on the data and (by default) again on the data with its positions shuffled by
one fixed permutation (train and test alike). A dense network does not care; a convolution loses its
prior. The table shows model, positions (original/shuffled), parameters, MACs per sample, train
time and test accuracy (mean ± std over seeds). A model that fails (an exception, a NaN loss) is
reported and the others finish; the exit code is then 1. See docs/compare.md.

--out is checked before any training (created, writable, room for the files) and locked for the
run (a second run on the same folder is refused with the first one's pid and command). If the files
still cannot be written after training, the table (or --json) is printed anyway, the files go to a
new temporary folder, and the error names both folders (exit 2).
"""

from __future__ import annotations

import argparse

from layerlab.cli.helptext import add_command

HELP = "train dense, conv, local and all-conv nets on your data, with and without shuffled positions"


def register(subparsers: argparse._SubParsersAction) -> None:
    # torch-free: --help stays fast
    from layerlab.experiments.defaults import (
        DEFAULT_MODELS, DEFAULT_RANKS, DEFAULT_RECIPE, DEFAULT_SWEEP_SEEDS, DEFAULT_TILES, SWEEPS,
    )
    from layerlab.train.config import DEFAULT_THREADS, MAX_THREADS

    parser = add_command(subparsers, "compare", HELP, __doc__)
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default="mnist1d", metavar="NAME|PATH",
                      help="built-in mnist1d, mnist or digits, or a path: IDX folder, CIFAR folder, .npz, image "
                           "folder (default: mnist1d)")
    data.add_argument("--limit", type=int, default=None, metavar="N",
                      help="keep at most N samples per split, a seeded subset (default: all)")
    models = parser.add_argument_group("models")
    models.add_argument("--model", dest="models", default=None, metavar="A,B,...",
                        help=f"zoo names, comma-separated; train --model takes one; not with --sweep (default: "
                             f"{','.join(DEFAULT_MODELS)})")
    # the former spelling, kept hidden for one release
    models.add_argument("--models", dest="models", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    size = models.add_mutually_exclusive_group()
    size.add_argument("--width", type=float, default=1.0, help="zoo width of every model (default: 1.0)")
    size.add_argument("--params", type=int, default=None, metavar="N",
                      help="give each model the width that brings it closest to N parameters (default: off, use "
                           "--width)")
    experiment = parser.add_argument_group("experiment")
    experiment.add_argument("--permute-pixels", action=argparse.BooleanOptionalAction, default=True,
                            help="also train every model on positions shuffled by one fixed permutation (default: on)")
    experiment.add_argument("--permutation-seed", type=int, default=0,
                            help="seed of the position permutation (default: 0)")
    experiment.add_argument("--seeds", type=int, default=None, metavar="N",
                            help=f"seeds per model: init and data order 0..N-1 (default: 1; {DEFAULT_SWEEP_SEEDS} with "
                                 f"--sweep)")
    sweep = parser.add_argument_group("sweep")
    sweep.add_argument("--sweep", choices=SWEEPS, default=None,
                       help="train the sharing axis cnn -> tiled -> lowrank -> lcn instead of --model and plot "
                            "accuracy against filter banks (default: off)")
    sweep.add_argument("--tiles", type=_int_list, default=None, metavar="T,...",
                       help=f"tile sizes of the tiled points, each >= 2; none leaves them out (default: "
                            f"{','.join(map(str, DEFAULT_TILES))})")
    sweep.add_argument("--ranks", type=_int_list, default=None, metavar="R,...",
                       help=f"ranks of the lowrank points, each >= 2; none leaves them out (default: "
                            f"{','.join(map(str, DEFAULT_RANKS))})")
    sweep.add_argument("--resume", action="store_true",
                       help="continue the sweep saved in --out: keep its finished trainings, train the others "
                            "(default: off)")
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=DEFAULT_RECIPE.epochs,
                       help=f"epochs per training (default: {DEFAULT_RECIPE.epochs})")
    train.add_argument("--batch-size", type=int, default=DEFAULT_RECIPE.batch_size,
                       help=f"samples per step (default: {DEFAULT_RECIPE.batch_size})")
    train.add_argument("--lr", type=float, default=DEFAULT_RECIPE.lr,
                       help=f"peak learning rate: {DEFAULT_RECIPE.warmup_epochs} warmup epoch (none with --epochs 1) "
                            f"then cosine decay (default: {DEFAULT_RECIPE.lr:g})")
    train.add_argument("--optimizer", choices=("adam", "sgd"), default=DEFAULT_RECIPE.optimizer,
                       help=f"optimizer; sgd uses momentum 0.9 (default: {DEFAULT_RECIPE.optimizer})")
    train.add_argument("--weight-decay", type=float, default=DEFAULT_RECIPE.weight_decay,
                       help=f"L2 penalty (default: {DEFAULT_RECIPE.weight_decay:g})")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    train.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                       help=f"torch CPU threads, 1 to {MAX_THREADS}; the default models are so small that 1 thread "
                            f"beats 2, by far on a busy machine (docs/compare.md) (default: {DEFAULT_THREADS})")
    output = parser.add_argument_group("output")
    output.add_argument("--out", default=None, metavar="DIR",
                        help="write args.json, results.json/.csv, runs.csv, history.csv and 3 PNG plots here "
                             "(default: none, print only)")
    output.add_argument("--json", action="store_true",
                        help="print the JSON document (docs/compare.md) instead of the table (default: off)")
    parser.set_defaults(func=run)


def _int_list(text: str) -> tuple[int, ...]:
    """``"2,4"`` → ``(2, 4)``, ``"none"`` → ``()`` (argparse type of --tiles and --ranks; the sweep checks the
    values)."""
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 2,4, or none. Received: "
                                         f"{text!r}") from None


def run(args: argparse.Namespace) -> int:
    import contextlib
    import dataclasses

    from layerlab.errors import ArgumentError
    from layerlab.experiments.defaults import (
        DEFAULT_MODELS, DEFAULT_RANKS, DEFAULT_RECIPE, DEFAULT_SWEEP_SEEDS, DEFAULT_TILES,
    )
    from layerlab.experiments.report import SWEEP_PLOTS, expected_output_bytes
    from layerlab.train.config import check_dataset_argument, check_threads, default_warmup
    from layerlab.train.rundir import lock_out_dir, prepare_out_dir

    check_threads(args.threads)
    check_dataset_argument(args.dataset)
    if args.sweep is None:
        unused = [flag for flag, on in (("--tiles", args.tiles is not None), ("--ranks", args.ranks is not None),
                                        ("--resume", args.resume)) if on]
        if unused:
            raise ArgumentError(f"{', '.join(unused)} belong(s) to --sweep. Received: {' '.join(unused)} without "
                                f"--sweep; add --sweep sharing or leave them out")
        args.models = ",".join(DEFAULT_MODELS) if args.models is None else args.models
        args.seeds = 1 if args.seeds is None else args.seeds
    else:
        given = [flag for flag, on in (("--model", args.models is not None), ("--params", args.params is not None))
                 if on]
        if given:
            raise ArgumentError(f"--sweep {args.sweep} trains its own models (cnn, tiled, lowrank, lcn at the cnn's "
                                f"MACs). Received: {' '.join(given)}; leave it out (--width scales them all)")
        if args.resume and args.out is None:
            raise ArgumentError("--resume continues the sweep saved in --out. Received: --resume without --out; "
                                "add --out DIR")
        args.seeds = DEFAULT_SWEEP_SEEDS if args.seeds is None else args.seeds
        args.tiles = DEFAULT_TILES if args.tiles is None else args.tiles
        args.ranks = DEFAULT_RANKS if args.ranks is None else args.ranks
    recipe = dataclasses.replace(DEFAULT_RECIPE, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                 optimizer=args.optimizer, weight_decay=args.weight_decay, device=args.device,
                                 warmup_epochs=default_warmup(args.epochs))
    with contextlib.ExitStack() as stack:
        if args.out is not None:
            if args.sweep is None:
                models, plots = len(args.models.split(",")), 3
            else:
                models, plots = 2 + len(args.tiles) + len(args.ranks), SWEEP_PLOTS
            trainings = models * (2 if args.permute_pixels else 1) * max(args.seeds, 1)
            out = prepare_out_dir(args.out, needed_bytes=expected_output_bytes(trainings, args.epochs, plots))
            stack.enter_context(lock_out_dir(out))
        return _train_and_report(args, recipe)


def _train_and_report(args: argparse.Namespace, recipe) -> int:
    import json
    import sys
    import tempfile
    import time

    import torch
    from rich.console import Console

    from layerlab.errors import LayerlabError
    from layerlab.experiments import (
        compare_table, run_compare, run_sweep, sweep_table, write_outputs, write_sweep_outputs,
    )

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    torch.set_num_threads(args.threads)
    if args.sweep is None:
        result = run_compare(args.dataset, models=args.models, permute_pixels=args.permute_pixels, seeds=args.seeds,
                             width=args.width, params=args.params, recipe=recipe,
                             permutation_seed=args.permutation_seed, limit=args.limit, log=log)
        trainings, write, table = result, write_outputs, compare_table
    else:
        result = run_sweep(args.dataset, sweep=args.sweep, tiles=args.tiles, ranks=args.ranks, seeds=args.seeds,
                           width=args.width, recipe=recipe, permute_pixels=args.permute_pixels,
                           permutation_seed=args.permutation_seed, limit=args.limit, out_dir=args.out,
                           resume=args.resume, log=log)
        trainings, write, table = result.compare, write_sweep_outputs, sweep_table
    files, out_dir, lost = [], args.out, None
    if args.out is not None:
        try:
            files = [str(p) for p in write(result, args.out, log=log)]
        except LayerlabError as err:  # the folder broke during training: keep the results elsewhere
            out_dir, lost = tempfile.mkdtemp(prefix="layerlab-compare-"), f"{err}"
            try:
                files = [str(p) for p in write(result, out_dir, log=log)]
                lost += f"; the results are printed here and were written to {out_dir} instead"
            except LayerlabError as again:
                out_dir, lost = None, f"{lost}; writing them to {out_dir} failed too ({again}); the results printed " \
                                      "here are the only copy"
    if args.json:
        print(json.dumps({**result.to_dict(), "out_dir": out_dir, "files": files}, indent=2))
    else:
        console = Console()
        console.print(table(result))
        # from the command's start (main), so that importing torch and loading the data count too
        wall = time.perf_counter() - args.started
        console.print(f"total wall time {wall:.0f} s" + (f"; files in {out_dir}" if out_dir else ""))
    for failure in trainings.failures:
        shuffled = " (shuffled)" if failure["permuted"] else ""
        print(f"layerlab compare: {failure['model']}{shuffled} seed {failure['seed']} failed: {failure['error']}",
              file=sys.stderr)
    if trainings.interrupted:
        print(f"layerlab compare: {trainings.interrupted}", file=sys.stderr)
    if lost is not None:
        print(f"layerlab compare: error: {lost}", file=sys.stderr)
        return 2
    if trainings.interrupted:
        return 128 + trainings.signal_number
    return 1 if trainings.failures else 0
