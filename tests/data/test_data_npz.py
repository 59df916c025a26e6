"""``.npz`` data sets: round trips and every malformed-file error pinned."""

from __future__ import annotations

import io
import os
import tracemalloc
import zipfile

import numpy as np
import pytest

from layerlab.data import load_dataset, load_npz
from layerlab.errors import DataError, SizeLimitError


def test_round_trip_with_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 2, 5)), rng.integers(0, 3, 20)
    xt, yt = rng.normal(size=(6, 2, 5)), rng.integers(0, 3, 6)
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=xt, y_test=yt, classes=np.array(["a", "b", "c"]))
    ds = load_dataset(tmp_path / "d.npz")
    np.testing.assert_array_equal(ds.x_train, x.astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, y)
    np.testing.assert_array_equal(ds.x_test, xt.astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, yt)
    assert ds.classes == ["a", "b", "c"] and ds.name == str(tmp_path / "d.npz")


def test_round_trip_seeded_split_and_2d_features(tmp_path):
    x = np.arange(200, dtype=np.float32).reshape(50, 4)  # (N, F): one channel added
    y = np.repeat(np.arange(5), 10)
    np.savez_compressed(tmp_path / "d.npz", x=x, y=y.astype(np.float64))  # whole-number float labels
    a = load_npz(tmp_path / "d.npz", seed=1)
    assert a.x_train.shape == (40, 1, 4) and a.x_test.shape == (10, 1, 4)
    assert (np.bincount(a.y_test) == 2).all()  # stratified: 20% of each class
    # every row keeps its own label, and train + test is the whole file
    rows = np.concatenate([a.x_train, a.x_test])[:, 0]
    labels = np.concatenate([a.y_train, a.y_test])
    np.testing.assert_array_equal(labels, y[(rows[:, 0] // 4).astype(int)])
    assert sorted(rows[:, 0]) == sorted(x[:, 0])
    np.testing.assert_array_equal(load_npz(tmp_path / "d.npz", seed=1).y_train, a.y_train)
    assert not np.array_equal(load_npz(tmp_path / "d.npz", seed=2).y_train, a.y_train)
    assert a.classes == ["0", "1", "2", "3", "4"]


def _save(tmp_path, **arrays):
    np.savez(tmp_path / "d.npz", **arrays)
    return tmp_path / "d.npz"


X = np.zeros((10, 1, 3), np.float32)
Y = np.arange(10) % 2


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": X}, r"d\.npz: missing the 'y' array \(found: \['x'\]\); save inputs as x and labels as y"),
        ({"inputs": X, "y": Y}, r"missing the 'x' array \(found: \['inputs', 'y'\]\)"),
        ({}, r"missing the 'x' array \(found: no arrays\)"),
        ({"x": X, "y": Y, "x_test": X}, r"has 'x_test' but no 'y_test'; save both or neither"),
        ({"x": X, "y": Y, "y_test": Y}, r"has 'y_test' but no 'x_test'; save both or neither"),
        ({"x": X, "y": Y[:9]}, r"'x' has 10 samples but 'y' has 9 labels; each input needs exactly one label"),
        ({"x": X, "y": Y, "x_test": X, "y_test": Y[:3]}, r"'x_test' has 10 samples but 'y_test' has 3 labels"),
        ({"x": X, "y": Y, "x_test": np.zeros((10, 1, 4)), "y_test": Y},
         r"x has samples of shape \(1, 3\) but x_test \(1, 4\); train and test inputs must have one shape"),
        ({"x": np.where(np.arange(30).reshape(10, 1, 3) == 17, np.nan, 0.0), "y": Y},
         r"'x' holds 1 NaN/Inf value\(s\) .*, the first at sample 5; drop or impute those samples first"),
        ({"x": np.full((10, 1, 3), 1e300), "y": Y}, r"'x' holds 30 NaN/Inf value\(s\) \(or values too large for float32\)"),
        ({"x": np.array(["a"] * 10)[:, None], "y": Y}, r"'x' must be a numeric array \(N, C, \*spatial\) or \(N, F\), got <U1"),
        ({"x": np.zeros(10), "y": Y}, r"'x' must be a numeric array .* got float64 of shape \(10,\)"),
        ({"x": X, "y": Y + 0.5}, r"'y' holds non-integer values; labels must be class indices 0\.\.K-1"),
        ({"x": X, "y": np.eye(10)}, r"'y' must be a 1-d array of class indices, got float64 of shape \(10, 10\); "
                                    r"for one-hot labels save y\.argmax\(1\)"),
        ({"x": X, "y": Y - 1}, r"'y' holds the negative label -1; labels must be class indices 0\.\.K-1"),
        ({"x": X[:0], "y": Y[:0]}, r"'x' and 'y' hold no samples"),
        ({"x": X[:2], "y": Y[:2]}, r"2 samples are too few to split off a 20% test set per class; add samples "
                                   r"or save x_test and y_test"),
        ({"x": X, "y": Y, "classes": np.zeros(2)}, r"'classes' must be a 1-d string array, got float64"),
        ({"x": X, "y": Y, "classes": np.array(["one"])}, r"y_train must hold class indices in \[0, 1\)"),
    ],
)
def test_bad_contents(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message):
        load_npz(_save(tmp_path, **arrays))


def test_object_array_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([X[0], "not numbers"], dtype=object), y=Y[:2])
    with pytest.raises(DataError, match=r"d\.npz: holds an object array, which only pickle can read and layerlab "
                                        r"refuses \(it can run code\); save numeric arrays"):
        load_npz(path)


def test_header_claiming_more_than_stored_does_not_allocate(tmp_path):
    good = np.zeros(8, np.float64)
    path = _save(tmp_path, x=X, y=Y)
    # rewrite x.npy with a header claiming 10**12 float64 values but only 64 bytes of data
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    with zipfile.ZipFile(path, "w") as z:
        with z.open("x.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.write(good.tobytes())
        with z.open("y.npy", "w") as f:
            np.lib.format.write_array(f, Y)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"member x\.npy claims shape \(1000000000000,\) of float64 "
                                            r"\(8,000,000,000,000 bytes\) but stores \d+ bytes; the file is "
                                            r"corrupt or truncated"):
            load_npz(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04\x14\x00broken"])
def test_not_a_zip(tmp_path, content):
    path = tmp_path / "d.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"d\.npz: not a readable \.npz file \(.*\); write it with np\.savez"):
        load_npz(path)


def test_truncated_npz(tmp_path):
    path = _save(tmp_path, x=np.zeros((100, 1, 30)), y=np.arange(100) % 3)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"d\.npz: not a readable \.npz file"):
        load_npz(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.npz: no such \.npz file; check the path"):
        load_npz(tmp_path / "nope.npz")


def _npz_with_members(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _npy(array=None, header_shape=None, dtype="<f8") -> bytes:
    buf = io.BytesIO()
    if header_shape is None:
        np.lib.format.write_array(buf, array)
    else:  # a header claiming header_shape, followed by 64 bytes
        np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": header_shape})
        buf.write(bytes(64))
    return buf.getvalue()


def test_member_without_npy_suffix_is_checked_too(tmp_path, capped):
    # np.load reads a member named "x" as the array x: its 3.6 TiB claim must be checked like x.npy's
    path = _npz_with_members(tmp_path / "d.npz", {"x": _npy(header_shape=(450_000_000_000,)), "y.npy": _npy(Y)})
    capped(f"D.load_npz({str(path)!r})", "DataError",
           "member x claims shape (450000000000,) of float64 (3,600,000,000,000 bytes) but stores 192 bytes")


def test_member_that_is_not_an_array(tmp_path):
    path = _npz_with_members(tmp_path / "d.npz", {"x.npy": _npy(X), "y.npy": _npy(Y), "notes.txt": b"hello"})
    with pytest.raises(DataError, match=r"d\.npz: member 'notes\.txt' is not a \.npy array; an \.npz for layerlab "
                                        r"holds only arrays, write it with np\.savez"):
        load_npz(path)


@pytest.mark.parametrize("label", [2**40, 2**63 - 1, float(2**40), 1e300, 100_000])
def test_huge_label_is_refused_before_the_class_list_is_built(tmp_path, capped, label):
    # range(max_label + 1) of names would need terabytes; 100,000 is the first label past the bound
    dtype = np.float64 if isinstance(label, float) else np.int64
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((10, 1, 2), np.float32), y=np.array([0, label] * 5, dtype=dtype))
    shown = f"{int(label):,}" if label < 1e30 else "1e+300"
    capped(f"D.load_npz({str(path)!r})", "DataError",
           f"'y': the largest label is {shown}; layerlab accepts at most 100,000 classes")


def test_one_class_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 1, 2), np.float32), y=np.zeros(10, np.int64))
    with pytest.raises(DataError, match=r"the training split holds only class '0' \(label 0\)"):
        load_npz(tmp_path / "d.npz")


def test_honest_compression_bomb_passes_the_budget_first(tmp_path, monkeypatch):
    # 4 MB of zeros deflates to ~4 KB, well inside deflate's ratio: only the budget can refuse it
    np.savez_compressed(tmp_path / "d.npz", x=np.zeros((1000, 1, 1000), np.float32), y=np.arange(1000) % 2)
    assert (tmp_path / "d.npz").stat().st_size < 20_000
    message = (r"d\.npz: member x\.npy \(1000x1x1000 float32\) needs 12,000,000 bytes, and the load would then "
               r"hold 12,000,000 bytes, over the data budget of 10,000,000 bytes; nothing was allocated\. Use a "
               r"smaller data set, or raise the budget with the environment variable LAYERLAB_DATA_MAX_BYTES")
    with pytest.raises(SizeLimitError, match=message):
        load_npz(tmp_path / "d.npz", max_bytes=10_000_000)
    monkeypatch.setenv("LAYERLAB_DATA_MAX_BYTES", "10M")
    with pytest.raises(SizeLimitError, match=message):
        load_dataset(tmp_path / "d.npz")
    assert load_dataset(tmp_path / "d.npz", max_bytes=13_000_000).x_train.shape == (800, 1, 1000)


def test_fifo_is_reported_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "d.npz")
    with pytest.raises(DataError, match=r"d\.npz: expected a regular \.npz file, found a FIFO, device, socket or "
                                        r"broken symlink; layerlab never opens those"):
        load_npz(tmp_path / "d.npz")


def _patch_sizes(path, name: bytes, size: int):
    """Rewrite the uncompressed size of member ``name`` in its local header and central directory."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        while at >= 0 and name not in data[at:at + 80]:
            at = data.find(signature, at + 4)
        data[at + offset:at + offset + 4] = size.to_bytes(4, "little")
    path.write_bytes(bytes(data))


def test_stored_member_whose_zip_entry_lies_about_its_size(tmp_path, capped):
    # a stored y.npy claiming 1.5 GB (inside the budget) in its header and its zip entry, storing 192
    # bytes: numpy would allocate the 1.5 GB array before finding the data missing
    npy = _npy(header_shape=(187_500_000,), dtype="<i8")
    path = _npz_with_members(tmp_path / "d.npz", {"x.npy": _npy(X), "y.npy": npy})
    _patch_sizes(path, b"y.npy", 1_500_000_128)
    capped(f"D.load_npz({str(path)!r})", "DataError",
           "member y.npy claims shape (187500000,) of int64 (1,500,000,000 bytes) but stores 192 bytes; the file "
           "is corrupt or truncated")


def test_other_zip_compression_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as z:
        z.writestr("x.npy", _npy(X))
        z.writestr("y.npy", _npy(Y))
    with pytest.raises(DataError, match=r"d\.npz: member 'x\.npy' uses zip compression method 12; np\.savez writes "
                                        r"stored or deflated members only"):
        load_npz(path)
