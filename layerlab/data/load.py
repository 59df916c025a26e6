"""``load_dataset``: one entry point for built-in data and for files users have on disk."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from layerlab.data.builtin import BUILTIN
from layerlab.data.cifar import find_cifar_folder, load_cifar
from layerlab.data.dataset import Dataset, subsample
from layerlab.data.idx import find_idx_files, load_idx_folder
from layerlab.data.images import load_image_folder
from layerlab.data.limits import data_max_bytes
from layerlab.data.npz import load_npz
from layerlab.errors import ArgumentError, DataError

__all__ = ["load_dataset", "detect_format"]


def load_dataset(name_or_path: str | os.PathLike = "mnist1d", *, seed: int = 0, limit: int | None = None,
                 max_bytes: int | None = None) -> Dataset:
    """Load a built-in data set by name, or a data set from a file or folder.

    Built-in names (no download, see :mod:`layerlab.data.builtin`): ``"mnist1d"``, ``"mnist"``,
    ``"digits"``. Anything else is a path, and its format is detected by :func:`detect_format`:

    - a folder with the four MNIST/Fashion-MNIST IDX files (``train-images-idx3-ubyte[.gz]``,
      ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``),
      see :func:`layerlab.data.idx.load_idx`;
    - a CIFAR-10 (``cifar-10-batches-py``: ``data_batch_1..5``, ``test_batch``, ``batches.meta``) or
      CIFAR-100 (``cifar-100-python``: ``train``, ``test``, ``meta``) python-pickle folder, read by a
      restricted unpickler, see :mod:`layerlab.data.cifar`;
    - an ``.npz`` file with ``x``, ``y`` (and optionally ``x_test``, ``y_test``, ``classes``), see
      :func:`layerlab.data.npz.load_npz`;
    - an image folder, one sub-folder per class (or ``train/`` and ``test/`` each holding those),
      see :func:`layerlab.data.images.load_image_folder`.

    Scaling: 8-bit sources (MNIST, IDX ``ubyte``, CIFAR, 8-bit images) are divided by 255 into
    [0, 1], 16-bit images by 65535, float images are kept (see :mod:`layerlab.data.images`);
    MNIST-1D is standardised by its generator; digits are divided by 16; ``.npz`` arrays and
    non-8-bit IDX data are cast to float32 unchanged. No per-dataset standardisation is applied.

    Args:
        name_or_path: a built-in name or a path. Default: ``"mnist1d"``.
        seed: seed of the train/test split where the source has none (mnist, digits, npz without
            ``x_test``, image folders) and of the ``limit`` subset. Default: ``0``.
        limit: keep at most this many samples per split (a seeded random subset, order kept);
            ``None`` keeps all. Default: ``None``.
        max_bytes: the data budget of a file load, see :mod:`layerlab.data.limits`. Default:
            ``None`` (``$LAYERLAB_DATA_MAX_BYTES`` or 2 GiB).

    Returns:
        A :class:`~layerlab.data.dataset.Dataset` with ``x`` of shape ``(N, C, *spatial)`` float32 and
        ``y`` of shape ``(N,)`` int64.

    Raises:
        DataError: the path does not exist, its format is unknown, or the file is corrupt,
            truncated, mismatched or unsafe (the message names the file and the fix).
        SizeLimitError: the file's data would pass the data budget (checked before allocating).
        ArgumentError: ``seed``, ``limit`` or ``max_bytes`` is not a valid integer.

    Examples:
        >>> ds = load_dataset("digits", limit=100)
        >>> ds.x_train.shape, ds.y_train.dtype, ds.num_classes
        ((100, 1, 8, 8), dtype('int64'), 10)
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ArgumentError(f"seed must be a non-negative integer. Received: seed={seed!r}")
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ArgumentError(
            f"name_or_path must be a built-in name ({', '.join(BUILTIN)}) or a path. "
            f"Received: {name_or_path!r} of type {type(name_or_path).__name__}"
        )
    key = os.fspath(name_or_path)
    if not str(key).strip():
        raise ArgumentError(f"name_or_path is empty: pass a built-in name ({', '.join(BUILTIN)}) or the "
                            f"path of a data file or folder (use '.' for the current folder). Received: {key!r}")
    if isinstance(name_or_path, str) and key.lower() in BUILTIN and not Path(key).exists():
        dataset = BUILTIN[key.lower()](int(seed))
    else:
        dataset = _load_path(Path(key), int(seed), data_max_bytes(max_bytes))
    return subsample(dataset, limit, int(seed))


def detect_format(path: str | os.PathLike) -> str:
    """The format of a data file or folder: one of ``"idx"``, ``"cifar10"``, ``"cifar100"``,
    ``"npz"``, ``"image_folder"``.

    Raises:
        DataError: nothing exists at ``path``, or it is not in any of these formats.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"{path}: no such file or folder, and not a built-in data set name "
            f"({', '.join(BUILTIN)}); check the path"
        )
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return "npz"
        raise DataError(
            f"{path}: cannot tell the format of this file: a data file must be an .npz with x and y "
            f"arrays; IDX, CIFAR and image data are loaded from their folder, so pass {path.parent}"
        )
    if not path.is_dir():
        raise DataError(f"{path}: neither a regular file nor a folder (a FIFO or device?); pass a data "
                        f"file or folder")
    if find_idx_files(path, require=False) is not None:
        return "idx"
    found = find_cifar_folder(path)
    if found is not None:
        return found[0]
    if any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
        return "image_folder"
    raise DataError(
        f"{path}: this folder holds no data layerlab can read: expected the four MNIST IDX files, "
        f"a CIFAR-10/100 python folder, or one sub-folder of images per class"
    )


def _load_path(path: Path, seed: int, max_bytes: int) -> Dataset:
    fmt = detect_format(path)
    if fmt == "idx":
        return load_idx_folder(path, max_bytes=max_bytes)
    if fmt in ("cifar10", "cifar100"):
        return load_cifar(path, max_bytes=max_bytes)
    if fmt == "npz":
        return load_npz(path, seed=seed, max_bytes=max_bytes)
    return load_image_folder(path, seed=seed, max_bytes=max_bytes)
