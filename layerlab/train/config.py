"""The training recipe: one frozen dataclass, validated when it is made.

Every field that changes the numbers a run produces is listed in :data:`RESULT_FIELDS`; a resumed
run must agree with its checkpoint on all of them (see :func:`layerlab.train.fit`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from layerlab.errors import ArgumentError

__all__ = ["TrainConfig", "DEFAULT_RECIPE", "DEFAULT_THREADS", "default_warmup", "RESULT_FIELDS", "MAX_THREADS",
           "MAX_SEED", "check_threads", "check_dataset_argument"]

# The most torch CPU threads a process may ask for (--threads of train and compare). Far more than
# any CPU has; libgomp aborts at ~20,000 threads and crashes at 100,000, so the bound stops typos.
MAX_THREADS = 1024
# torch.manual_seed takes a 64-bit integer; seeds are 0 .. MAX_SEED
MAX_SEED = 2**63 - 1

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "step", "none")
LOSSES = ("ce", "bce")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimizer, learning-rate schedule, loss, batches, seeds and device.

    The learning rate at global step ``t`` (counted over all epochs) is

    * warmup (``t < W``, ``W = warmup_epochs · steps_per_epoch``): ``lr · (t + 1) / W``;
    * ``"cosine"``: ``lr · ½ · (1 + cos(π · (t − W) / (T − W)))`` with ``T`` the total steps
      (Loshchilov & Hutter, SGDR, 2017, without restarts);
    * ``"step"``: ``lr · lr_gamma ** (epoch // lr_step_size)`` (torch's ``StepLR``);
    * ``"none"``: ``lr``.

    Args:
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``. Default: ``"adam"``.
        lr: peak learning rate. Default: ``1e-3``.
        momentum: SGD momentum (ignored by Adam). Default: ``0.9``.
        weight_decay: L2 penalty added to the gradient, as torch's optimizers do. Default: ``0.0``.
        batch_size: samples per step **per process**; under ``torchrun`` the global batch is
            ``batch_size × world size``. Default: ``128``.
        epochs: passes over the training set. Default: ``10``.
        schedule: ``"cosine"``, ``"step"`` or ``"none"``. Default: ``"cosine"``.
        warmup_epochs: epochs of linear warmup before the schedule. Default: ``0``.
        lr_step_size: epochs between decays of the ``"step"`` schedule. Default: ``30``.
        lr_gamma: decay factor of the ``"step"`` schedule. Default: ``0.1``.
        loss: ``"ce"`` (softmax cross-entropy, one label per sample) or ``"bce"`` (sigmoid binary
            cross-entropy per class, multi-label; integer labels are one-hot encoded). Default: ``"ce"``.
        grad_clip: clip the global gradient norm to this value; ``None`` = no clipping. Default: ``None``.
        seed: seeds torch, numpy, python and the data order. Default: ``0``.
        deterministic: ``torch.use_deterministic_algorithms(True, warn_only=True)`` during the run.
            Default: ``False``.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Under
            ``torchrun`` with CUDA each process uses ``cuda:LOCAL_RANK``. Default: ``"auto"``.
        num_workers: data-loader worker processes. Default: ``0``.
        eval_batch_size: samples per evaluation batch. Default: ``1000``.
        ddp_timeout: seconds a process waits for the others in a collective before it gives up
            (``init_process_group(timeout=...)``). Default: ``120.0``.

    Examples:
        >>> TrainConfig(optimizer="sgd", lr=0.05, epochs=3).schedule
        'cosine'
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 10
    schedule: str = "cosine"
    warmup_epochs: int = 0
    lr_step_size: int = 30
    lr_gamma: float = 0.1
    loss: str = "ce"
    grad_clip: float | None = None
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    num_workers: int = 0
    eval_batch_size: int = 1000
    ddp_timeout: float = 120.0

    def __post_init__(self) -> None:
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("loss", self.loss, LOSSES)
        _positive_number("lr", self.lr)
        _positive_int("batch_size", self.batch_size)
        _positive_int("epochs", self.epochs)
        _positive_int("lr_step_size", self.lr_step_size)
        _positive_int("eval_batch_size", self.eval_batch_size)
        _positive_number("ddp_timeout", self.ddp_timeout)
        _non_negative_int("warmup_epochs", self.warmup_epochs)
        _non_negative_int("num_workers", self.num_workers)
        _non_negative_number("momentum", self.momentum)
        _non_negative_number("weight_decay", self.weight_decay)
        _positive_number("lr_gamma", self.lr_gamma)
        if self.grad_clip is not None:
            _positive_number("grad_clip", self.grad_clip)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise ArgumentError(
                f"TrainConfig.seed must be a non-negative integer up to 2**63 - 1. Received: seed={self.seed!r}"
            )
        if self.warmup_epochs >= self.epochs:
            raise ArgumentError(
                f"TrainConfig.warmup_epochs must be smaller than epochs. Received: "
                f"warmup_epochs={self.warmup_epochs}, epochs={self.epochs}; lower warmup_epochs"
            )
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        ):
            raise ArgumentError(
                f"TrainConfig.device must be 'auto', 'cpu', 'cuda' or 'cuda:N'. Received: device={self.device!r}"
            )

    def to_dict(self) -> dict:
        """The config as a JSON-ready dict (field name -> value)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ArgumentError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ArgumentError(
                f"TrainConfig has no field(s) {', '.join(unknown)}. Known fields: {', '.join(sorted(names))}"
            )
        return cls(**data)


# Fields that change the numbers; `device`, `num_workers`, `eval_batch_size` and `ddp_timeout` don't.
RESULT_FIELDS = (
    "optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs", "schedule",
    "warmup_epochs", "lr_step_size", "lr_gamma", "loss", "grad_clip", "seed", "deterministic",
)


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ArgumentError(f"TrainConfig.{name} must be one of {options}. Received: {name}={value!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_number(name: str, value: object) -> None:
    if not _is_number(value) or value <= 0:
        raise ArgumentError(f"TrainConfig.{name} must be a finite number > 0. Received: {name}={value!r}")


def _non_negative_number(name: str, value: object) -> None:
    if not _is_number(value) or value < 0:
        raise ArgumentError(f"TrainConfig.{name} must be a finite number >= 0. Received: {name}={value!r}")


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ArgumentError(f"TrainConfig.{name} must be a positive integer. Received: {name}={value!r}")


def _non_negative_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ArgumentError(f"TrainConfig.{name} must be an integer >= 0. Received: {name}={value!r}")


def check_threads(value: object, where: str = "") -> int:
    """``value`` if it is an integer in ``1 .. MAX_THREADS``, else :class:`ArgumentError`.

    ``where`` prefixes the message when the value does not come from the command line (``args.json``).
    """
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_THREADS:
        raise ArgumentError(f"{where}--threads must be an integer from 1 to {MAX_THREADS}. Received: --threads {value!r}")
    return value


def check_dataset_argument(value: object, where: str = "") -> str:
    """``value`` if it is a non-empty string (a built-in name or a path), else :class:`ArgumentError`.

    An empty string would name the current folder, which is never meant.
    """
    if not isinstance(value, str) or not value.strip():
        raise ArgumentError(
            f"{where}--dataset must be a built-in data set name (mnist1d, mnist, digits, poskeys) or a path. "
            f"Received: --dataset {value!r}"
        )
    return value


# The command line's recipe, shared by `layerlab train` and `layerlab compare` (and run_compare's default):
# Adam with a 1-epoch warmup then cosine decay; 15 epochs of batch 100 = 600 steps on MNIST-1D's 4,000
# training signals (the MNIST-1D paper trains 6,000 steps; 600 reach within ~1-2 points of it).
DEFAULT_RECIPE = TrainConfig(optimizer="adam", lr=1e-2, batch_size=100, epochs=15, schedule="cosine",
                             warmup_epochs=1)
# torch CPU threads of the command line: the zoo's models are so small that 1 thread beats 2 (docs/compare.md)
DEFAULT_THREADS = 1


def default_warmup(epochs: int) -> int:
    """The recipe's warmup for a run of ``epochs`` epochs: :data:`DEFAULT_RECIPE`'s, but none with 1 epoch.

    Examples:
        >>> default_warmup(15), default_warmup(1)
        (1, 0)
    """
    return min(DEFAULT_RECIPE.warmup_epochs, max(epochs - 1, 0))
