"""CIFAR-10 / CIFAR-100 "python version" folders, read by a restricted unpickler.

The CIFAR files (https://www.cs.toronto.edu/~kriz/cifar.html) are Python pickles of dicts::

    {b"data": uint8 array (N, 3072) = (N, 3, 32, 32) channel-major, b"labels": [N ints], ...}

CIFAR-10: ``data_batch_1`` .. ``data_batch_5`` (50,000) + ``test_batch`` (10,000), class names in
``batches.meta`` (``label_names``). CIFAR-100: ``train`` (50,000) + ``test`` (10,000) with
``fine_labels``, names in ``meta`` (``fine_label_names``).

A pickle can call any importable function while it loads (``os.system`` included), so these files
are never given to ``pickle.load``. :class:`RestrictedUnpickler` resolves only the globals a numpy
array needs (``_reconstruct`` with ``ndarray``, ``dtype``, ``scalar`` for numpy numbers,
protocol-5 ``_frombuffer``, and ``_codecs.encode(..., "latin1")`` that Python 3 writes for bytes)
and raises :class:`~layerlab.errors.DataError` for anything else *before* calling it. Array states
are checked before numpy allocates: numeric dtypes only (no object arrays) and exactly
``prod(shape)·itemsize`` bytes of data, so a small file cannot ask for gigabytes. Pixels are
divided by 255.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
from pathlib import Path

import numpy as np

from layerlab.data.dataset import Dataset, require_regular_file
from layerlab.data.limits import DataBudget, check_top_label, numbered_classes
from layerlab.errors import DataError

__all__ = ["RestrictedUnpickler", "load_pickle", "load_cifar", "find_cifar_folder"]

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


_MAX_ARRAY_DIMS = 64  # numpy's NPY_MAXDIMS
_SHAREABLE_TUPLE_LEN = 16  # numpy's own shared tuples (dtype states, reduce arguments) have at most 8


def _brief(obj) -> str:
    """A short description of an untrusted object: never ``repr`` of a container (a pickle can make
    one whose ``repr`` is exponentially long by sharing it many times)."""
    if isinstance(obj, (bool, int, float, complex, type(None), np.dtype)):
        return repr(obj)[:60]
    if isinstance(obj, (str, bytes, bytearray)):
        return f"{type(obj).__name__} of length {len(obj):,}"
    if isinstance(obj, (tuple, list, dict, set, frozenset)):
        return f"{type(obj).__name__} of {len(obj):,} items"
    if obj is _NdarrayClass:
        return "numpy.ndarray"
    return f"an object of type {type(obj).__name__}"


class _NdarrayClass:
    """Stands in for ``numpy.ndarray`` in a pickle: it may only be passed to ``_reconstruct``.

    Handing out the real class would let a pickle call ``numpy.ndarray((10**12,))`` directly.
    """

    def __new__(cls, *args, **kwargs):
        raise DataError("refusing to call numpy.ndarray from a pickle: arrays are rebuilt only "
                        "through numpy's _reconstruct; this file may be malicious")


class _CheckedArray(np.ndarray):
    """The array ``_reconstruct`` hands to the pickle: its ``__setstate__`` (pickle's BUILD) checks
    the state before numpy allocates anything.

    numpy would allocate ``prod(shape)`` slots for an object array and fill them with ``None``
    before looking at the data, so a 100-byte pickle could ask for gigabytes. Only arrays of numbers
    whose raw bytes match ``shape`` and ``dtype`` exactly are built.
    """

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise DataError(f"refusing a numpy array state of type {type(state).__name__} from a pickle: "
                            f"numpy writes (version, shape, dtype, is_fortran, data)")
        _, shape, dtype, _, raw = state
        if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.kind not in "biufcSU":
            raise DataError(f"refusing a numpy array of dtype {_brief(dtype)} from a pickle: CIFAR files hold "
                            f"numeric arrays only; this file may be malicious")
        # numpy arrays have at most 64 dims; without that bound, the product below of 30,000 huge
        # sizes would take seconds (big-integer multiplication), of 100,000 minutes
        if not (isinstance(shape, tuple) and len(shape) <= _MAX_ARRAY_DIMS
                and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise DataError(f"refusing a numpy array of shape {_brief(shape)} from a pickle: numpy writes "
                            f"a tuple of at most {_MAX_ARRAY_DIMS} non-negative integers")
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != math.prod(shape) * dtype.itemsize:
            got = len(raw) if isinstance(raw, (bytes, bytearray)) else type(raw).__name__
            raise DataError(f"refusing a numpy array from a pickle: shape {shape} of {dtype} needs "
                            f"{math.prod(shape) * dtype.itemsize:,} bytes of data, the pickle has {got}")
        super().__setstate__(state)


def _reconstruct_array(subtype, shape, dtype_code):
    # numpy pickles always write _reconstruct(ndarray, (0,), b"b"): an empty array that BUILD fills
    if subtype is not _NdarrayClass or not isinstance(shape, tuple) or shape != (0,):
        call = ", ".join(_brief(a) for a in (subtype, shape, dtype_code))
        raise DataError(f"refusing numpy _reconstruct({call}) from a pickle: "
                        f"numpy writes only _reconstruct(ndarray, (0,), b'b'); this file may be malicious")
    return _reconstruct(_CheckedArray, (0,), dtype_code)


def _array_from_buffer(buffer, dtype, shape, order):
    # protocol 5 writes _frombuffer(bytes-like, dtype, shape, order); copy the bytes so the array
    # does not keep the unpickler's bytearray exported
    if not isinstance(buffer, (bytes, bytearray)) or not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise DataError(f"refusing numpy _frombuffer of {type(buffer).__name__} as {_brief(dtype)} from a pickle; "
                        f"this file may be malicious")
    return np.frombuffer(bytes(buffer), dtype=dtype).reshape(shape, order=order)


def _latin1_bytes(text: str, encoding: str) -> bytes:
    # Python 3 pickles bytes at protocol < 3 as _codecs.encode(text, "latin1")
    if encoding != "latin1":
        raise DataError(f"refusing _codecs.encode(..., {encoding!r}) from a pickle: only 'latin1' "
                        f"is used for bytes; this file may be malicious")
    return text.encode("latin1")


def _bytes_like(kind: type):
    # bytes() / bytearray() with a size would allocate it zero-filled: bytearray(6e9) is 32 bytes
    # of pickle. Pickles write only bytes(), bytes/bytearray(a bytes object) and (str, "latin-1").
    def build(*args):
        if not args:
            return kind()
        if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
            return kind(args[0])
        if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
            return kind(args[0], "latin1")
        raise DataError(f"refusing {kind.__name__}({', '.join(_brief(a) for a in args)}) from a pickle: "
                        f"pickles build {kind.__name__} only from bytes or a latin-1 string (a size "
                        f"would allocate that many bytes); this file may be malicious")

    build.__name__ = kind.__name__
    return build


def _numpy_scalar(dtype, data=None):
    # numpy.core.multiarray.scalar(dtype, bytes): numpy allocates dtype.itemsize bytes, and a
    # V2000000000 dtype is 2 GB; only numbers and strings whose bytes are all in the file
    if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.kind not in "biufcSU":
        raise DataError(f"refusing a numpy scalar of dtype {_brief(dtype)} from a pickle: CIFAR files hold "
                        f"numbers only; this file may be malicious")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise DataError(f"refusing a numpy scalar from a pickle: dtype {dtype} needs {dtype.itemsize:,} "
                        f"bytes of data, the pickle has {_brief(data)}")
    return scalar(dtype, data)


def _numpy_dtype(spec, align=False, copy=False):
    # numpy writes dtype("u1", False, True); a list/dict spec could describe nested fields
    if not isinstance(spec, str) or len(spec) > 32:
        raise DataError(f"refusing numpy dtype({_brief(spec)}) from a pickle: numpy writes a short "
                        f"type string such as 'u1'; this file may be malicious")
    return np.dtype(spec, bool(align), bool(copy))


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_array,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_array,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.numeric", "_frombuffer"): _array_from_buffer,
    ("numpy._core.numeric", "_frombuffer"): _array_from_buffer,
    ("numpy", "ndarray"): _NdarrayClass,
    ("numpy", "dtype"): _numpy_dtype,
    ("_codecs", "encode"): _latin1_bytes,
    **{(module, name): obj
       for module in ("builtins", "__builtin__")  # protocols 0-2 name the module __builtin__
       for name, obj in (("set", set), ("frozenset", frozenset), ("bytes", _bytes_like(bytes)),
                         ("bytearray", _bytes_like(bytearray)))},
}


def _check_shared(unpickler: "RestrictedUnpickler") -> None:
    # runs after every opcode that pushes an object already built (GET, DUP): sharing a tuple is
    # the pickle "billion laughs" (T1 = (T0,)*10, T2 = (T1,)*10, ...: a few bytes whose hash, repr
    # or comparison visits 10**depth items), so only small flat tuples may be shared
    obj = unpickler.stack[-1]
    if isinstance(obj, (tuple, frozenset)) and (
            len(obj) > _SHAREABLE_TUPLE_LEN
            or any(isinstance(v, (tuple, list, dict, set, frozenset)) for v in obj)):
        raise DataError(f"refusing a pickle that references one {type(obj).__name__} of {len(obj):,} items "
                        f"again (a shared container is how a small pickle expands to billions of "
                        f"items); CIFAR files never do this, the file may be malicious")


def _sharing_opcode(load):
    def checked(self):
        load(self)
        _check_shared(self)

    return checked


class RestrictedUnpickler(pickle._Unpickler):
    """A pickle unpickler that rebuilds dicts, lists, strings, numbers and numpy arrays only.

    ``find_class`` resolves the few globals numpy arrays need and raises
    :class:`~layerlab.errors.DataError` for every other one (``os.system``, ``builtins.eval``,
    ``subprocess.Popen``, ...), so nothing foreign is ever imported or called. Strings from Python
    2 pickles come back as ``bytes`` (``encoding="bytes"``), as CIFAR's own loader does.

    The constructor reads ``file`` whole (so no length field can make a read larger than the file)
    and scans its opcodes with ``pickletools.genops`` (which executes nothing) for memo indices
    larger than the pickle: CPython's C unpickler sizes its memo table by the largest index, so one
    ``LONG_BINPUT 680825748`` would make it allocate ~10 GB.

    It is built on Python's pure-Python unpickler (``pickle._Unpickler``, the same opcodes) so that
    each opcode can be checked as it runs: a memo reference (``GET``) or ``DUP`` may not share a
    tuple or frozenset that is large or holds containers. With that, every object in the result is
    built by its own opcode, so the result has at most as many objects as the file has bytes, and
    its hash, ``repr`` and comparisons cost time linear in the file. Callables that could allocate
    are wrapped: ``bytes``/``bytearray`` take only bytes or a latin-1 string (never a size), numpy
    scalars only number/string dtypes with exactly ``itemsize`` bytes from the file, ``dtype`` only
    a short type string.

    Args:
        file: a binary file object.
        path: the file name for error messages.

    Raises:
        DataError: from the constructor for a hostile memo index or unparsable opcodes; from
            ``load()`` for a forbidden global or array state.
    """

    dispatch = dict(pickle._Unpickler.dispatch)
    for _opcode in (pickle.GET, pickle.BINGET, pickle.LONG_BINGET, pickle.DUP):
        dispatch[_opcode[0]] = _sharing_opcode(dispatch[_opcode[0]])
    del _opcode

    def __init__(self, file, path: str | os.PathLike) -> None:
        data = file.read()  # whole: no length field can make a read larger than the file
        _check_memo_indices(data, path)
        super().__init__(io.BytesIO(data), encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"refusing to unpickle {module}.{name} from {self.path}: CIFAR files contain only "
                f"arrays; this file may be malicious, download it again from the official site"
            ) from None


def load_pickle(path: str | os.PathLike):
    """Unpickle ``path`` with :class:`RestrictedUnpickler`.

    See :class:`RestrictedUnpickler` for what is checked.

    Raises:
        DataError: missing file, a forbidden global, or a corrupt/truncated pickle.
    """
    path = Path(path)
    require_regular_file(path, "file", "check the path of the CIFAR folder")
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as err:  # any parse failure of untrusted bytes is a data problem
        raise DataError(f"{path}: not a readable pickle ({type(err).__name__}: {err}); the file is "
                        f"corrupt or truncated, download it again") from None


def _check_memo_indices(data: bytes, path) -> None:
    # real pickles number memo entries 0, 1, 2, ..., so an index beyond the number of opcodes read
    # so far is corrupt or hostile (see RestrictedUnpickler)
    try:
        for count, (op, arg, pos) in enumerate(pickletools.genops(data)):
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > count:
                raise DataError(f"{path}: pickle memo index {arg:,} at byte {pos} is larger than the "
                                f"{count:,} opcodes before it; the file is corrupt or malicious, download it again")
    except DataError:
        raise
    except Exception as err:  # genops parses untrusted bytes (executing nothing)
        raise DataError(f"{path}: not a readable pickle ({type(err).__name__}: {err}); the file is corrupt "
                        f"or truncated, download it again") from None


def find_cifar_folder(folder: str | os.PathLike) -> tuple[str, Path] | None:
    """``("cifar10", path)`` or ``("cifar100", path)`` if ``folder`` is (or directly contains) a
    CIFAR python folder, else ``None``."""
    folder = Path(folder)
    for candidate in (folder, folder / "cifar-10-batches-py", folder / "cifar-100-python"):
        for kind, names in (("cifar10", ("data_batch_1", "test_batch")), ("cifar100", ("train", "test", "meta"))):
            files = [candidate / n for n in names]
            if all(os.path.lexists(f) and not f.is_dir() for f in files):
                for f in files:  # a FIFO named data_batch_1 is a broken CIFAR folder, never opened
                    require_regular_file(f, "CIFAR batch file", "replace it with the file from the CIFAR archive")
                return kind, candidate
    return None


def load_cifar(folder: str | os.PathLike, *, max_bytes: int | None = None) -> Dataset:
    """CIFAR-10 or CIFAR-100 from its python folder (or a folder containing it).

    Args:
        folder: ``cifar-10-batches-py`` / ``cifar-100-python`` or their parent.
        max_bytes: the data budget for all batches together (see :mod:`layerlab.data.limits`).
            Default: ``None`` (``$LAYERLAB_DATA_MAX_BYTES`` or 2 GiB).

    Returns:
        A :class:`~layerlab.data.dataset.Dataset` with ``x`` ``(N, 3, 32, 32)`` in [0, 1]; CIFAR-100
        uses the 100 fine labels.

    Raises:
        DataError: not a CIFAR folder, a missing batch, an unsafe or corrupt pickle, batch
            contents of the wrong type, shape or length, labels beyond ``MAX_CLASSES``, one class.
        SizeLimitError: the batches would pass the data budget (each file's size is charged
            before it is read, its pixels before they are converted).
    """
    found = find_cifar_folder(folder)
    if found is None:
        raise DataError(f"{folder}: not a CIFAR python folder: expected data_batch_1..5 and test_batch "
                        f"(CIFAR-10) or train, test and meta (CIFAR-100)")
    kind, root = found
    if kind == "cifar10":
        train_files, test_files = [root / n for n in CIFAR10_TRAIN], [root / "test_batch"]
        label_key, meta_file, names_key = "labels", root / "batches.meta", "label_names"
    else:
        train_files, test_files = [root / "train"], [root / "test"]
        label_key, meta_file, names_key = "fine_labels", root / "meta", "fine_label_names"
    budget = DataBudget(max_bytes)
    x_train, y_train = _read_batches(train_files, label_key, budget)
    x_test, y_test = _read_batches(test_files, label_key, budget)
    top = max(int(y_train.max()), int(y_test.max()))
    if os.path.lexists(meta_file):
        classes = _class_names(meta_file, names_key)
    else:
        classes = numbered_classes(top, str(folder))
    return Dataset(str(folder), x_train, y_train, x_test, y_test, classes)


def _entry(batch: dict, key: str, path: Path):
    for k in (key.encode(), key):  # Python 2 pickles give bytes keys, Python 3 ones str
        if k in batch:
            return batch[k]
    keys = sorted(_text(k)[:40] for k in list(batch)[:20])
    raise DataError(f"{path}: the batch has no {key!r} entry (keys: {keys}); is this a CIFAR file of the "
                    f"other kind?")


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else _brief(value)


def _labels(value, path: Path, key: str) -> np.ndarray:
    # checked element by element before numpy sees it: np.asarray of a list holding one shared
    # list many times would expand it (the pickle "billion laughs")
    if isinstance(value, np.ndarray):
        labels = np.asarray(value)
    elif isinstance(value, list) and all(type(v) is int or isinstance(v, np.integer) for v in value):
        if value and not (-2**63 <= min(value) and max(value) < 2**63):
            raise DataError(f"{path}: {key!r} holds integers beyond int64; the file is corrupt")
        labels = np.array(value, dtype=np.int64)
    else:
        first = f" (first item: {_brief(value[0])})" if isinstance(value, list) and value else ""
        raise DataError(f"{path}: {key!r} must be a list of non-negative integers, got {_brief(value)}{first}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
        raise DataError(f"{path}: {key!r} must be a list of non-negative integers, got "
                        f"{labels.dtype} values of shape {labels.shape}")
    if labels.size:
        check_top_label(labels.max(), f"{path}: {key!r}")
    return labels


def _read_batches(paths: list[Path], label_key: str, budget: DataBudget) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for path in paths:
        # the file whole (read by the unpickler) and its largest possible array, before reading
        require_regular_file(path, "file", "check the path of the CIFAR folder")
        budget.charge(2 * path.stat().st_size, f"{path}: the pickle and the arrays it holds")
        batch = load_pickle(path)
        if not isinstance(batch, dict):
            raise DataError(f"{path}: expected a pickled dict with 'data' and labels, got "
                            f"{type(batch).__name__}; this is not a CIFAR batch")
        data = _entry(batch, "data", path)
        if isinstance(data, np.ndarray):
            data = np.asarray(data)  # a plain ndarray, not the unpickler's checked subclass
        labels = _labels(_entry(batch, label_key, path), path, label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
            raise DataError(f"{path}: 'data' must be a uint8 array (N, 3072) of 3x32x32 images, got "
                            f"{got}; the file is corrupt or not CIFAR")
        if len(labels) != len(data):
            raise DataError(f"{path}: {len(data):,} images but {len(labels):,} labels; the file is "
                            f"corrupt, download it again")
        budget.charge(4 * data.size, f"{path}: {len(data):,} images as float32")
        xs.append(data.reshape(-1, 3, 32, 32))  # (N, 3, 32, 32), CIFAR rows are channel-major
        ys.append(labels.astype(np.int64))
    x = np.concatenate(xs).astype(np.float32)
    x /= 255.0
    return x, np.concatenate(ys)


def _class_names(path: Path, key: str) -> list[str]:
    meta = load_pickle(path)
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a pickled dict of class names, got {type(meta).__name__}")
    names = _entry(meta, key, path)
    if not isinstance(names, list) or not all(isinstance(n, (str, bytes)) for n in names):
        raise DataError(f"{path}: {key!r} must be a list of names, got {_brief(names)}; each name "
                        f"must be a string")
    return [_text(n) for n in names]
