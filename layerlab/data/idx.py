"""MNIST / Fashion-MNIST IDX files (raw or gzip), parsed defensively.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code,
the number of dims ``n``, then ``n`` big-endian uint32 sizes, then the data, big-endian::

    offset 0: 0x00 0x00 <type> <n>    type 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    offset 4: n x uint32 sizes             0x0D float32, 0x0E float64
    offset 4 + 4n: prod(sizes) * itemsize bytes of data

Every check happens on the header *before* anything is allocated: the claimed data size must equal
what the file holds (raw files: the file size; gzip files: the size in the gzip trailer, and at most
1032x the compressed size, deflate's maximum ratio). A header claiming 10^12 items therefore fails
at once with a :class:`~layerlab.errors.DataError` instead of asking for a terabyte.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from layerlab.data.dataset import Dataset, require_regular_file
from layerlab.data.limits import DEFLATE_MAX_RATIO, DataBudget, check_top_label, numbered_classes
from layerlab.errors import DataError

__all__ = ["read_idx", "load_idx", "load_idx_folder", "find_idx_files"]

IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_IDX_DIMS = 4  # labels 1, signals 2, images 3, colour images 4; numpy itself stops at 64
_CHUNK = 1 << 24
# train-images-idx3-ubyte, t10k-labels.idx1-ubyte.gz, ... (both spellings are in circulation)
_IDX_NAME = re.compile(r"^(train|t10k)-(images|labels)[-.]idx[0-9]-ubyte(\.gz)?$")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path: str | os.PathLike, *, max_bytes: int | None = None) -> np.ndarray:
    """Read one IDX file (raw or gzip-compressed, detected from its first bytes).

    Args:
        path: the file.
        max_bytes: the data budget (see :mod:`layerlab.data.limits`). Default: ``None``
            (``$LAYERLAB_DATA_MAX_BYTES`` or 2 GiB).

    Returns:
        The array with the header's shape and dtype, in native byte order.

    Raises:
        DataError: missing file, not gzip/IDX (wrong magic), unknown type code, more than
            ``MAX_IDX_DIMS`` dims, truncated data, trailing bytes, or a header claiming more data
            than the file can hold.
        SizeLimitError: the data would pass the data budget (checked from the header).
    """
    return _read_idx(Path(path), DataBudget(max_bytes), float32_copy=False)


def _read_idx(path: Path, budget: DataBudget, float32_copy: bool) -> np.ndarray:
    # charges the raw data and its native-byte-order copy, plus a float32 copy when the caller
    # converts it (load_idx's images), to `budget` before reading any data
    require_regular_file(path, "IDX file", "check the path (MNIST files are named like train-images-idx3-ubyte "
                               "or train-images-idx3-ubyte.gz)")
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    if not compressed:
        with open(path, "rb") as f:
            dtype, shape, nbytes = _read_header(f, path, os.path.getsize(path))
            _charge(budget, path, dtype, shape, float32_copy)
            data = f.read(nbytes)
        return _to_array(data, dtype, shape)
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            (isize,) = struct.unpack("<I", f.read(4))  # uncompressed size mod 2**32 (gzip trailer)
        with gzip.open(path, "rb") as f:
            dtype, shape, nbytes = _read_header(f, path, None)
            header = 4 + 4 * len(shape)
            if header + nbytes > DEFLATE_MAX_RATIO * size:
                raise DataError(
                    f"{path}: the IDX header claims {_shape_text(shape)} = {math.prod(shape):,} items "
                    f"({nbytes:,} bytes) but a {size:,}-byte gzip file holds at most "
                    f"{DEFLATE_MAX_RATIO * size:,}; the header is corrupt, download the file again"
                )
            if (header + nbytes) % 2**32 != isize:
                raise DataError(
                    f"{path}: the IDX header claims {_shape_text(shape)} ({header + nbytes:,} bytes "
                    f"uncompressed) but the gzip trailer records {isize:,} bytes (mod 2^32): the file "
                    f"is truncated or its header is wrong; download it again"
                )
            _charge(budget, path, dtype, shape, float32_copy)
            buf = bytearray()
            while len(buf) < nbytes:
                chunk = f.read(min(_CHUNK, nbytes - len(buf)))
                if not chunk:
                    break
                buf += chunk
            extra = len(f.read(1))
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt gzip data ({err}); download the file again or gunzip it "
                        f"to check") from None
    if len(buf) < nbytes:
        raise _truncated(path, shape, nbytes, len(buf))
    if extra:
        raise DataError(f"{path}: more data than the IDX header's {_shape_text(shape)} describes; "
                        f"the header or the file is wrong, download it again")
    return _to_array(buf, dtype, shape)


def _charge(budget: DataBudget, path: Path, dtype: np.dtype, shape: tuple[int, ...], float32_copy: bool) -> None:
    items = math.prod(shape)
    budget.charge(2 * items * dtype.itemsize + (4 * items if float32_copy else 0),
                  f"{path}: {_shape_text(shape)} {dtype.newbyteorder('=')} values")


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _read_header(f, path: Path, file_size: int | None) -> tuple[np.dtype, tuple[int, ...], int]:
    magic = f.read(4)
    if len(magic) < 4 or magic[:2] != b"\x00\x00":
        raise DataError(
            f"{path}: not an IDX file: expected the magic bytes 00 00 <type> <ndim>, got "
            f"{magic.hex(' ') or 'an empty file'}; pass the MNIST image/label files "
            f"(train-images-idx3-ubyte[.gz] ...)"
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        raise DataError(
            f"{path}: unknown IDX type code 0x{code:02X}: expected one of "
            f"{', '.join(f'0x{c:02X}' for c in IDX_DTYPES)} (0x08 = uint8 for MNIST); the file is "
            f"corrupt or not IDX"
        )
    if not 1 <= ndim <= MAX_IDX_DIMS:
        raise DataError(f"{path}: the IDX header declares {ndim} dims; expected 1 (labels), 2 (signals) "
                        f"or 3 (images), at most {MAX_IDX_DIMS}; the file is corrupt or not IDX")
    raw = f.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header: {ndim} dims need {4 * ndim} bytes of sizes, "
                        f"the file has {len(raw)}; download the file again")
    shape = struct.unpack(f">{ndim}I", raw)
    dtype = IDX_DTYPES[code]
    nbytes = math.prod(shape) * dtype.itemsize
    if file_size is not None and 4 + 4 * ndim + nbytes != file_size:
        have = file_size - 4 - 4 * ndim
        if have < nbytes:
            raise _truncated(path, shape, nbytes, have)
        raise DataError(f"{path}: {have - nbytes:,} bytes more than the IDX header's "
                        f"{_shape_text(shape)} describes; the header or the file is wrong, download it again")
    return dtype, shape, nbytes


def _truncated(path: Path, shape: tuple[int, ...], nbytes: int, have: int) -> DataError:
    return DataError(
        f"{path}: truncated IDX file: the header claims {_shape_text(shape)} = {math.prod(shape):,} "
        f"items ({nbytes:,} bytes of data) but the file holds {have:,}; download it again"
    )


def _to_array(data: bytes | bytearray, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx_files(folder: str | os.PathLike, *, require: bool = True) -> dict[str, Path] | None:
    """The four standard IDX files in ``folder``, keyed ``train_images``, ``train_labels``,
    ``test_images``, ``test_labels`` (an uncompressed file wins over its ``.gz``).

    Args:
        folder: the folder to look in.
        require: raise when some of the four are missing (else return ``None``). Default: ``True``.

    Returns:
        ``{key: path}``, or ``None`` when ``require`` is false and not all four exist.
    """
    folder = Path(folder)
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir(), key=lambda p: p.name.endswith(".gz")):  # raw files first
        m = _IDX_NAME.match(p.name)
        if m:
            require_regular_file(p, "IDX file", "replace it with the IDX file it is named after")
            key = f"{'train' if m[1] == 'train' else 'test'}_{m[2]}"
            found.setdefault(key, p)
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    missing = [k for k in keys if k not in found]
    if not missing:
        return {k: found[k] for k in keys}
    if require:
        names = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
                 "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
        raise DataError(f"{folder}: missing IDX file(s) {', '.join(names[k] + '[.gz]' for k in missing)}; "
                        f"an IDX data set needs all four (train/t10k images and labels)")
    return None


def load_idx_folder(folder: str | os.PathLike, *, max_bytes: int | None = None) -> Dataset:
    """:func:`load_idx` on the four standard files of ``folder``; classes are Fashion-MNIST's names
    when the folder's path contains "fashion", else the label numbers."""
    files = find_idx_files(folder)
    fashion = "fashion" in str(Path(folder).resolve()).lower()
    return load_idx(**files, name=str(folder), classes=FASHION_CLASSES if fashion else None, max_bytes=max_bytes)


def load_idx(
    train_images: str | os.PathLike,
    train_labels: str | os.PathLike,
    test_images: str | os.PathLike,
    test_labels: str | os.PathLike,
    *,
    name: str | None = None,
    classes: list[str] | None = None,
    max_bytes: int | None = None,
) -> Dataset:
    """A data set from four explicit IDX files (MNIST, Fashion-MNIST, KMNIST, ...).

    Images ``(N, H, W)`` become ``(N, 1, H, W)``, signals ``(N, L)`` become ``(N, 1, L)``; uint8 data
    is divided by 255 into [0, 1], other types are cast to float32 unchanged.

    Args:
        train_images, train_labels, test_images, test_labels: the files (raw or ``.gz``).
        name: the data set's name. Default: ``None`` (the train image path).
        classes: class names; ``None`` numbers them ``"0" .. str(max label)``. Default: ``None``.
        max_bytes: the data budget for all four files together (see :mod:`layerlab.data.limits`).
            Default: ``None`` (``$LAYERLAB_DATA_MAX_BYTES`` or 2 GiB).

    Returns:
        A :class:`~layerlab.data.dataset.Dataset`.

    Raises:
        DataError: any file unreadable (see :func:`read_idx`), labels not 1-d integers, images
            not 2-d/3-d, image/label counts that differ, non-finite values, labels beyond
            ``MAX_CLASSES``, or one class.
        SizeLimitError: the four files would pass the data budget (checked from their headers).
    """
    budget = DataBudget(max_bytes)
    arrays = {}
    for split, images_path, labels_path in (("train", train_images, train_labels),
                                            ("test", test_images, test_labels)):
        x = _read_idx(Path(images_path), budget, float32_copy=True)
        y = _read_idx(Path(labels_path), budget, float32_copy=False)
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise DataError(f"{labels_path}: expected a 1-d integer IDX label file, got "
                            f"{y.ndim}-d {y.dtype} data of shape {y.shape}; did you swap images and labels?")
        if x.ndim not in (2, 3):
            raise DataError(f"{images_path}: expected IDX images (N, H, W) or signals (N, L), got "
                            f"shape {x.shape}; did you swap images and labels?")
        if len(x) != len(y):
            raise DataError(f"{images_path} has {len(x):,} images but {labels_path} has {len(y):,} "
                            f"labels; the two files must come from the same release (train with "
                            f"train, t10k with t10k)")
        if x.dtype == np.uint8:
            xf = x.astype(np.float32)
            xf /= 255.0
        else:
            with np.errstate(over="ignore"):  # too-large values become inf and are reported below
                xf = x.astype(np.float32)
            if not np.isfinite(xf).all():
                raise DataError(f"{images_path}: contains NaN or infinite values (or values too large "
                                f"for float32); clean the data first")
        if y.size and y.min() < 0:
            raise DataError(f"{labels_path}: negative label {y.min()}; labels must be class indices >= 0")
        if y.size:
            check_top_label(y.max(), str(labels_path))
        arrays[f"x_{split}"] = xf[:, None]  # (N, 1, *spatial)
        arrays[f"y_{split}"] = y.astype(np.int64)
    if classes is None:
        top = max(int(arrays["y_train"].max(initial=0)), int(arrays["y_test"].max(initial=0)))
        classes = numbered_classes(top, name or str(train_images))
    return Dataset(name or str(train_images), classes=list(classes), **arrays)
