"""The training data as tensors, checked once, and the batches of each epoch.

Data order: epoch ``e`` visits ``randperm(N, generator seeded with seed + e)`` — torch's
:class:`~torch.utils.data.DistributedSampler`, also for one process. With ``W`` processes rank ``r``
takes every ``W``-th index starting at ``r``, so step ``s`` of the ``W`` processes together covers
exactly the samples of step ``s`` of one process with a ``W``-times larger batch. The order is a
pure function of ``(seed, epoch)``, which is what makes resuming mid-epoch exact.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from layerlab.errors import ArgumentError, DataError

__all__ = ["TensorData", "as_tensors", "epoch_loader", "steps_per_epoch", "shard", "fingerprint"]


@dataclass
class TensorData:
    """Checked training and test tensors.

    Attributes:
        x_train: ``(N, *input_shape)`` in the model's floating dtype.
        y_train: ``(N,)`` int64 class labels, or ``(N, K)`` 0/1 multi-label targets (``loss="bce"``).
        x_test, y_test: the same for the test split.
        name: the data set's name, for messages.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str


class _IndexBatches(torch.utils.data.Dataset):
    """Maps a list of indices to one batch ``(x[idx], y[idx])`` (one fancy-index, no per-sample collate)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices)
        return self.x[index], self.y[index]


def as_tensors(dataset: object, dtype: torch.dtype, loss: str) -> TensorData:
    """Check a :class:`layerlab.data.Dataset`-like object and turn its arrays into tensors.

    Args:
        dataset: anything with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (numpy arrays or tensors).
        dtype: floating dtype of the inputs (the model's parameter dtype).
        loss: ``"ce"`` needs 1-d integer labels; ``"bce"`` also takes ``(N, K)`` 0/1 targets.

    Raises:
        ArgumentError: ``dataset`` lacks the arrays.
        DataError: sizes disagree, a split is empty, inputs hold NaN/Inf, labels are negative or not integers.
    """
    missing = [a for a in ("x_train", "y_train", "x_test", "y_test") if not hasattr(dataset, a)]
    if missing:
        raise ArgumentError(
            f"dataset must have x_train, y_train, x_test and y_test arrays (a layerlab.data.Dataset); "
            f"{type(dataset).__name__} lacks {', '.join(missing)}. Load one with layerlab.data.load_dataset(...)"
        )
    name = str(getattr(dataset, "name", type(dataset).__name__))
    tensors = {}
    for split in ("train", "test"):
        x = torch.as_tensor(np.asarray(getattr(dataset, f"x_{split}")))
        y = torch.as_tensor(np.asarray(getattr(dataset, f"y_{split}")))
        if len(x) == 0:
            raise DataError(f"dataset {name!r}: the {split} split is empty; training needs samples in both splits")
        if len(x) != len(y):
            raise DataError(
                f"dataset {name!r}: x_{split} has {len(x)} samples but y_{split} has {len(y)}; "
                "each sample needs exactly one label row"
            )
        if x.ndim < 2:
            raise DataError(
                f"dataset {name!r}: x_{split} must be (N, *input_shape), got shape {tuple(x.shape)}; "
                "add a feature dimension, e.g. x[:, None]"
            )
        if x.is_floating_point():
            bad = ~torch.isfinite(x.reshape(len(x), -1)).all(dim=1)  # (N,)
            if bad.any():
                raise DataError(
                    f"dataset {name!r}: x_{split} holds NaN/Inf in {int(bad.sum())} sample(s) "
                    f"(first: sample {int(bad.nonzero()[0])}); clean or impute them before training"
                )
        tensors[f"x_{split}"] = x.to(dtype)
        tensors[f"y_{split}"] = _labels(y, name, split, loss)
    return TensorData(name=name, **tensors)


def _labels(y: torch.Tensor, name: str, split: str, loss: str) -> torch.Tensor:
    if y.ndim == 2 and loss == "bce":
        if not ((y == 0) | (y == 1)).all():
            raise DataError(f"dataset {name!r}: multi-label y_{split} must hold only 0 and 1 for loss='bce'")
        return y.to(torch.float32)
    if y.ndim != 1:
        raise DataError(
            f"dataset {name!r}: y_{split} must be (N,) class indices (or (N, K) 0/1 targets with loss='bce'), "
            f"got shape {tuple(y.shape)}"
        )
    if y.is_floating_point() and not torch.equal(y, y.round()):
        raise DataError(f"dataset {name!r}: y_{split} holds non-integer labels; labels must be class indices 0..K-1")
    y = y.to(torch.int64)
    if (y < 0).any():
        raise DataError(f"dataset {name!r}: y_{split} holds negative labels (min {int(y.min())}); labels must be 0..K-1")
    return y


def fingerprint(data: TensorData) -> dict:
    """The identity of the training data: name, sizes, and the SHA-256 of every split's bytes.

    ``sha256`` hashes ``x_train, y_train, x_test, y_test`` in that order (each as its dtype,
    shape and contiguous CPU bytes), so two data sets agree only when every value does; ``--limit``,
    another file or an edited file all change it.

    Returns:
        ``{"name", "train_samples", "test_samples", "sha256"}``.
    """
    digest = hashlib.sha256()
    for tensor in (data.x_train, data.y_train, data.x_test, data.y_test):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return {"name": data.name, "train_samples": len(data.x_train), "test_samples": len(data.x_test),
            "sha256": digest.hexdigest()}


def epoch_loader(data: TensorData, batch_size: int, seed: int, epoch: int, rank: int, world_size: int,
                 skip: int = 0, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """The batches of one epoch for this process, skipping the first ``skip`` (resume mid-epoch).

    Returns:
        A loader of ``(x, y)`` batches, ``(B, *input_shape)`` and ``(B,)``.
    """
    sampler = DistributedSampler(_IndexBatches(data.x_train, data.y_train), num_replicas=world_size, rank=rank,
                                 shuffle=True, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    order = list(sampler)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return DataLoader(_IndexBatches(data.x_train, data.y_train), sampler=batches[skip:], batch_size=None,
                      num_workers=num_workers, pin_memory=pin_memory)


def steps_per_epoch(n: int, batch_size: int, world_size: int) -> int:
    """``ceil(ceil(n / world_size) / batch_size)``: the sampler pads each rank to ``ceil(n / world_size)`` samples."""
    return -(-(-(-n // world_size)) // batch_size)


def shard(n: int, rank: int, world_size: int) -> slice:
    """Contiguous, non-overlapping slice of ``range(n)`` for evaluation on ``rank`` (no padding)."""
    return slice(n * rank // world_size, n * (rank + 1) // world_size)
