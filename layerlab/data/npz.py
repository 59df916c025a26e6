"""``.npz`` data sets: ``x``, ``y`` and optionally ``x_test``, ``y_test``, ``classes``.

Layout: ``x`` is ``(N, C, *spatial)`` channels first, as torch's conv layers read it; a 2-d ``x``
``(N, F)`` is read as ``(N, 1, F)`` (one channel). Save single-channel images as ``(N, 1, H, W)``:
a 3-d ``x`` is ``(N, C, L)``. ``y`` holds integer class indices (float arrays are accepted when every
value is a whole number). Without ``x_test``/``y_test`` a seeded stratified 80/20 split is made.
``classes`` (a string array) names the classes; otherwise they are ``"0" .. str(max label)``.
Values are cast to float32 unchanged (no scaling).

The file is opened with ``allow_pickle=False`` (object arrays are refused, nothing is executed), and
every member must be a ``.npy`` array whose header is checked against the member's stored size and
the data budget (:mod:`layerlab.data.limits`) before numpy allocates it.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

from layerlab.data.dataset import Dataset, require_regular_file, stratified_split
from layerlab.data.limits import DEFLATE_MAX_RATIO, DataBudget, check_top_label, numbered_classes
from layerlab.errors import DataError, SizeLimitError

__all__ = ["load_npz"]

# what a member's stored bytes can expand to: stored 1:1, deflate at most ~1032:1 (zlib technical details)
_MAX_RATIO = {zipfile.ZIP_STORED: 1, zipfile.ZIP_DEFLATED: DEFLATE_MAX_RATIO}


def load_npz(path: str | os.PathLike, *, seed: int = 0, max_bytes: int | None = None) -> Dataset:
    """A data set from an ``.npz`` file.

    Args:
        path: the file, written e.g. by ``np.savez(path, x=x, y=y)``.
        seed: seed of the stratified 80/20 split when the file has no ``x_test``. Default: ``0``.
        max_bytes: the data budget (see :mod:`layerlab.data.limits`). Default: ``None``
            (``$LAYERLAB_DATA_MAX_BYTES`` or 2 GiB).

    Returns:
        A :class:`~layerlab.data.dataset.Dataset`.

    Raises:
        DataError: missing file, not a zip/npz, object arrays, missing keys, a member whose header
            claims more data than it stores, x/y length mismatch, NaN/Inf inputs, labels that are
            not non-negative whole numbers, more than ``MAX_CLASSES`` classes, one class.
        SizeLimitError: the arrays would pass the data budget (checked before reading them).

    Examples:
        >>> import numpy as np, tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "toy.npz")
        >>> np.savez(f, x=np.random.rand(50, 1, 8).astype(np.float32), y=np.arange(50) % 2)
        >>> load_npz(f).input_shape
        (1, 8)
    """
    path = Path(path)
    require_regular_file(path, ".npz file", "check the path")
    check_npz_members(path, DataBudget(max_bytes), inputs=("x", "x_test"))
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise DataError(f"{path}: holds an object array, which only pickle can read and layerlab "
                            f"refuses (it can run code); save numeric arrays, e.g. "
                            f"np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))") from None
        raise DataError(f"{path}: not a readable .npz file ({err}); write it with np.savez") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable .npz file ({err}); write it with np.savez") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{path}: missing the {key!r} array (found: {sorted(arrays) or 'no arrays'}); "
                            f"save inputs as x and labels as y: np.savez(path, x=x, y=y)")
    if ("x_test" in arrays) != ("y_test" in arrays):
        have, lack = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise DataError(f"{path}: has {have!r} but no {lack!r}; save both or neither")
    x, y = _inputs(arrays["x"], path, "x"), _labels(arrays["y"], path, "y")
    _same_length(x, y, path, "x", "y")
    if len(y) == 0:
        raise DataError(f"{path}: 'x' and 'y' hold no samples; save at least one per class")
    if "x_test" in arrays:
        x_test, y_test = _inputs(arrays["x_test"], path, "x_test"), _labels(arrays["y_test"], path, "y_test")
        _same_length(x_test, y_test, path, "x_test", "y_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(f"{path}: x has samples of shape {x.shape[1:]} but x_test {x_test.shape[1:]}; "
                            f"train and test inputs must have one shape")
    else:
        train, test = stratified_split(y, 0.2, seed)
        if len(test) == 0:
            raise DataError(f"{path}: {len(y)} samples are too few to split off a 20% test set per class; "
                            f"add samples or save x_test and y_test")
        x, y, x_test, y_test = x[train], y[train], x[test], y[test]
    top = max(int(y.max()), int(y_test.max()))
    if "classes" in arrays:
        names = arrays["classes"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise DataError(f"{path}: 'classes' must be a 1-d string array, got {names.dtype} of shape "
                            f"{names.shape}")
        classes = [str(n) for n in names]
    else:
        classes = numbered_classes(top, str(path))
    return Dataset(str(path), x, y, x_test, y_test, classes)


def check_npz_members(path: Path, budget: DataBudget, inputs: tuple[str, ...] = ()) -> None:
    """Check every member's ``.npy`` header against its stored size and ``budget`` before numpy reads it.

    ``np.load`` allocates an array of the header's shape before reading the data, and it reads a
    member whatever its name (``x`` as well as ``x.npy``), so every member is checked: it must be a
    ``.npy`` array, stored or deflated, whose claimed ``prod(shape)·itemsize`` bytes fit the
    member's uncompressed size and what its stored bytes can expand to (1:1 stored, 1032:1 deflated). Each member is charged to ``budget``, the ``inputs``
    members (cast to float32, then copied by the split) twice more at 4 bytes per value.

    Raises:
        DataError: a member that is not a ``.npy`` array or claims more than it stores; an
            unreadable zip.
        SizeLimitError: the members would pass the data budget.
    """
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.compress_type not in _MAX_RATIO:
                    raise DataError(f"{path}: member {info.filename!r} uses zip compression method "
                                    f"{info.compress_type}; np.savez writes stored or deflated members only, "
                                    f"write the file with np.savez or np.savez_compressed")
                with z.open(info) as member:
                    if member.read(6) != b"\x93NUMPY":
                        raise DataError(f"{path}: member {info.filename!r} is not a .npy array; an .npz "
                                        f"for layerlab holds only arrays, write it with np.savez")
                    member.seek(0)
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                    else:
                        raise DataError(f"{path}: member {info.filename!r} has .npy format version "
                                        f"{version}, which numpy does not write; write it with np.savez")
                if dtype.hasobject:
                    continue  # refused by allow_pickle=False in load_npz, with its own message
                values = math.prod(shape)
                claimed = values * dtype.itemsize
                bound = info.compress_size * _MAX_RATIO[info.compress_type]
                if claimed > min(info.file_size, bound):
                    deflated = f" (deflated: at most {bound:,} bytes)" if info.compress_type else ""
                    raise DataError(
                        f"{path}: member {info.filename} claims shape {shape} of {dtype} "
                        f"({claimed:,} bytes) but stores {info.compress_size:,} bytes{deflated}; the file "
                        f"is corrupt or truncated, write it again with np.savez"
                    )
                float32_copies = 2 if info.filename.removesuffix(".npy") in inputs else 0
                budget.charge(claimed + float32_copies * 4 * values,
                              f"{path}: member {info.filename} ({_shape_text(shape)} {dtype})")
    except (DataError, SizeLimitError):
        raise
    except Exception as err:  # any parse failure of untrusted bytes is a data problem
        raise DataError(f"{path}: not a readable .npz file ({type(err).__name__}: {err}); write it "
                        f"with np.savez") from None


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape) or "scalar"


def _inputs(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    if x.dtype.kind not in "biuf" or x.ndim < 2:
        raise DataError(f"{path}: {key!r} must be a numeric array (N, C, *spatial) or (N, F), got "
                        f"{x.dtype} of shape {x.shape}")
    with np.errstate(over="ignore"):  # too-large values become inf and are reported below
        x = x.astype(np.float32)
    if x.ndim == 2:
        x = x[:, None]  # (N, F) -> (N, 1, F)
    bad = ~np.isfinite(x)
    if bad.any():
        first = np.argwhere(bad)[0]
        raise DataError(f"{path}: {key!r} holds {int(bad.sum()):,} NaN/Inf value(s) (or values too "
                        f"large for float32), the first at sample {first[0]}; drop or impute those "
                        f"samples first")
    return x


def _labels(y: np.ndarray, path: Path, key: str) -> np.ndarray:
    if y.ndim != 1 or y.dtype.kind not in "biuf":
        raise DataError(f"{path}: {key!r} must be a 1-d array of class indices, got {y.dtype} of "
                        f"shape {y.shape}; for one-hot labels save y.argmax(1)")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise DataError(f"{path}: {key!r} holds non-integer values; labels must be class indices 0..K-1")
    if y.size and y.min() < 0:
        raise DataError(f"{path}: {key!r} holds the negative label {y.min()}; labels must be class "
                        f"indices 0..K-1")
    if y.size:
        check_top_label(y.max(), f"{path}: {key!r}")
    return y.astype(np.int64)


def _same_length(x: np.ndarray, y: np.ndarray, path: Path, xk: str, yk: str) -> None:
    if len(x) != len(y):
        raise DataError(f"{path}: {xk!r} has {len(x):,} samples but {yk!r} has {len(y):,} labels; "
                        f"each input needs exactly one label")
