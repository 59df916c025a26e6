"""The :class:`Dataset` every loader returns, and the checks and splits the loaders share.

A dataset is four numpy arrays in the layout torch's conv layers read, channels first::

    x_train (N, C, *spatial) float32    y_train (N,) int64, values in [0, num_classes)
    x_test  (M, C, *spatial) float32    y_test  (M,) int64

``spatial`` is ``(L,)`` for signals (MNIST-1D: ``(1, 40)``) and ``(H, W)`` for images (MNIST:
``(1, 28, 28)``). Labels are integer class indices; ``classes[k]`` names class ``k``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from layerlab.data.limits import MAX_CLASSES
from layerlab.errors import ArgumentError, DataError

__all__ = ["Dataset", "require_regular_file", "stratified_split", "subsample"]


@dataclass(eq=False)  # arrays have no single truth value; compare fields with numpy
class Dataset:
    """A classification data set split into train and test arrays.

    Args:
        name: where it came from: a built-in name (``"mnist1d"``) or the path that was loaded.
        x_train: inputs, ``(N, C, *spatial)`` float32.
        y_train: labels, ``(N,)`` int64 in ``[0, len(classes))``.
        x_test: inputs, ``(M, C, *spatial)`` float32, same per-sample shape as ``x_train``.
        y_test: labels, ``(M,)`` int64.
        classes: one name per class index.

    The constructor checks all of the above, that there are at most
    :data:`~layerlab.data.limits.MAX_CLASSES` classes and that the training split holds at least
    two of them (one class trains to a meaningless 100%), and raises :class:`~layerlab.errors.DataError` naming
    the array that is wrong, so a dataset that exists is usable.

    Examples:
        >>> import numpy as np
        >>> ds = Dataset("toy", np.zeros((4, 1, 8), np.float32), np.array([0, 1, 0, 1]),
        ...              np.zeros((2, 1, 8), np.float32), np.array([1, 0]), ["a", "b"])
        >>> ds.input_shape, ds.num_classes
        ((1, 8), 2)
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]

    def __post_init__(self) -> None:
        if isinstance(self.classes, (str, bytes)) or not hasattr(self.classes, "__len__") \
                or len(self.classes) > MAX_CLASSES:
            count = f"{len(self.classes):,} names" if hasattr(self.classes, "__len__") else type(self.classes).__name__
            raise DataError(f"dataset {self.name!r}: classes must be a list of at most {MAX_CLASSES:,} names. "
                            f"Received: {count}")
        self.classes = [str(c) for c in self.classes]
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim < 3:
                raise DataError(
                    f"dataset {self.name!r}: x_{split} must be a float32 array (N, C, *spatial) with "
                    f"ndim >= 3. Received: {_describe(x)}; convert with "
                    f"x.astype(np.float32) and add a channel axis for single-channel data"
                )
            if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.ndim != 1:
                raise DataError(
                    f"dataset {self.name!r}: y_{split} must be an int64 array (N,) of class indices. "
                    f"Received: {_describe(y)}"
                )
            if len(x) != len(y):
                raise DataError(
                    f"dataset {self.name!r}: x_{split} has {len(x)} samples but y_{split} has "
                    f"{len(y)} labels; each input needs exactly one label"
                )
            if len(y) == 0:
                raise DataError(f"dataset {self.name!r}: the {split} split is empty; it needs at least one sample")
            if y.min() < 0 or y.max() >= len(self.classes):
                raise DataError(
                    f"dataset {self.name!r}: y_{split} must hold class indices in "
                    f"[0, {len(self.classes)}) for {len(self.classes)} classes. Received: labels "
                    f"from {y.min()} to {y.max()}; renumber the labels 0..K-1 or list all classes"
                )
        present = np.unique(self.y_train)
        if len(present) < 2:
            k = int(present[0])
            raise DataError(
                f"dataset {self.name!r}: the training split holds only class {self.classes[k]!r} (label "
                f"{k}); a classifier needs at least two classes to learn anything (one class scores a "
                f"meaningless 100%); add samples of the other classes"
            )
        if 0 in self.x_train.shape[1:]:
            raise DataError(f"dataset {self.name!r}: samples of shape {self.x_train.shape[1:]} hold no values; "
                            f"every per-sample dimension (C, *spatial) must be at least 1")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"dataset {self.name!r}: train and test samples must have one shape. Received: "
                f"x_train {self.x_train.shape[1:]} per sample, x_test {self.x_test.shape[1:]}"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample shape ``(C, *spatial)``, the ``input_shape`` that :func:`layerlab.zoo.build` takes."""
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(classes)``."""
        return len(self.classes)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )


def _describe(a) -> str:
    if isinstance(a, np.ndarray):
        return f"array of shape {a.shape} and dtype {a.dtype}"
    return f"an object of type {type(a).__name__}"


def require_regular_file(path, what: str, hint: str) -> None:
    """Raise :class:`DataError` unless ``path`` is a regular file (symlinks followed).

    Checked with ``stat`` only: a FIFO or a device is never opened (reading a FIFO blocks forever).

    Args:
        path: the file.
        what: what it should be, e.g. ``"IDX file"``.
        hint: what the user should do, ending the message.
    """
    path = Path(path)
    if path.is_file():
        return
    if os.path.lexists(path) and not path.is_dir():
        raise DataError(f"{path}: expected a regular {what}, found a FIFO, device, socket or broken "
                        f"symlink; layerlab never opens those (a FIFO would block forever): {hint}")
    raise DataError(f"{path}: no such {what}; {hint}")


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified train/test split of sample indices.

    Each class ``k`` with ``n_k`` samples gives ``floor(n_k * test_fraction)`` samples to the test
    set (after a seeded shuffle within the class); both index arrays are then shuffled with the
    same generator, so classes are interleaved.

    Args:
        y: labels ``(N,)``.
        test_fraction: share of each class that goes to the test set, in ``(0, 1)``.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(train_index, test_index)``, int64 arrays that partition ``range(N)``.

    Examples:
        >>> tr, te = stratified_split(np.repeat(np.arange(2), 10), 0.2, seed=0)
        >>> len(tr), len(te)
        (16, 4)
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    # one stable sort instead of a y == k scan per class: O(N log N) for any number of classes,
    # with each class's indices in ascending order as before (same draws, same split)
    order = np.argsort(y, kind="stable")
    _, starts, counts = np.unique(y[order], return_index=True, return_counts=True)
    for start, count in zip(starts, counts):
        idx = rng.permutation(order[start:start + count])
        n_test = int(len(idx) * test_fraction)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    train_index = rng.permutation(np.concatenate(train)).astype(np.int64)
    test_index = rng.permutation(np.concatenate(test)).astype(np.int64)
    return train_index, test_index


def subsample(dataset: Dataset, limit: int | None, seed: int) -> Dataset:
    """Keep at most ``limit`` samples of each split: a seeded random subset in the original order.

    Args:
        dataset: the full data set.
        limit: maximum samples per split; ``None`` keeps everything. Default: ``None``.
        seed: seed of ``numpy.random.default_rng`` choosing the subset.

    Returns:
        A new :class:`Dataset` (the arrays are copies) or ``dataset`` itself when nothing is cut.
    """
    if limit is None:
        return dataset
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ArgumentError(
            f"limit must be a positive integer (samples kept per split) or None. Received: limit={limit!r}"
        )
    rng = np.random.default_rng(seed)
    arrays = {}
    for split in ("train", "test"):
        x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        if len(y) > limit:
            keep = np.sort(rng.choice(len(y), size=int(limit), replace=False))
            x, y = x[keep], y[keep]
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    return Dataset(dataset.name, classes=list(dataset.classes), **arrays)
