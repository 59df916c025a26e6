"""``fit``: the training loop with evaluation, checkpoints, exact resume, NaN guard, signals and DDP."""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from layerlab.errors import ArgumentError, LayerlabError, ShapeError, TrainingError
from layerlab.train.checkpoint import (CHECKPOINT_NAME, check_resumable, load_checkpoint, rng_state, save_checkpoint,
                                       set_rng_state)
from layerlab.train.config import RESULT_FIELDS, TrainConfig
from layerlab.train.data import TensorData, as_tensors, epoch_loader, fingerprint, shard, steps_per_epoch
from layerlab.train.distributed import Distributed, setup
from layerlab.train.metrics import loss_and_correct, write_json, write_metrics
from layerlab.train.rundir import lock_out_dir, prepare_out_dir, remove_stale_temp_files
from layerlab.train.schedule import learning_rate
from layerlab.train.signals import StopSignals, TrainingInterrupted

__all__ = ["fit", "TrainResult", "seed_everything", "RUN_FILES"]

# the files of a run folder that are written atomically (their leftover temp files are removed on start)
RUN_FILES = (CHECKPOINT_NAME, "metrics.csv", "metrics.json", "config.json", "args.json")


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes:
        history: one dict per completed epoch with the keys of :data:`layerlab.train.metrics.COLUMNS`
            (``epoch`` is 1-based; accuracies are fractions in [0, 1]).
        train_seconds: wall time spent training and evaluating, summed over resumed parts.
        out_dir: the run folder, or ``None``.
        checkpoint: the last checkpoint written, or ``None``.
        world_size: number of processes that trained.
    """

    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    out_dir: Path | None = None
    checkpoint: Path | None = None
    world_size: int = 1

    @property
    def test_accuracy(self) -> float:
        """Test accuracy after the last epoch."""
        return self.history[-1]["test_accuracy"]

    @property
    def test_loss(self) -> float:
        """Test loss after the last epoch."""
        return self.history[-1]["test_loss"]


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy and torch (CPU and CUDA) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fit(model: nn.Module, dataset: object, config: TrainConfig, *, out_dir: str | os.PathLike | None = None,
        resume: bool = False, progress: bool = True, args_record: dict | None = None) -> TrainResult:
    """Train ``model`` in place on ``dataset`` and evaluate it on the test split after every epoch.

    With ``out_dir`` each epoch ends by writing ``checkpoint.pt`` (atomically: model, optimizer,
    schedule step, epoch, RNG states of every process, data order seed, metrics so far),
    ``metrics.csv`` and ``metrics.json``; ``config.json`` holds the resolved config. With
    ``resume=True`` the run continues from that checkpoint and ends bit-identical (weights and every
    metric but ``seconds``) to a run that was never interrupted, on the same machine, thread count
    and world size.

    Guards: a non-finite loss stops the run before the step touches the weights and raises
    :class:`TrainingError` naming the epoch, step and learning rate (the last checkpoint is kept).
    SIGINT/SIGTERM finish the current step, write a checkpoint and raise
    :class:`~layerlab.train.signals.TrainingInterrupted`; a second signal aborts at once.
    The run folder is checked before anything else (created, writable, room for two checkpoints)
    and locked for the whole run (:func:`layerlab.train.rundir.lock_out_dir`: a second run on the
    same folder is refused with the first one's pid and command). A new run writes ``config.json``
    (and ``args.json`` from ``args_record``) once; a resumed run never rewrites them. Resuming
    refuses a changed recipe and different data (SHA-256 of every split, see
    :func:`layerlab.train.data.fingerprint`).
    Under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in DistributedDataParallel, each
    process takes ``config.batch_size`` samples per step (global batch = ``batch_size × world
    size``), only rank 0 writes files and shows progress, and a dead peer raises
    :class:`TrainingError` within ``config.ddp_timeout`` seconds.

    Args:
        model: maps ``(B, *input_shape)`` to logits ``(B, num_classes)``; moved to the device.
        dataset: a :class:`layerlab.data.Dataset` (or anything with ``x_train``, ``y_train``,
            ``x_test``, ``y_test``).
        config: the recipe.
        out_dir: run folder for checkpoint and metrics; ``None`` writes nothing. Default: ``None``.
        resume: continue from ``out_dir/checkpoint.pt``. Default: ``False``.
        progress: one line per epoch on stderr, and tqdm bars of the steps on a terminal (rank 0
            only). Default: ``True``.
        args_record: the arguments that made the run (the CLI's), written to ``args.json`` with
            ``config.json`` when a new run starts. Default: ``None`` (no ``args.json``).

    Shape:
        dataset.x_train ``(N, *input_shape)``, dataset.y_train ``(N,)`` (or ``(N, K)`` for ``loss="bce"``).

    Examples:
        >>> from types import SimpleNamespace
        >>> x = torch.randn(64, 1, 8); y = (x.sum(dim=(1, 2)) > 0).long()
        >>> data = SimpleNamespace(x_train=x, y_train=y, x_test=x, y_test=y)
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(8, 2))
        >>> result = fit(net, data, TrainConfig(lr=0.1, epochs=3, batch_size=16), progress=False)
        >>> len(result.history), result.test_accuracy > 0.6
        (3, True)
    """
    if not isinstance(config, TrainConfig):
        raise ArgumentError(f"fit() needs a TrainConfig. Received: config={config!r}; use TrainConfig(...)")
    if not isinstance(model, nn.Module):
        raise ArgumentError(f"fit() needs a torch.nn.Module. Received: model of type {type(model).__name__}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ArgumentError(f"{type(model).__name__} has no trainable parameters; there is nothing to train")
    out = Path(out_dir) if out_dir is not None else None
    if resume and out is None:
        raise ArgumentError("resume=True needs out_dir, the folder that holds checkpoint.pt (--out DIR)")
    data = as_tensors(dataset, params[0].dtype, config.loss)
    ddp = setup(config.device, config.ddp_timeout)
    finished = False
    try:
        with contextlib.ExitStack() as stack:
            if out is not None and ddp.is_main:
                prepare_out_dir(out, needed_bytes=2 * _checkpoint_bytes(params, config))
                stack.enter_context(lock_out_dir(out))
                remove_stale_temp_files(out, RUN_FILES)
            if out is not None and not resume and (out / CHECKPOINT_NAME).exists():
                raise TrainingError(
                    f"{out / CHECKPOINT_NAME} already exists from an earlier run; continue it with --resume "
                    "(resume=True), or choose another --out, or delete the folder to start over"
                )
            stack.enter_context(_deterministic(config.deterministic))
            stop = stack.enter_context(StopSignals())
            result = _Trainer(model, data, config, ddp, out, stop, progress, args_record).run(resume)
        finished = True
        return result
    finally:
        ddp.close(finished)


def _checkpoint_bytes(params: list[torch.Tensor], config: TrainConfig) -> int:
    """Estimated checkpoint size: the weights plus the optimizer's slots (Adam 2, SGD momentum 1)."""
    slots = 2 if config.optimizer == "adam" else 1
    return sum(p.numel() * p.element_size() for p in params) * (1 + slots) + (1 << 16)


@contextlib.contextmanager
def _deterministic(enabled: bool):
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` for the run, restored afterwards."""
    if not enabled:
        yield
        return
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for deterministic GEMMs
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]


class _Trainer:
    """State of one run; :meth:`run` is the whole loop."""

    def __init__(self, model: nn.Module, data: TensorData, config: TrainConfig, ddp: Distributed,
                 out: Path | None, stop: StopSignals, progress: bool, args_record: dict | None = None) -> None:
        self.model = model.to(ddp.device)
        self.data, self.config, self.ddp, self.out, self.stop = data, config, ddp, out, stop
        self.args_record = args_record
        self.data_id = fingerprint(data) if out is not None else None
        self.report = progress and ddp.is_main  # one line per epoch on stderr
        self.show = self.report and sys.stderr.isatty()  # and step bars on a terminal
        self.checkpoint_path = out / CHECKPOINT_NAME if out is not None else None
        self.last_checkpoint: Path | None = None
        self.last_checkpoint_at = ""  # e.g. "epoch 3" or "epoch 4, step 17"
        self.history: list[dict] = []
        self.global_step = 0
        self.epoch = 0          # completed epochs
        self.step_in_epoch = 0  # steps done in the current epoch
        self.partial = {"loss_sum": 0.0, "correct": 0.0, "seen": 0.0}
        self.train_seconds = 0.0
        self.steps_per_epoch = steps_per_epoch(len(data.x_train), config.batch_size, ddp.world_size)
        self.optimizer = self._optimizer()

    def _optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.config.lr, momentum=self.config.momentum,
                                   weight_decay=self.config.weight_decay)
        return torch.optim.Adam(params, lr=self.config.lr, weight_decay=self.config.weight_decay)

    # ---- the loop -------------------------------------------------------------------------------

    def run(self, resume: bool) -> TrainResult:
        self._probe()
        if resume:
            self._restore()
            if self.out is not None and self.ddp.is_main and self.history:
                self._write_metrics()  # repairs metrics files that a full disk kept from being written
        else:
            seed_everything(self.config.seed + self.ddp.rank)
            if self.out is not None and self.ddp.is_main:
                self._write_records()
        net = self._wrap()
        while self.epoch < self.config.epochs:
            started = time.perf_counter()
            train_loss, train_accuracy = self._train_epoch(net)
            test_loss, test_accuracy = self._evaluate()
            seconds = time.perf_counter() - started
            self.train_seconds += seconds
            self.epoch += 1
            self.history.append({
                "epoch": self.epoch, "lr": learning_rate(self.config, self.global_step - 1, self.steps_per_epoch),
                "train_loss": train_loss, "train_accuracy": train_accuracy,
                "test_loss": test_loss, "test_accuracy": test_accuracy, "seconds": seconds,
            })
            self._check_weights(test_loss)
            self.step_in_epoch = 0
            self.partial = {"loss_sum": 0.0, "correct": 0.0, "seen": 0.0}
            self._save()
            if self.report:
                tqdm.write(f"epoch {self.epoch}/{self.config.epochs}: train loss {train_loss:.4f} acc "
                           f"{train_accuracy:.4f} | test loss {test_loss:.4f} acc {test_accuracy:.4f} | {seconds:.1f}s",
                           file=sys.stderr)
            if self._agreed_stop() and self.epoch < self.config.epochs:
                raise self._interrupted()
        return TrainResult(list(self.history), self.train_seconds, self.out, self.last_checkpoint, self.ddp.world_size)

    def _train_epoch(self, net: nn.Module) -> tuple[float, float]:
        loader = epoch_loader(self.data, self.config.batch_size, self.config.seed, self.epoch, self.ddp.rank,
                              self.ddp.world_size, skip=self.step_in_epoch, num_workers=self.config.num_workers,
                              pin_memory=self.ddp.device.type == "cuda")
        net.train()
        bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, disable=not self.show, leave=False,
                   desc=f"epoch {self.epoch + 1}/{self.config.epochs}", unit="step")
        with bar:
            for xb, yb in loader:
                lr = learning_rate(self.config, self.global_step, self.steps_per_epoch)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                xb = xb.to(self.ddp.device, non_blocking=True)  # (B, *input_shape)
                yb = yb.to(self.ddp.device, non_blocking=True)  # (B,) or (B, K)
                logits = net(xb)  # (B, K)
                loss, correct = loss_and_correct(logits, yb, self.config.loss)
                # one collective per step: loss, correct, samples, and whether any process got a signal
                stats = torch.stack([loss.detach().double() * len(xb), correct.double(),
                                     torch.tensor(float(len(xb)), dtype=torch.float64, device=loss.device),
                                     torch.tensor(float(self.stop.received is not None), dtype=torch.float64,
                                                  device=loss.device)])
                self.ddp.all_reduce(stats)
                loss_sum, batch_correct, seen, stop = stats.tolist()
                if not math.isfinite(loss_sum):
                    raise self._non_finite(loss_sum, lr)
                self.optimizer.zero_grad(set_to_none=True)
                self._backward(loss)
                if self.config.grad_clip is not None:
                    nn.utils.clip_grad_norm_(net.parameters(), self.config.grad_clip)
                self.optimizer.step()
                self.global_step += 1
                self.step_in_epoch += 1
                self.partial["loss_sum"] += loss_sum
                self.partial["correct"] += batch_correct
                self.partial["seen"] += seen
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", lr=f"{lr:.3g}", refresh=False)
                bar.update()
                if stop:
                    if self.step_in_epoch < self.steps_per_epoch:
                        self._save()
                        raise self._interrupted()
                    self.stop.received = self.stop.received or signal.SIGTERM  # a peer's signal: torchrun sends SIGTERM
        return self.partial["loss_sum"] / self.partial["seen"], self.partial["correct"] / self.partial["seen"]

    def _backward(self, loss: torch.Tensor) -> None:
        if not self.ddp.enabled:
            loss.backward()
            return
        try:
            loss.backward()  # DDP all-reduces the gradients here
        except RuntimeError as err:
            raise self.ddp.lost(err) from err

    @torch.no_grad()
    def _evaluate(self) -> tuple[float, float]:
        self.model.eval()
        part = shard(len(self.data.x_test), self.ddp.rank, self.ddp.world_size)
        x, y = self.data.x_test[part], self.data.y_test[part]
        totals = torch.zeros(3, dtype=torch.float64, device=self.ddp.device)  # loss sum, correct, samples
        for start in range(0, len(x), self.config.eval_batch_size):
            xb = x[start:start + self.config.eval_batch_size].to(self.ddp.device)
            yb = y[start:start + self.config.eval_batch_size].to(self.ddp.device)
            loss, correct = loss_and_correct(self.model(xb), yb, self.config.loss)
            totals += torch.stack([loss.double() * len(xb), correct.double(),
                                   torch.tensor(float(len(xb)), dtype=torch.float64, device=totals.device)])
        loss_sum, correct, seen = self.ddp.all_reduce(totals).tolist()
        return loss_sum / seen, correct / seen

    # ---- setup ----------------------------------------------------------------------------------

    def _probe(self) -> None:
        """Run two training samples through the model (eval mode, no grad) to check shapes and labels."""
        sample = self.data.x_train[:2].to(self.ddp.device)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                logits = self.model(sample)
        except LayerlabError:
            raise
        except (RuntimeError, ValueError, TypeError) as err:
            raise ShapeError(
                f"{type(self.model).__name__} cannot take samples of shape {tuple(sample.shape[1:])} from dataset "
                f"{self.data.name!r} ({str(err).splitlines()[0] if str(err) else type(err).__name__}); build the model "
                f"for input_shape={tuple(sample.shape[1:])}"
            ) from err
        finally:
            self.model.train(was_training)
        if logits.ndim != 2:
            raise ShapeError(
                f"{type(self.model).__name__} must output (B, num_classes) logits, got shape {tuple(logits.shape)}; "
                "end it with a Flatten + Dense or a global pooling head"
            )
        classes = logits.shape[1]
        y = self.data.y_train
        if y.ndim == 2 and y.shape[1] != classes:
            raise ShapeError(
                f"{type(self.model).__name__} outputs {classes} classes but the multi-label targets of dataset "
                f"{self.data.name!r} have {y.shape[1]}; build it with num_classes={y.shape[1]}"
            )
        top = int(max(y.max(), self.data.y_test.max())) if y.ndim == 1 else 0
        if top >= classes:
            raise ShapeError(
                f"{type(self.model).__name__} outputs {classes} classes but dataset {self.data.name!r} has labels "
                f"up to {top}; build it with num_classes={top + 1}"
            )

    def _wrap(self) -> nn.Module:
        if not self.ddp.enabled:
            return self.model
        try:
            return nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.ddp.device.index] if self.ddp.device.type == "cuda" else None)
        except RuntimeError as err:
            raise self.ddp.lost(err) from err

    def _config_record(self) -> dict:
        return {"config": self.config.to_dict(), "world_size": self.ddp.world_size,
                "global_batch_size": self.config.batch_size * self.ddp.world_size,
                "steps_per_epoch": self.steps_per_epoch, "device": str(self.ddp.device),
                "model": type(self.model).__name__,
                "params": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
                "dataset": self.data.name, "data": self.data_id, "torch": torch.__version__}

    def _write_records(self) -> None:
        """``config.json`` and ``args.json``, once, when a new run starts (a resume never rewrites them)."""
        try:
            write_json(self.out / "config.json", self._config_record())
            if self.args_record is not None:
                write_json(self.out / "args.json", {**self.args_record, "data": self.data_id})
        except OSError as err:
            raise TrainingError(f"could not write the run records in {self.out}: {err.strerror or err}; nothing was "
                                "trained; free disk space or choose another --out") from err

    def _write_metrics(self) -> None:
        try:
            write_metrics(self.out, self.history, self.train_seconds)
        except OSError as err:
            raise TrainingError(
                f"could not write {self.out / 'metrics.csv'} and metrics.json: {err.strerror or err}; the checkpoint "
                f"{self.checkpoint_path} ({self._position()}) is written and intact and holds the metrics; free disk "
                "space, then continue with --resume (it rewrites the metrics files)"
            ) from err

    # ---- checkpoints ----------------------------------------------------------------------------

    def _save(self) -> None:
        """Rank 0 writes the checkpoint; every rank learns whether it worked."""
        if self.checkpoint_path is None:
            return
        states = self.ddp.all_gather(rng_state())
        error: TrainingError | None = None
        if self.ddp.is_main:
            try:
                save_checkpoint({
                    "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "global_step": self.global_step, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                    "partial": dict(self.partial), "history": list(self.history), "rng": states,
                    "sampler": {"seed": self.config.seed}, "config": self.config.to_dict(),
                    "world_size": self.ddp.world_size, "train_seconds": self.train_seconds, "data": self.data_id,
                }, self.checkpoint_path)
                if self.history:
                    self._write_metrics()
            except TrainingError as err:
                error = err
        failed = self.ddp.all_reduce(torch.tensor([float(error is not None)], device=self.ddp.device), op="max")
        if error is not None:
            raise error
        if failed.item():
            raise TrainingError(f"rank {self.ddp.rank}: rank 0 could not write {self.checkpoint_path}; see its message")
        self.last_checkpoint, self.last_checkpoint_at = self.checkpoint_path, self._position()

    def _restore(self) -> None:
        state = load_checkpoint(self.checkpoint_path)  # on the CPU: RNG states must stay CPU tensors
        check_resumable(state, self.checkpoint_path)
        saved = state["config"]
        changed = [f"{k}: checkpoint {saved.get(k)!r} != now {getattr(self.config, k)!r}"
                   for k in RESULT_FIELDS if saved.get(k) != getattr(self.config, k)]
        if changed:
            raise TrainingError(
                f"cannot resume {self.checkpoint_path}: the recipe changed ({'; '.join(changed)}); resume with the "
                "same settings, or start a new run in another --out folder"
            )
        if state["world_size"] != self.ddp.world_size:
            raise TrainingError(
                f"cannot resume {self.checkpoint_path}: it was written by {state['world_size']} process(es), this run "
                f"has {self.ddp.world_size}; resume with the same --nproc_per_node (data order depends on it)"
            )
        before = state.get("data")
        if isinstance(before, dict) and before.get("sha256") != self.data_id["sha256"]:
            raise TrainingError(
                f"cannot resume {self.checkpoint_path}: the dataset differs from the one the run trained on (run: "
                f"{_data_text(before)}; now: {_data_text(self.data_id)}); resume with the same --dataset and --limit, "
                "or start a new run in another --out folder"
            )
        self._check_progress(state)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise TrainingError(
                f"checkpoint {self.checkpoint_path} does not fit {type(self.model).__name__} "
                f"({str(err).splitlines()[0]}); resume with the same model, width and data set"
            ) from err
        self.global_step, self.epoch = state["global_step"], state["epoch"]
        self.step_in_epoch, self.partial = state["step_in_epoch"], dict(state["partial"])
        self.history, self.train_seconds = list(state["history"]), state["train_seconds"]
        set_rng_state(state["rng"][self.ddp.rank])
        self.last_checkpoint, self.last_checkpoint_at = self.checkpoint_path, self._position()

    def _check_progress(self, state: dict) -> None:
        """The counters of a checkpoint must describe a point of this run (a crafted file may not)."""
        epoch, step, spe = state["epoch"], state["step_in_epoch"], self.steps_per_epoch
        problems = []
        if epoch > self.config.epochs:
            problems.append(f"epoch {epoch} > epochs {self.config.epochs}")
        if step >= spe:
            problems.append(f"step_in_epoch {step} >= steps per epoch {spe}")
        if state["global_step"] != epoch * spe + step:
            problems.append(f"global_step {state['global_step']} != epoch × steps per epoch + step_in_epoch = "
                            f"{epoch * spe + step}")
        if len(state["history"]) != epoch:
            problems.append(f"{len(state['history'])} history rows for {epoch} epochs")
        if len(state["rng"]) != self.ddp.world_size:
            problems.append(f"{len(state['rng'])} RNG states for {self.ddp.world_size} process(es)")
        if problems:
            raise TrainingError(f"cannot resume {self.checkpoint_path}: its counters are inconsistent "
                                f"({'; '.join(problems)}); it is damaged; delete it and start a new run")

    # ---- guards ---------------------------------------------------------------------------------

    def _agreed_stop(self) -> bool:
        flag = torch.tensor([float(self.stop.received is not None)], device=self.ddp.device)
        stop = bool(self.ddp.all_reduce(flag, op="max").item())
        if stop and self.stop.received is None:
            self.stop.received = signal.SIGTERM  # a peer's signal: torchrun sends SIGTERM to every worker
        return stop

    def _interrupted(self) -> TrainingInterrupted:
        signum = self.stop.received or signal.SIGTERM
        name = signal.Signals(signum).name
        where = self._position()
        if self.last_checkpoint is None:
            return TrainingInterrupted(f"training stopped by {name} at {where}; no out_dir was given, so nothing "
                                       "was saved", signum)
        return TrainingInterrupted(
            f"training stopped by {name} at {where}; checkpoint written to {self.last_checkpoint}; continue with "
            f"`layerlab train --out {self.out} --resume` (or fit(..., out_dir={str(self.out)!r}, resume=True))", signum)

    def _non_finite(self, loss_sum: float, lr: float) -> TrainingError:
        what = "nan" if math.isnan(loss_sum) else "inf"
        last = self._last_good()
        return TrainingError(
            f"loss became {what} at epoch {self.epoch + 1}, step {self.step_in_epoch + 1} (lr={lr:.3g}): lower the "
            f"learning rate, check the input for NaNs, or enable gradient clipping (grad_clip / --grad-clip); {last}"
        )

    def _check_weights(self, test_loss: float) -> None:
        """Never checkpoint non-finite weights (a last step can blow them up after a finite loss)."""
        finite = all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        if finite and math.isfinite(test_loss):
            return
        raise TrainingError(
            f"weights or test loss became non-finite at the end of epoch {self.epoch} (test loss {test_loss}): lower "
            f"the learning rate or enable gradient clipping (grad_clip / --grad-clip); {self._last_good()}"
        )

    def _position(self) -> str:
        if self.step_in_epoch:
            return f"epoch {self.epoch + 1}, step {self.step_in_epoch} of {self.steps_per_epoch}"
        return f"the end of epoch {self.epoch}"

    def _last_good(self) -> str:
        if self.last_checkpoint is None:
            return "no checkpoint was written yet" if self.out is not None else "no out_dir, so no checkpoint"
        return f"last good checkpoint: {self.last_checkpoint} ({self.last_checkpoint_at})"


def _data_text(data: dict) -> str:
    return (f"{data.get('name')!r}, {data.get('train_samples')} train / {data.get('test_samples')} test samples, "
            f"sha256 {str(data.get('sha256'))[:12]}")
