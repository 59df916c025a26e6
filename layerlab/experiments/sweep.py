"""``run_sweep``: the sharing sweep, accuracy against how much a layer shares its weights.

Convolution → tiled convolution → low-rank locally connected → locally connected is one axis:
how many independent filter banks a layer has for its positions. The sweep trains one model per
point of that axis — all of them ``cnn``'s LeNet-style skeleton (``layerlab.zoo.families``) at the
cnn's compute — with one recipe, on the data and on the data with its positions shuffled, for
several seeds, and reports mean ± sample std per point (docs/compare.md).

The sharing measure, :func:`filter_banks`, is the number of independent filter banks of the
model's first window layer, the largest rank its ``positions × filter weights`` matrix can have:

=======================  =====================================================================
convolution              1 (every position uses the same bank)
tiled, tile ``t``         ``∏ min(t, out_i)`` (positions equal modulo ``t`` share a bank)
low-rank local, rank r   ``min(r, ∏ out_i)`` (every position mixes the same ``r`` basis banks)
locally connected        ``∏ out_i``, the number of output positions (a bank per position)
=======================  =====================================================================

Trainings are saved as they finish: with ``out_dir``, each finished training is appended to
``out_dir/runs.jsonl`` (one JSON object per line, its per-epoch history included), so a sweep that
is stopped or crashes loses at most the training it was in; ``resume=True`` reloads the finished
trainings and trains only the missing (or failed) ones.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import layerlab
from layerlab.arith import ConvSpec, LocalSpec, LowRankLocalSpec, TiledSpec
from layerlab.data import Dataset
from layerlab.errors import ArgumentError, DataError, LayerlabError
from layerlab.experiments.compare import (
    CompareResult, RunRecord, Training, data_variants, estimate_plan, run_plan,
)
from layerlab.experiments.defaults import (
    DEFAULT_RANKS, DEFAULT_RECIPE, DEFAULT_SWEEP_SEEDS, DEFAULT_TILES, SWEEPS,
)
from layerlab.experiments.estimate import ANNOUNCE_ABOVE_SECONDS, describe_estimate
from layerlab.train import TrainConfig
from layerlab.train.distributed import resolve_device
from layerlab.train.metrics import write_text_atomic
from layerlab.train.rundir import printable
from layerlab.zoo import build

__all__ = ["SweepPoint", "SweepResult", "sharing_points", "filter_banks", "run_sweep", "load_sweep", "RUNS_LOG",
           "ARGS_FILE", "SCHEMA", "RESUME_KEYS"]

SCHEMA = "layerlab.sweep/1"
RUNS_LOG = "runs.jsonl"
ARGS_FILE = "args.json"
# the arguments that change a sweep's numbers: a resumed sweep must agree on every one
RESUME_KEYS = ("sweep", "dataset", "limit", "width", "recipe", "permute_pixels", "permutation_seed")


@dataclass(frozen=True)
class SweepPoint:
    """One point of the sharing axis: a zoo model and its options.

    Attributes:
        label: the row's name (``"cnn"``, ``"tiled-4"``, ``"lowrank-8"``, ``"lcn"``).
        family: ``"convolution"``, ``"tiled"``, ``"low-rank local"`` or ``"locally connected"``.
        model: the zoo name. options: the builder's keyword options, as ``(name, value)`` pairs.
    """

    label: str
    family: str
    model: str
    options: tuple[tuple[str, int], ...] = ()

    def build(self, input_shape: tuple[int, ...], num_classes: int, width: float) -> nn.Module:
        """The point's model, freshly initialised (:func:`layerlab.zoo.build`)."""
        return build(self.model, input_shape, num_classes, width, **dict(self.options))


def sharing_points(tiles: tuple[int, ...] = DEFAULT_TILES, ranks: tuple[int, ...] = DEFAULT_RANKS) -> list[SweepPoint]:
    """The sharing axis: ``cnn``, ``tiled`` per tile size, ``lowrank`` per rank, ``lcn``, in that order.

    Examples:
        >>> [p.label for p in sharing_points(tiles=(2,), ranks=(4,))]
        ['cnn', 'tiled-2', 'lowrank-4', 'lcn']
    """
    tiles, ranks = _check_sizes("tiles", tiles, "tile size"), _check_sizes("ranks", ranks, "rank")
    return ([SweepPoint("cnn", "convolution", "cnn")]
            + [SweepPoint(f"tiled-{t}", "tiled", "tiled", (("tile_size", t),)) for t in tiles]
            + [SweepPoint(f"lowrank-{r}", "low-rank local", "lowrank", (("rank", r),)) for r in ranks]
            + [SweepPoint("lcn", "locally connected", "lcn")])


def _check_sizes(who: str, values, what: str) -> tuple[int, ...]:
    values = tuple(values)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 2 for v in values):
        raise ArgumentError(f"{who} must be integers of at least 2 (1 is the convolution, which the sweep trains "
                            f"anyway). Received: {who}={','.join(map(str, values))}")
    if len(set(values)) != len(values):
        raise ArgumentError(f"{who} lists a {what} twice. Received: {who}={','.join(map(str, values))}")
    return values


def filter_banks(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """The sharing measure of a sweep model: independent filter banks of its first window layer.

    See the module docstring for the value per layer kind. The layer's output positions come from
    its ``layer_spec().analyse(input_shape)``.

    Raises:
        ArgumentError: the model has no convolution-like first layer (conv, tiled, low-rank or
            locally connected) before its first other layer with weights.

    Examples:
        >>> from layerlab.zoo import build
        >>> [filter_banks(build(name, (1, 40), 10), (1, 40)) for name in ("cnn", "tiled", "lcn")]
        [1, 2, 40]
    """
    for module in model.modules():
        if not hasattr(module, "layer_spec") or not _has_weights(module):
            continue
        spec = module.layer_spec()
        if not isinstance(spec, (ConvSpec, TiledSpec, LowRankLocalSpec, LocalSpec)):
            break
        positions = spec.analyse(input_shape).output_shape[1:]
        if isinstance(spec, TiledSpec):
            return math.prod(min(t, n) for t, n in zip(spec.tile_size, positions))
        if isinstance(spec, LowRankLocalSpec):
            return min(spec.rank, math.prod(positions))
        if isinstance(spec, LocalSpec):
            return math.prod(positions)
        return 1
    first = next((type(m).__name__ for m in model.modules() if _has_weights(m)), "no weights")
    raise ArgumentError(f"filter_banks needs a model whose first layer with weights is a convolution, tiled, "
                        f"low-rank or locally connected layer. Received: {type(model).__name__} (first: {first})")


def _has_weights(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns; :meth:`to_dict` is the ``--json`` document (schema ``layerlab.sweep/1``).

    Attributes:
        compare: the trainings, as a :class:`~layerlab.experiments.compare.CompareResult` whose
            ``args["models"]`` are the point labels (so its table, files and plots work as they are).
        points: the sweep's points, in axis order.
        banks: label → :func:`filter_banks` of the point's model on this data.
        resumed: how many trainings were loaded from ``runs.jsonl`` instead of trained.
    """

    compare: CompareResult
    points: list[SweepPoint]
    banks: dict[str, int]
    resumed: int = 0

    @property
    def rows(self) -> list[dict]:
        """One row per point and variant: ``compare.results``' keys plus ``family``, ``filter_banks``,
        ``positions_per_bank`` (first-layer positions ÷ banks) and ``macs_vs_cnn`` (MACs ÷ the cnn's)."""
        by_point = {p.label: p for p in self.points}
        results = self.compare.results
        cnn_macs = next((r["macs"] for r in results if r["model"] == "cnn" and r["macs"]), None)
        positions = self.banks.get("lcn")
        rows = []
        for row in results:
            point, banks = by_point[row["model"]], self.banks.get(row["model"])
            rows.append({**row, "family": point.family, "options": dict(point.options), "filter_banks": banks,
                         "positions_per_bank": positions / banks if positions and banks else None,
                         "macs_vs_cnn": row["macs"] / cnn_macs if row["macs"] and cnn_macs else None})
        return rows

    def to_dict(self) -> dict:
        document = self.compare.to_dict()
        return {"schema": SCHEMA, "sweep": self.compare.args["sweep"], "dataset": document["dataset"],
                "args": document["args"], "results": self.rows, "runs": document["runs"],
                "failures": document["failures"], "interrupted": document["interrupted"], "resumed": self.resumed,
                "wall_seconds": document["wall_seconds"]}


def run_sweep(dataset: str | os.PathLike | Dataset = "mnist1d", *, sweep: str = "sharing",
              tiles: tuple[int, ...] = DEFAULT_TILES, ranks: tuple[int, ...] = DEFAULT_RANKS,
              seeds: int = DEFAULT_SWEEP_SEEDS, width: float = 1.0, recipe: TrainConfig = DEFAULT_RECIPE,
              permute_pixels: bool = True, permutation_seed: int = 0, limit: int | None = None,
              out_dir: str | os.PathLike | None = None, resume: bool = False, train: bool = True,
              progress: bool = True, log: Callable[[str], None] | None = None) -> SweepResult:
    """Train every point of the sharing axis (:func:`sharing_points`) with one recipe, ``seeds`` seeds each.

    Every point is trained on the data and, with ``permute_pixels``, on the data with its positions
    shuffled by one permutation; seed ``s`` fixes the initial weights and the data order, as in
    :func:`~layerlab.experiments.run_compare`. A failing training is recorded and the others go on;
    Ctrl-C/SIGTERM stop the sweep and the finished trainings are kept.

    Args:
        dataset: a built-in name, a path or a :class:`~layerlab.data.Dataset`. Default: ``"mnist1d"``.
        sweep: which sweep; ``"sharing"`` is the one there is. Default: ``"sharing"``.
        tiles: tile sizes of the ``tiled`` points (each ≥ 2, the same along every dim). Default: ``(2, 4)``.
        ranks: ranks of the ``lowrank`` points (each ≥ 2). Default: ``(2, 4, 8)``.
        seeds: seeds per point and variant. Default: ``3``.
        width: zoo width of every point (the lowrank builder matches the cnn's MACs at this width).
            Default: ``1.0``.
        recipe: the one training recipe of every point. Default: compare's :data:`DEFAULT_RECIPE`.
        permute_pixels, permutation_seed, limit, progress, log: as for ``run_compare``.
        out_dir: save ``args.json`` at the start and every finished training to ``runs.jsonl`` as it
            finishes. Default: ``None`` (nothing saved).
        resume: reload the finished trainings of ``out_dir/runs.jsonl`` and train only the others;
            the recipe, data set, limit, width and permutation must be those of the saved sweep.
            Default: ``False``.
        train: ``False`` trains nothing: with ``resume``, the result holds the saved trainings of
            the planned points and seeds, to report a sweep that is unfinished. Default: ``True``.

    Returns:
        :class:`SweepResult`.

    Raises:
        ArgumentError: a bad argument; ``out_dir`` holds a sweep and ``resume`` is off; ``resume``
            with arguments that differ from the saved sweep's (named in the message).
    """
    started = time.perf_counter()
    if sweep not in SWEEPS:
        raise ArgumentError(f"sweep must be one of ({', '.join(SWEEPS)}). Received: sweep={sweep!r}")
    points = sharing_points(tiles, ranks)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ArgumentError(f"seeds must be a positive integer (number of seeds per point). Received: seeds={seeds!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise ArgumentError(f"width must be a positive finite number (1.0 = the documented sizes). Received: "
                            f"width={width!r}")
    if not isinstance(recipe, TrainConfig):
        raise ArgumentError(f"recipe must be a TrainConfig. Received: recipe={recipe!r}")
    if resume and out_dir is None:
        raise ArgumentError("resume=True needs out_dir, the folder that holds runs.jsonl (--out DIR)")
    if not train and not resume:
        raise ArgumentError("train=False reports the trainings saved in out_dir; it needs resume=True and out_dir")
    resolve_device(recipe.device)
    data, variants, permutation = data_variants(dataset, limit, permute_pixels, permutation_seed)
    banks = {}
    for point in points:  # built on the meta device: shapes only, nothing allocated
        try:
            with torch.device("meta"):
                banks[point.label] = filter_banks(point.build(data.input_shape, data.num_classes, width),
                                                  data.input_shape)
        except LayerlabError:
            pass  # the point's training reports why it cannot be built
    args = {"sweep": sweep, "dataset": str(dataset) if not isinstance(dataset, Dataset) else data.name,
            "models": [p.label for p in points],
            "points": [{"label": p.label, "family": p.family, "model": p.model, "options": dict(p.options),
                        "filter_banks": banks.get(p.label)} for p in points],
            "tiles": list(tiles), "ranks": list(ranks), "permute_pixels": permute_pixels,
            "permutation_seed": permutation_seed, "seeds": list(range(seeds)), "width": width, "params": None,
            "limit": limit, "recipe": recipe.to_dict(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "layerlab": layerlab.__version__}
    compare = CompareResult(
        dataset={"name": printable(data.name), "input_shape": list(data.input_shape), "num_classes": data.num_classes,
                 "train_samples": len(data.y_train), "test_samples": len(data.y_test)},
        args=args, runs=[], permutation=permutation)
    result = SweepResult(compare, points, banks)
    saver = None
    if out_dir is not None:
        saver = _RunLog(Path(out_dir))
        finished = saver.start(args, permutation, resume, log)
        wanted = {(p.label, permuted, seed) for p in points for permuted, _ in variants for seed in range(seeds)}
        compare.runs = [r for r in finished if (r.model, r.permuted, r.seed) in wanted]
        result.resumed = len(compare.runs)
    done = {(r.model, r.permuted, r.seed) for r in compare.runs}
    makers = {p.label: functools.partial(_build_point, p, data, width) for p in points}
    plan = [Training(p.label, permuted, variant, seed, makers[p.label]) for p in points
            for permuted, variant in variants for seed in range(seeds)
            if train and (p.label, permuted, seed) not in done]
    if log is not None:
        if result.resumed:
            log(f"resumed: {result.resumed} finished training(s) loaded from {saver.path}, {len(plan)} to train")
        seconds = estimate_plan({label: makers[label] for label in dict.fromkeys(t.label for t in plan)}, data,
                                recipe, [t.label for t in plan])
        if seconds > ANNOUNCE_ABOVE_SECONDS:
            log(describe_estimate(seconds))
    run_plan(compare, plan, recipe, started, progress=progress, log=log,
             on_record=saver.append if saver is not None else None)
    order = {key: i for i, key in enumerate((p.label, permuted, seed) for p in points for permuted, _ in variants
                                            for seed in range(seeds))}
    compare.runs.sort(key=lambda r: order[(r.model, r.permuted, r.seed)])
    return result


def load_sweep(path: str | os.PathLike) -> SweepResult:
    """The :class:`SweepResult` saved in a sweep's ``results.json`` (schema ``layerlab.sweep/1``), without
    the per-epoch histories (they are in ``history.csv``): its table and ``sharing.png`` can be redrawn.

    Raises:
        DataError: the file is missing, not JSON, or not a sweep's ``results.json``.
    """
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read the sweep results {path} ({type(err).__name__}: {err}); pass the "
                        f"results.json of a 'layerlab compare --sweep' run") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else type(document).__name__
        raise DataError(f"{path} is not a sweep's results.json: expected schema {SCHEMA!r}. Received: {found!r}")
    fields = {f.name for f in dataclasses.fields(RunRecord)}
    compare = CompareResult(dataset=document["dataset"], args=document["args"],
                            runs=[RunRecord(**{k: v for k, v in r.items() if k in fields}) for r in document["runs"]],
                            permutation=None, wall_seconds=document["wall_seconds"],
                            interrupted=document["interrupted"])
    points = [SweepPoint(p["label"], p["family"], p["model"], tuple(p["options"].items()))
              for p in document["args"]["points"]]
    banks = {p["label"]: p["filter_banks"] for p in document["args"]["points"] if p["filter_banks"] is not None}
    return SweepResult(compare, points, banks, document["resumed"])


def _build_point(point: SweepPoint, data: Dataset, width: float) -> tuple[nn.Module, float]:
    return point.build(data.input_shape, data.num_classes, width), width


class _RunLog:
    """``args.json`` and ``runs.jsonl`` of a sweep's output folder: written as the sweep goes, read to resume."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out / RUNS_LOG

    def start(self, args: dict, permutation: list[int] | None, resume: bool,
              log: Callable[[str], None] | None) -> list[RunRecord]:
        """Check the folder against ``resume``, write ``args.json``, return the finished trainings to keep."""
        finished = self._read() if self.path.exists() else []
        if finished and not resume:
            raise ArgumentError(f"{self.path} holds {len(finished)} finished training(s) of a sweep; continue it "
                                f"with --resume (resume=True), or choose another --out")
        if finished:
            self._check_args(args)
        elif resume and log is not None:
            log(f"nothing to resume in {self.out}: no finished training in {self.path.name}; starting the sweep")
        self.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.out / ARGS_FILE, json.dumps({**args, "permutation": permutation}, indent=2) + "\n")
        if not finished:
            write_text_atomic(self.path, "")
        return finished

    def append(self, record: RunRecord) -> None:
        """Append one finished training as a JSON line, flushed to disk before the next training starts."""
        if record.status != "ok":
            return  # a failed training is trained again on resume
        line = json.dumps({**record.to_dict(), "history": record.history}) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def _read(self) -> list[RunRecord]:
        fields = {f.name for f in dataclasses.fields(RunRecord)}
        records = []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict) or not {"model", "permuted", "seed"} <= entry.keys():
                    raise ValueError("not a training record")
                records.append(RunRecord(**{k: v for k, v in entry.items() if k in fields}))
            except (ValueError, TypeError) as err:
                if number == len(lines):
                    continue  # a line cut short by a crash while it was written: that training runs again
                raise DataError(f"{self.path} line {number} is not a training record ({err}); delete the line "
                                f"(that training runs again) or the folder") from None
        return [r for r in records if r.status == "ok"]

    def _check_args(self, args: dict) -> None:
        try:
            saved = json.loads((self.out / ARGS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DataError(f"cannot resume the sweep in {self.out}: {ARGS_FILE} is missing or unreadable "
                            f"({type(err).__name__}); choose another --out") from None
        changed = [f"{key}: saved {saved.get(key)!r}, now {args[key]!r}" for key in RESUME_KEYS
                   if saved.get(key) != args[key]]
        if changed:
            raise ArgumentError(f"cannot resume the sweep in {self.out}: its arguments changed ({'; '.join(changed)}); "
                                f"resume with the same ones, or choose another --out")

