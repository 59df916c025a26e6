"""Fuzzed file parsers: any bytes either load or raise DataError, never another exception.

Inputs are valid files with random byte flips, cuts and insertions (most interesting failures sit
close to valid files) plus fully random bytes. Example counts are small to keep the suite fast; the
property is what matters, and hypothesis replays failures from its database.
"""

from __future__ import annotations

import gzip
import io
import pickle
import shutil
import struct
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from layerlab.data import load_dataset, load_image_folder, load_npz, read_idx
from layerlab.data.cifar import load_pickle
from layerlab.data.limits import MAX_CLASSES
from layerlab.errors import DataError, SizeLimitError

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def mutated(draw, seed: bytes):
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "overwrite"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            data = data[:pos]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            n = draw(st.integers(1, 4))
            data[pos:pos + n] = draw(st.binary(min_size=n, max_size=n))
    return bytes(data)


def _idx(arr):
    header = bytes([0, 0, 0x08 if arr.dtype == np.uint8 else 0x0C, arr.ndim])
    return header + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


IDX_SEED = _idx(np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4))


def _loads_or_data_error(load, path):
    # a refusal must come from a check, not from an allocation that failed inside the loader
    # (the memory-cap fuzzers make every oversized allocation fail)
    try:
        load(path)
    except (DataError, SizeLimitError) as err:
        assert "MemoryError" not in str(err), f"an allocation failed inside the loader: {err}"


@FUZZ
@given(data=st.one_of(mutated(IDX_SEED), st.binary(max_size=64)), gz=st.booleans())
def test_read_idx_fuzz(tmp_path, data, gz):
    path = tmp_path / "f"
    path.write_bytes(gzip.compress(data) if gz else data)
    _loads_or_data_error(read_idx, path)


@FUZZ
@given(data=mutated(gzip.compress(IDX_SEED)))
def test_read_idx_fuzzed_gzip_container(tmp_path, data):
    path = tmp_path / "f"
    path.write_bytes(data)
    _loads_or_data_error(read_idx, path)


BATCH = {b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072) % 251, b"labels": [1, 2],
         b"filenames": [b"a.png", b"b.png"]}
PICKLE_SEEDS = [pickle.dumps(BATCH, protocol=p) for p in (2, 4, 5)]


@FUZZ
@given(data=st.one_of(*[mutated(s) for s in PICKLE_SEEDS], st.binary(max_size=64)))
def test_restricted_unpickler_fuzz(tmp_path, data):
    path = tmp_path / "batch"
    path.write_bytes(data)
    _loads_or_data_error(load_pickle, path)


def _npz_seed():
    buf = io.BytesIO()
    np.savez(buf, x=np.arange(20, dtype=np.float32).reshape(10, 1, 2), y=np.arange(10) % 2)
    return buf.getvalue()


@FUZZ
@given(data=mutated(_npz_seed()))
def test_load_npz_fuzz(tmp_path, data):
    path = tmp_path / "d.npz"
    path.write_bytes(data)
    _loads_or_data_error(load_npz, path)


def _image_bytes(fmt):
    buf = io.BytesIO()
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("JPEG", ".jpg"), ("GIF", ".gif"), ("BMP", ".bmp")])
def test_image_folder_fuzz(tmp_path, fmt, suffix):
    good = _image_bytes(fmt)
    for k in ("a", "b"):
        (tmp_path / k).mkdir()
        for i in range(5):
            (tmp_path / k / f"{i}{suffix}").write_bytes(good)

    @settings(max_examples=40, deadline=None)
    @given(data=mutated(good))
    def check(data):
        (tmp_path / "a" / f"0{suffix}").write_bytes(data)
        _loads_or_data_error(load_image_folder, tmp_path)

    check()


# ---- generators aimed at allocation and conversion: label values, allocating pickle opcodes, Pillow modes

EXTREME_LABELS = st.one_of(
    st.sampled_from([2**40, 2**31 - 1, 2**32, 2**63 - 1, -1, -(2**63), MAX_CLASSES - 1, MAX_CLASSES]),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(0, 20),
)
LABEL_FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@LABEL_FUZZ
@given(labels=st.lists(EXTREME_LABELS, min_size=1, max_size=4), dtype=st.sampled_from(["i8", "u8", "f8", "i4"]))
def test_npz_label_values_fuzz(tmp_path, memory_cap, labels, dtype):
    y = np.array(labels * 5, dtype=object)
    if dtype == "u8":
        y = np.abs(y)  # uint64 holds 0 .. 2**63
    if dtype == "i4":
        y = np.clip(y, -(2**31), 2**31 - 1)
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((len(y), 1, 2), np.float32), y=y.astype(dtype))
    with memory_cap():
        _loads_or_data_error(load_npz, path)


@LABEL_FUZZ
@given(train=st.lists(EXTREME_LABELS, min_size=2, max_size=6), test=st.lists(EXTREME_LABELS, min_size=1, max_size=3))
def test_idx_label_values_fuzz(tmp_path, memory_cap, train, test):
    for split, labels in (("train", train), ("t10k", test)):
        y = np.clip(np.array(labels, dtype=object), -(2**31), 2**31 - 1).astype(np.int32)
        (tmp_path / f"{split}-labels-idx1-ubyte").write_bytes(_idx(y))
        (tmp_path / f"{split}-images-idx3-ubyte").write_bytes(_idx(np.zeros((len(y), 2, 2), np.uint8)))
    with memory_cap():
        _loads_or_data_error(load_dataset, tmp_path)


def _shared(leaf, container, depth, width):
    # width references to the level below, depth times: width**depth items in a few bytes of pickle
    level = container([leaf] * width)
    for _ in range(depth):
        level = container([level] * width)
    return level


@st.composite
def shared_structures(draw):
    width = draw(st.integers(2, 10))
    depth = draw(st.integers(1, int(9 / np.log10(width))))  # at most ~10**9 logical items
    leaf = draw(st.sampled_from([0, 7, b"cat", "dog", 2**40]))
    return _shared(leaf, draw(st.sampled_from([list, tuple])), depth, width)


def _pickled_with(batch_items) -> bytes:
    # a protocol-2 dict pickle written without hashing its keys (see test_data_cifar)
    flat = [v for kv in batch_items for v in kv]
    data = pickle.dumps(flat, 2)
    return data[:2] + b"}" + data[3:-2] + b"u."


def _text_op(text: str) -> bytes:
    return b"X" + len(text).to_bytes(4, "little") + text.encode()


def _int_op(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


@st.composite
def allocating_calls(draw):
    """A protocol-2 pickle calling an admitted callable with sizes or dtypes that allocate."""
    size = draw(st.one_of(st.sampled_from([2**31, 6 * 10**9, 2**40]), st.integers(0, 2**40)))
    kind = draw(st.sampled_from(["bytearray", "bytes", "scalar", "dtype_scalar"]))
    if kind in ("bytearray", "bytes"):
        module = draw(st.sampled_from(["builtins", "__builtin__"]))
        body = f"c{module}\n{kind}\n".encode() + _int_op(size) + b"\x85R"
    else:
        code = draw(st.sampled_from(["V", "S", "U", "u", "f"])) + str(draw(st.sampled_from([1, 8, size % 2**31])))
        data = bytes(draw(st.integers(0, 16)))
        body = (b"cnumpy._core.multiarray\nscalar\n" + b"cnumpy\ndtype\n" + _text_op(code) + b"\x85R"
                + b"C" + bytes([len(data)]) + data + b"\x86R")
    return b"\x80\x02" + body + b"."


PICKLE_ALLOC_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PICKLE_ALLOC_FUZZ
@given(data=allocating_calls())
def test_pickle_allocating_calls_fuzz(tmp_path, memory_cap, data):
    path = tmp_path / "batch"
    path.write_bytes(data)
    with memory_cap():
        _loads_or_data_error(load_pickle, path)


@PICKLE_ALLOC_FUZZ
@given(shared=shared_structures(), where=st.sampled_from(["labels", "key", "names", "data", "shape"]))
def test_pickle_shared_references_fuzz(tmp_path, memory_cap, shared, where):
    folder = tmp_path / "cifar"
    folder.mkdir(exist_ok=True)  # every file is rewritten by each example
    good = [(b"data", np.zeros((2, 3072), np.uint8)), (b"labels", [0, 1])]
    batch = {"labels": [good[0], (b"labels", shared)], "key": good + [(shared, 1)], "data": [(b"data", shared), good[1]],
             "names": good, "shape": good}[where]
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(_pickled_with(batch))
    meta = [(b"label_names", shared if where == "names" else [b"a", b"b"])]
    (folder / "batches.meta").write_bytes(_pickled_with(meta))
    if where == "shape":  # numpy's _reconstruct called with the shared structure as its shape
        (folder / "test_batch").write_bytes(pickle.dumps(shared, 2)[:-1].replace(
            b"\x80\x02", b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\n", 1) + b"C\x01b\x87R.")
    start = time.perf_counter()
    with memory_cap():
        _loads_or_data_error(load_dataset, folder)
    assert time.perf_counter() - start < 5, "a few hundred bytes of pickle must not take seconds"


# every mode Pillow writes to a file, the format that keeps it, and the documented reading
FILE_MODES = {
    "1": ("PNG", ".png"), "L": ("PNG", ".png"), "LA": ("PNG", ".png"), "P": ("PNG", ".png"),
    "RGB": ("PNG", ".png"), "RGBA": ("PNG", ".png"), "I;16": ("PNG", ".png"), "I;16B": ("TIFF", ".tif"),
    "I": ("TIFF", ".tif"), "F": ("TIFF", ".tif"), "CMYK": ("TIFF", ".tif"), "YCbCr": ("TIFF", ".tif"),
    "LAB": ("TIFF", ".tif"), "PA": ("TIFF", ".tif"),
}
EXTREMES = {
    "I;16": st.sampled_from([0, 1, 4095, 32768, 65535]), "I;16B": st.sampled_from([0, 1, 4095, 65535]),
    "I": st.one_of(st.sampled_from([-(2**31), -1, 0, 65535, 65536, 2**31 - 1]), st.integers(0, 65535)),
    "F": st.one_of(st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, 3.4e38, 1e-45]), st.floats(0, 1, width=32)),
}


def _mode_image(mode, values):
    a = np.array(values).reshape(2, 2)
    if mode in ("I;16", "I;16B"):
        return Image.fromarray(a.astype(np.uint16)) if mode == "I;16" else Image.fromarray(a.astype(">u2"))
    if mode == "I":
        return Image.fromarray(a.astype(np.int32))
    if mode == "F":
        return Image.fromarray(a.astype(np.float32))
    return Image.fromarray(np.repeat(a.astype(np.uint8)[..., None], 3, axis=2)).convert(mode)


@st.composite
def mode_images(draw):
    mode = draw(st.sampled_from(sorted(FILE_MODES)))
    values = draw(st.lists(EXTREMES.get(mode, st.integers(0, 255)), min_size=4, max_size=4))
    return mode, values


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mode_images())
def test_pillow_modes_fuzz(tmp_path, case):
    """Each mode loads by its documented scaling, or is refused with a DataError naming the mode."""
    mode, values = case
    fmt, suffix = FILE_MODES[mode]
    root = tmp_path / "root"
    shutil.rmtree(root, ignore_errors=True)  # tmp_path is shared by all examples
    for split, k in (("train", "a"), ("train", "b"), ("test", "a")):
        (root / split / k).mkdir(parents=True, exist_ok=True)
        image = _mode_image(mode, values) if (split, k) == ("train", "a") else _mode_image(mode, [0, 0, 0, 0])
        image.save(root / split / k / f"0{suffix}", format=fmt)
    with Image.open(root / "train" / "a" / f"0{suffix}") as im:
        assert im.mode == mode
    v = np.array(values, dtype=np.float64)
    try:
        ds = load_image_folder(root)
    except DataError as err:
        assert f"mode {mode} " in str(err) and mode in ("I", "F"), str(err)
        assert (mode == "I" and (v.min() < 0 or v.max() > 65535)) or (mode == "F" and not np.isfinite(v).all())
        return
    x = np.concatenate([ds.x_train, ds.x_test])
    assert np.isfinite(x).all()
    want = {"I;16": v / 65535, "I;16B": v / 65535, "I": v / 65535, "F": v.astype(np.float32)}.get(mode)
    if want is None:  # 8-bit modes: within [0, 1]
        assert 0 <= x.min() and x.max() <= 1
    else:
        rows = {tuple(r.ravel()) for r in x[:, 0]}
        assert tuple(np.float32(want).ravel()) in rows
