"""Fuzzed file parsers: any bytes either load or raise DataError, never another exception.

Inputs are valid files with random byte flips, cuts and insertions (most interesting failures sit
close to valid files) plus fully random bytes. Example counts are small to keep the suite fast; the
property is what matters, and hypothesis replays failures from its database.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from layerlab.data import load_image_folder, load_npz, read_idx
from layerlab.data.cifar import load_pickle
from layerlab.errors import DataError

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
    try:
        load(path)
    except DataError:
        pass


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
