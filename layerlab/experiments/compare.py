"""``run_compare``: which layer type for my data? Train each family, with and without shuffled positions.

The experiment (Greydanus & Kobak's MNIST-1D paper makes the same point): train a dense network
(``mlp``), a convolutional one (``cnn``), the same with locally connected layers (``lcn``) and an
all-convolutional one (``allconv``) on one data set, then again on the data with its positions
shuffled by one fixed permutation. The dense network does not care about the order of its inputs
(exactly, up to its first layer's columns); a convolution loses its prior and drops. The default
recipe (``layerlab.experiments.defaults``) is tuned so that on built-in MNIST-1D the whole default
run (8 trainings) takes about 1–2 minutes on 2 CPU cores and the gaps are far larger than the
seed-to-seed noise.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import signal
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

import layerlab
from layerlab.data import Dataset, load_dataset
from layerlab.errors import ArgumentError, LayerlabError
from layerlab.experiments.defaults import DEFAULT_MODELS, DEFAULT_RECIPE
from layerlab.experiments.estimate import ANNOUNCE_ABOVE_SECONDS, describe_estimate, estimate_seconds, time_step
from layerlab.experiments.permute import permute_positions
from layerlab.train import TrainConfig, TrainingInterrupted, fit, seed_everything
from layerlab.train.data import steps_per_epoch
from layerlab.train.distributed import resolve_device
from layerlab.train.rundir import printable
from layerlab.zoo import MODELS, build, width_for_params

__all__ = ["run_compare", "run_plan", "estimate_plan", "CompareResult", "RunRecord", "Training", "DEFAULT_MODELS",
           "DEFAULT_RECIPE", "SCHEMA"]

SCHEMA = "layerlab.compare/1"


@dataclass
class RunRecord:
    """One training: one model, original or shuffled positions, one seed.

    Attributes:
        model: zoo name. permuted: trained on shuffled positions. seed: init and data-order seed.
        width: the zoo width used.
        status: ``"ok"`` or ``"failed"``; ``error`` says why (exception type and message).
        params, macs: trainable parameters and multiply-accumulates per sample (``layerlab.summary``).
        test_accuracy, test_loss, train_accuracy: after the last epoch (fractions in [0, 1]).
        train_seconds: wall time of training and per-epoch evaluation.
        history: per-epoch metrics (see :class:`layerlab.train.TrainResult`).
    """

    model: str
    permuted: bool
    seed: int
    width: float | None = None
    status: str = "ok"
    error: str | None = None
    params: int | None = None
    macs: int | None = None
    test_accuracy: float | None = None
    test_loss: float | None = None
    train_accuracy: float | None = None
    train_seconds: float | None = None
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict without the history (it goes to ``history.csv``)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "history"}


@dataclass
class CompareResult:
    """What :func:`run_compare` returns; :meth:`to_dict` is the ``--json`` document (docs/compare.md).

    Attributes:
        dataset: ``{"name", "input_shape", "num_classes", "train_samples", "test_samples"}``.
        args: the resolved arguments (models, seeds, recipe, permutation seed, ...).
        runs: every training, in the order they ran.
        permutation: the position permutation used for the shuffled runs, or ``None``.
        wall_seconds: wall time of the whole experiment, data loading included.
        interrupted: why the experiment stopped early (Ctrl-C/SIGTERM), or ``None``; ``runs`` then
            holds the trainings that finished.
        signal_number: the signal that stopped it, or ``None``.
    """

    dataset: dict
    args: dict
    runs: list[RunRecord]
    permutation: list[int] | None
    wall_seconds: float = 0.0
    interrupted: str | None = None
    signal_number: int | None = None

    @property
    def results(self) -> list[dict]:
        """One row per (model, permuted): mean test accuracy ± sample std over the seeds that finished."""
        rows = []
        for model in self.args["models"]:
            for permuted in (False, True) if self.args["permute_pixels"] else (False,):
                runs = [r for r in self.runs if r.model == model and r.permuted == permuted]
                if runs:
                    rows.append(_aggregate(model, permuted, runs))
        return rows

    @property
    def failures(self) -> list[dict]:
        """``{"model", "permuted", "seed", "error"}`` for every training that failed."""
        return [{"model": r.model, "permuted": r.permuted, "seed": r.seed, "error": r.error}
                for r in self.runs if r.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when every training finished."""
        return not self.failures

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "dataset": self.dataset, "args": self.args, "results": self.results,
                "runs": [r.to_dict() for r in self.runs], "failures": self.failures,
                "interrupted": self.interrupted, "wall_seconds": self.wall_seconds}


def _aggregate(model: str, permuted: bool, runs: list[RunRecord]) -> dict:
    done = [r for r in runs if r.status == "ok"]
    failed = [r for r in runs if r.status == "failed"]
    accuracies = [r.test_accuracy for r in done]
    first = next((r for r in runs if r.params is not None), runs[0])
    return {
        "model": model, "permuted": permuted, "params": first.params, "macs": first.macs, "width": first.width,
        "test_accuracy": statistics.fmean(accuracies) if accuracies else None,
        "test_accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else None,
        "train_seconds": statistics.fmean(r.train_seconds for r in done) if done else None,
        "seeds": len(done), "failed_seeds": len(failed),
        "status": "ok" if done else "failed", "error": failed[0].error if failed else None,
    }


def run_compare(dataset: str | os.PathLike | Dataset = "mnist1d", *, models: tuple[str, ...] = DEFAULT_MODELS,
                permute_pixels: bool = True, seeds: int = 1, width: float = 1.0, params: int | None = None,
                recipe: TrainConfig = DEFAULT_RECIPE, permutation_seed: int = 0, limit: int | None = None,
                progress: bool = True, log: Callable[[str], None] | None = None) -> CompareResult:
    """Train each model (and, with ``permute_pixels``, again on shuffled positions) for ``seeds`` seeds.

    Run ``s`` (``s = 0 … seeds − 1``) seeds the model's initialisation and the data order with ``s``
    (``recipe.seed`` is replaced), so the original and the shuffled run of one seed start from the
    same weights. A training that raises (a build error, a NaN loss, anything) is recorded as
    failed and the others go on. Ctrl-C/SIGTERM stop the experiment: the result then holds the
    trainings that finished and says so in ``interrupted``.

    Args:
        dataset: a built-in name (``"mnist1d"``, ``"mnist"``, ``"digits"``), a path (see
            :func:`layerlab.data.load_dataset`) or a :class:`~layerlab.data.Dataset`. Default: ``"mnist1d"``.
        models: zoo names (:data:`layerlab.zoo.MODELS`). Default: ``("mlp", "cnn", "lcn", "allconv")``.
        permute_pixels: also train on positions shuffled by one permutation. Default: ``True``.
        seeds: number of seeds per model. Default: ``1``.
        width: zoo width of every model (ignored when ``params`` is given). Default: ``1.0``.
        params: match parameter budgets: each model gets the width whose parameter count is closest
            to ``params`` (:func:`layerlab.zoo.width_for_params`). Default: ``None``.
        recipe: training recipe. Default: :data:`DEFAULT_RECIPE`.
        permutation_seed: seed of the position permutation. Default: ``0``.
        limit: keep at most this many samples per split (a seeded subset). Default: ``None``.
        progress: tqdm bars inside each training (TTY only). Default: ``True``.
        log: called with the estimate of the whole run when it is over a minute (from a few timed steps
            of each model, before any training), then with one line per finished training (e.g.
            ``print`` to stderr). Default: ``None``.

    Returns:
        :class:`CompareResult`.

    Examples:
        >>> result = run_compare("mnist1d", models=("logistic",), limit=200,
        ...                      recipe=TrainConfig(lr=0.05, epochs=1, batch_size=50), progress=False)
        >>> [(row["model"], row["permuted"], row["params"]) for row in result.results]
        [('logistic', False, 410), ('logistic', True, 410)]
    """

    started = time.perf_counter()
    models = _check_models(models, MODELS)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ArgumentError(f"seeds must be a positive integer (number of seeds per model). Received: seeds={seeds!r}")
    if params is not None and (isinstance(params, bool) or not isinstance(params, int) or params < 1):
        raise ArgumentError(f"params must be a positive integer (a parameter budget). Received: params={params!r}")
    if params is None and (isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width)
                           or width <= 0):
        raise ArgumentError(f"width must be a positive finite number (1.0 = the documented sizes). Received: "
                            f"width={width!r}")
    if not isinstance(recipe, TrainConfig):
        raise ArgumentError(f"recipe must be a TrainConfig. Received: recipe={recipe!r}")
    resolve_device(recipe.device)  # a missing GPU is one error here, not one failure per training
    data, variants, permutation = data_variants(dataset, limit, permute_pixels, permutation_seed)
    result = CompareResult(
        dataset={"name": printable(data.name), "input_shape": list(data.input_shape), "num_classes": data.num_classes,
                 "train_samples": len(data.y_train), "test_samples": len(data.y_test)},
        args={"dataset": str(dataset) if not isinstance(dataset, Dataset) else data.name, "models": list(models),
              "permute_pixels": permute_pixels, "permutation_seed": permutation_seed, "seeds": list(range(seeds)),
              "width": None if params is not None else width, "params": params, "limit": limit,
              "recipe": recipe.to_dict(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "layerlab": layerlab.__version__},
        runs=[], permutation=permutation)
    makers = {name: functools.partial(_build_by_width, name, data, width, params) for name in models}
    plan = [Training(name, permuted, variant, seed, makers[name]) for name in models for permuted, variant in variants
            for seed in range(seeds)]
    if log is not None:
        seconds = estimate_plan(makers, data, recipe, [t.label for t in plan])
        if seconds > ANNOUNCE_ABOVE_SECONDS:
            log(describe_estimate(seconds))
    run_plan(result, plan, recipe, started, progress=progress, log=log)
    return result


@dataclass(frozen=True)
class Training:
    """One planned training of :func:`run_plan`.

    Attributes:
        label: the row it belongs to (a zoo name, or a sweep point such as ``"tiled-4"``).
        permuted: the data's positions are shuffled. data: the data set to train and test on.
        seed: init and data-order seed.
        make_model: builds ``(model, width)``, freshly initialised (called after seeding).
    """

    label: str
    permuted: bool
    data: Dataset
    seed: int
    make_model: Callable[[], tuple[nn.Module, float]]


def run_plan(result: CompareResult, plan: list[Training], recipe: TrainConfig, started: float, *,
             progress: bool = True, log: Callable[[str], None] | None = None,
             on_record: Callable[[RunRecord], None] | None = None) -> None:
    """Train ``plan`` in order, appending each :class:`RunRecord` to ``result.runs`` as it finishes.

    A training that raises is recorded as failed and the others go on. Ctrl-C/SIGTERM stop the
    plan after the current training's step: ``result.interrupted`` and ``result.signal_number``
    then say so, and the finished records stay. ``on_record`` is called with every finished record
    (e.g. to save it at once); ``log`` with one line per training; ``result.wall_seconds`` counts
    from ``started`` (a ``time.perf_counter()`` value).
    """
    done_before = len(result.runs)
    for training in plan:
        try:
            record = _train_one(training, recipe, progress)
        except (TrainingInterrupted, KeyboardInterrupt) as err:
            result.signal_number = getattr(err, "signal_number", signal.SIGINT)
            finished = len(result.runs) - done_before
            result.interrupted = (f"stopped by {signal.Signals(result.signal_number).name} while training "
                                  f"{training.label}{' (shuffled)' if training.permuted else ''} seed {training.seed}; "
                                  f"{finished} of {len(plan)} trainings finished and are reported")
            break
        finally:
            result.wall_seconds = time.perf_counter() - started
        result.runs.append(record)
        if on_record is not None:
            on_record(record)
        if log is not None:
            log(_describe(record, len(result.runs) - done_before, len(plan)))


def data_variants(dataset, limit: int | None, permute_pixels: bool, permutation_seed: int):
    """``(data, variants, permutation)``: the data (``dataset`` loaded by name or path with ``limit``,
    or the :class:`~layerlab.data.Dataset` given), the variants to train on (``[(False, data)]``, plus
    ``(True, data with its positions shuffled)`` when ``permute_pixels``) and the permutation as a
    list (``None`` without)."""
    if isinstance(dataset, Dataset) and limit is not None:
        raise ArgumentError("limit applies to data loaded by name or path; subsample a Dataset object yourself")
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, limit=limit)
    variants = [(False, data)]
    permutation = None
    if permute_pixels:
        shuffled, perm = permute_positions(data, permutation_seed)
        variants.append((True, shuffled))
        permutation = perm.tolist()
    return data, variants, permutation


def _check_models(models, registry) -> tuple[str, ...]:
    if isinstance(models, str):
        models = tuple(m.strip() for m in models.split(",") if m.strip())
    models = tuple(models)
    unknown = [m for m in models if m not in registry]
    if not models or unknown:
        raise ArgumentError(
            f"models must be zoo names ({', '.join(registry)}). Received: {', '.join(unknown) or 'nothing'}; "
            "e.g. --model mlp,cnn,lcn,allconv"
        )
    if len(set(models)) != len(models):
        raise ArgumentError(f"models lists a name twice. Received: {', '.join(models)}")
    return models


def _build_by_width(name: str, data: Dataset, width: float, params: int | None) -> tuple[nn.Module, float]:
    """The zoo model ``name`` at ``width``, or at the width matching the ``params`` budget."""
    model_width = width if params is None else width_for_params(name, data.input_shape, data.num_classes, params)
    return build(name, data.input_shape, data.num_classes, model_width), model_width


def estimate_plan(makers: dict[str, Callable[[], tuple[nn.Module, float]]], data: Dataset, recipe: TrainConfig,
                  trainings: list[str]) -> float:
    """Seconds the ``trainings`` (one label of ``makers`` each) will take, from a few timed steps of each
    model; a model that cannot be built or stepped counts 0 s (its training will report the failure)."""
    step_seconds = {}
    for label, make_model in makers.items():
        try:
            step_seconds[label] = time_step(make_model()[0], data, recipe.batch_size, recipe.loss)
        except Exception:  # noqa: BLE001 - reported by the training itself
            step_seconds[label] = 0.0
    steps = steps_per_epoch(len(data.y_train), recipe.batch_size, 1) * recipe.epochs
    return estimate_seconds(step_seconds, trainings, steps)


def _train_one(training: Training, recipe: TrainConfig, progress: bool) -> RunRecord:
    record = RunRecord(model=training.label, permuted=training.permuted, seed=training.seed)
    data = training.data
    try:
        seed_everything(training.seed)
        model, record.width = training.make_model()
        totals = layerlab.summary(model, data.input_shape).total
        record.params, record.macs = totals.params, totals.macs
        trained = fit(model, data, dataclasses.replace(recipe, seed=training.seed), progress=progress)
    except (TrainingInterrupted, KeyboardInterrupt):
        raise
    except Exception as err:  # noqa: BLE001 - a failing model is reported and the others go on
        record.status = "failed"
        kind = "" if isinstance(err, LayerlabError) else f"{type(err).__name__}: "
        record.error = f"{kind}{err}"
        return record
    last = trained.history[-1]
    record.test_accuracy, record.test_loss = last["test_accuracy"], last["test_loss"]
    record.train_accuracy, record.train_seconds = last["train_accuracy"], trained.train_seconds
    record.history = trained.history
    return record


def _describe(record: RunRecord, index: int, total: int) -> str:
    what = f"[{index}/{total}] {record.model}{' (shuffled)' if record.permuted else ''} seed {record.seed}"
    if record.status == "failed":
        return f"{what}: FAILED: {record.error}"
    return f"{what}: test accuracy {100 * record.test_accuracy:.1f}% in {record.train_seconds:.1f} s"
