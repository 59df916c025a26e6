"""IDX (MNIST / Fashion-MNIST) files: round trips, and every corrupt-file error pinned."""

from __future__ import annotations

import gzip
import os
import struct
import tracemalloc

import numpy as np
import pytest

from layerlab.data import load_dataset, load_idx, read_idx
from layerlab.data.idx import find_idx_files
from layerlab.errors import DataError, SizeLimitError

CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
         np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(arr: np.ndarray, code: int | None = None) -> bytes:
    """IDX encoding written from the format description (independent of the reader)."""
    code = CODES[arr.dtype] if code is None else code
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", n) for n in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path, data: bytes, gz: bool = False):
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.fixture()
def mnist_like(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (30, 6, 5), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 30, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (8, 6, 5), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 8, dtype=np.uint8),
    }
    return tmp_path, arrays


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_read_idx_round_trip(tmp_path, dtype, gz):
    rng = np.random.default_rng(1)
    arr = (rng.normal(size=(3, 4, 5)) * 100).astype(dtype)
    path = write(tmp_path / "a.idx", idx_bytes(arr), gz)
    out = read_idx(path)
    assert out.shape == (3, 4, 5) and out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("gz", [False, True])
def test_folder_round_trip(mnist_like, gz):
    folder, arrays = mnist_like
    for name, arr in arrays.items():
        write(folder / (name + (".gz" if gz else "")), idx_bytes(arr), gz)
    ds = load_dataset(folder)
    assert ds.x_train.shape == (30, 1, 6, 5) and ds.x_test.shape == (8, 1, 6, 5)
    np.testing.assert_array_equal(ds.x_train[:, 0], arrays["train-images-idx3-ubyte"] / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(ds.x_test[:, 0], arrays["t10k-images-idx3-ubyte"] / np.float32(255))
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    top = max(arrays["train-labels-idx1-ubyte"].max(), arrays["t10k-labels-idx1-ubyte"].max())
    assert ds.classes == [str(k) for k in range(top + 1)]


def test_dot_spelling_mixed_compression_and_fashion_names(tmp_path, mnist_like):
    _, arrays = mnist_like
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for i, (name, arr) in enumerate(arrays.items()):
        name = name.replace("-idx", ".idx")  # train-images.idx3-ubyte: the other common spelling
        write(folder / (name + (".gz" if i % 2 else "")), idx_bytes(arr), gz=bool(i % 2))
    ds = load_dataset(folder)
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])


def test_raw_file_wins_over_gz(mnist_like):
    folder, arrays = mnist_like
    for name, arr in arrays.items():
        write(folder / name, idx_bytes(arr))
    write(folder / "train-images-idx3-ubyte.gz", b"not gzip at all")  # never read
    assert find_idx_files(folder)["train_images"].name == "train-images-idx3-ubyte"
    assert load_dataset(folder).x_train.shape == (30, 1, 6, 5)


def test_explicit_paths_and_1d_signals(tmp_path):
    x = np.arange(40, dtype=np.float32).reshape(4, 10)
    y = np.array([0, 1, 2, 1], dtype=np.int32)
    paths = [write(tmp_path / n, idx_bytes(a)) for n, a in (("xa", x), ("ya", y), ("xb", x[:2]), ("yb", y[:2]))]
    ds = load_idx(*paths, name="signals", classes=["a", "b", "c"])
    assert ds.name == "signals" and ds.x_train.shape == (4, 1, 10)
    np.testing.assert_array_equal(ds.x_train[:, 0], x)  # non-uint8 data is not rescaled
    assert ds.classes == ["a", "b", "c"]


def _single(tmp_path, data: bytes, gz=False):
    return write(tmp_path / ("f.gz" if gz else "f"), data, gz)


@pytest.mark.parametrize("gz", [False, True])
def test_wrong_magic(tmp_path, gz):
    path = _single(tmp_path, b"\x01\x02\x08\x01" + b"\x00" * 8, gz)
    with pytest.raises(DataError, match=r"f(\.gz)?: not an IDX file: expected the magic bytes 00 00 <type> "
                                        r"<ndim>, got 01 02 08 01; pass the MNIST image/label files"):
        read_idx(path)


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"not an IDX file: .* got an empty file"):
        read_idx(_single(tmp_path, b""))


@pytest.mark.parametrize("gz", [False, True])
def test_wrong_dtype_code(tmp_path, gz):
    path = _single(tmp_path, bytes([0, 0, 0x0A, 1]) + struct.pack(">I", 2) + b"ab", gz)
    with pytest.raises(DataError, match=r"unknown IDX type code 0x0A: expected one of 0x08, 0x09, 0x0B, 0x0C, "
                                        r"0x0D, 0x0E \(0x08 = uint8 for MNIST\); the file is corrupt or not IDX"):
        read_idx(path)


@pytest.mark.parametrize("ndim", [0, 5, 65, 255])
def test_dims_outside_1_to_4(tmp_path, ndim):
    # 65 dims of size 1 is a consistent file that numpy cannot reshape to (it stops at 64)
    path = _single(tmp_path, bytes([0, 0, 8, ndim]) + struct.pack(f">{ndim}I", *[1] * ndim) + b"\x00")
    with pytest.raises(DataError, match=rf"the IDX header declares {ndim} dims; expected 1 \(labels\), "
                                        rf"2 \(signals\) or 3 \(images\), at most 4; the file is corrupt or not IDX"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_header(tmp_path, gz):
    path = _single(tmp_path, bytes([0, 0, 8, 3]) + struct.pack(">I", 5), gz)
    with pytest.raises(DataError, match=r"truncated IDX header: 3 dims need 12 bytes of sizes, the file has 4"):
        read_idx(path)


def test_truncated_raw_data(tmp_path):
    data = idx_bytes(np.zeros((10, 4, 4), np.uint8))[:-7]
    with pytest.raises(DataError, match=r"truncated IDX file: the header claims 10x4x4 = 160 items \(160 "
                                        r"bytes of data\) but the file holds 153; download it again"):
        read_idx(_single(tmp_path, data))


def test_trailing_bytes_raw(tmp_path):
    data = idx_bytes(np.zeros((2, 3), np.uint8)) + b"xyz"
    with pytest.raises(DataError, match=r"3 bytes more than the IDX header's 2x3 describes"):
        read_idx(_single(tmp_path, data))


def test_truncated_gz_is_caught_by_the_trailer(tmp_path):
    # a header for 10x4x4 with the last 7 bytes missing, compressed whole: the gzip file is valid
    data = idx_bytes(np.zeros((10, 4, 4), np.uint8))[:-7]
    with pytest.raises(DataError, match=r"the IDX header claims 10x4x4 \(176 bytes uncompressed\) but the gzip "
                                        r"trailer records 169 bytes \(mod 2\^32\): the file is truncated"):
        read_idx(_single(tmp_path, data, gz=True))


def test_cut_gz_stream(tmp_path):
    path = _single(tmp_path, idx_bytes(np.arange(3000, dtype=np.int32).reshape(30, 100)), gz=True)
    cut = path.read_bytes()
    path.write_bytes(cut[: len(cut) // 2])
    # the last 4 bytes are now compressed data, not the size trailer
    with pytest.raises(DataError, match=r"f\.gz: the IDX header claims 30x100 \(12,012 bytes uncompressed\) "
                                        r"but the gzip trailer records [\d,]+ bytes"):
        read_idx(path)


def test_corrupt_gz_stream(tmp_path):
    path = _single(tmp_path, idx_bytes(np.arange(300, dtype=np.int32)), gz=True)
    data = bytearray(path.read_bytes())
    data[30:40] = b"\xff" * 10
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"f\.gz: corrupt gzip data \(Error -3 while decompressing data: .*\); "
                                        r"download the file again or gunzip it to check"):
        read_idx(path)


def test_gz_of_two_bytes(tmp_path):
    path = tmp_path / "f.gz"
    path.write_bytes(b"\x1f\x8b")
    with pytest.raises(DataError, match=r"corrupt gzip data .*; download the file again or gunzip it to check"):
        read_idx(path)


def test_huge_header_raw_does_not_allocate(tmp_path):
    # 10^6 x 10^3 x 10^3 = 10^12 uint8 items claimed by a 16-byte file
    path = _single(tmp_path, bytes([0, 0, 8, 3]) + struct.pack(">3I", 10**6, 10**3, 10**3))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"truncated IDX file: the header claims 1000000x1000x1000 = "
                                            r"1,000,000,000,000 items \(1,000,000,000,000 bytes of data\) "
                                            r"but the file holds 0"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_huge_header_gz_does_not_allocate(tmp_path):
    path = _single(tmp_path, bytes([0, 0, 0x0E, 2]) + struct.pack(">2I", 10**6, 10**6) + b"\x00" * 64, gz=True)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"the IDX header claims 1000000x1000000 = 1,000,000,000,000 items "
                                            r"\(8,000,000,000,000 bytes\) but a \d+-byte gzip file holds at most"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope: no such IDX file; check the path"):
        read_idx(tmp_path / "nope")


def test_missing_files_in_folder(mnist_like):
    folder, arrays = mnist_like
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        write(folder / name, idx_bytes(arrays[name]))
    with pytest.raises(DataError, match=r"missing IDX file\(s\) t10k-images-idx3-ubyte\[\.gz\], "
                                        r"t10k-labels-idx1-ubyte\[\.gz\]; an IDX data set needs all four"):
        find_idx_files(folder)
    assert find_idx_files(folder, require=False) is None


def test_count_mismatch(mnist_like):
    folder, arrays = mnist_like
    arrays["train-labels-idx1-ubyte"] = arrays["train-labels-idx1-ubyte"][:29]
    for name, arr in arrays.items():
        write(folder / name, idx_bytes(arr))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte has 30 images but .*train-labels-idx1-ubyte "
                                        r"has 29 labels; the two files must come from the same release"):
        load_dataset(folder)


def test_swapped_images_and_labels(mnist_like):
    folder, arrays = mnist_like
    paths = {n: write(folder / n, idx_bytes(a)) for n, a in arrays.items()}
    with pytest.raises(DataError, match=r"expected a 1-d integer IDX label file, got 3-d uint8 data of shape "
                                        r"\(30, 6, 5\); did you swap images and labels\?"):
        load_idx(paths["train-labels-idx1-ubyte"], paths["train-images-idx3-ubyte"],
                 paths["t10k-images-idx3-ubyte"], paths["t10k-labels-idx1-ubyte"])
    labels = write(folder / "lab", idx_bytes(np.zeros(30, np.uint8)))
    with pytest.raises(DataError, match=r"expected IDX images \(N, H, W\) or signals \(N, L\), got shape \(30,\)"):
        load_idx(labels, labels, paths["t10k-images-idx3-ubyte"], paths["t10k-labels-idx1-ubyte"])


def test_float_images_with_nan(tmp_path):
    x = np.ones((2, 3, 3), np.float32)
    x[1, 2, 2] = np.nan
    y = np.zeros(2, np.uint8)
    paths = [write(tmp_path / n, idx_bytes(a)) for n, a in (("xa", x), ("ya", y), ("xb", x), ("yb", y))]
    with pytest.raises(DataError, match=r"xa: contains NaN or infinite values .*; clean the data first"):
        load_idx(*paths)


def test_negative_labels(tmp_path):
    x = np.zeros((2, 3, 3), np.uint8)
    y = np.array([0, -1], np.int8)
    paths = [write(tmp_path / n, idx_bytes(a)) for n, a in (("xa", x), ("ya", y), ("xb", x), ("yb", y))]
    with pytest.raises(DataError, match=r"ya: negative label -1; labels must be class indices >= 0"):
        load_idx(*paths)


def test_cut_gz_stream_with_intact_trailer(tmp_path):
    path = _single(tmp_path, idx_bytes(np.arange(3000, dtype=np.int32).reshape(30, 100)), gz=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + data[-8:])  # CRC and size still say 12,012 bytes
    with pytest.raises(DataError, match=r"f\.gz: corrupt gzip data \(.*\); download the file again"):
        read_idx(path)


def _write_folder(folder, arrays, gz=False):
    folder.mkdir(exist_ok=True)
    for name, arr in arrays.items():
        write(folder / (name + (".gz" if gz else "")), idx_bytes(arr), gz)
    return folder


@pytest.mark.parametrize("label", [2**31 - 1, 100_000])
def test_huge_label_is_refused_before_the_class_list_is_built(mnist_like, capped, label):
    # an int32 label file holding 2**31-1 made range(2**31) class names: 8 GB
    folder, arrays = mnist_like
    arrays["train-labels-idx1-ubyte"] = arrays["train-labels-idx1-ubyte"].astype(np.int32)
    arrays["train-labels-idx1-ubyte"][3] = label
    _write_folder(folder, arrays)
    capped(f"D.load_dataset({str(folder)!r})", "DataError",
           f"train-labels-idx1-ubyte: the largest label is {label:,}; layerlab accepts at most 100,000 classes")


def test_one_class_is_refused(mnist_like):
    folder, arrays = mnist_like
    arrays["train-labels-idx1-ubyte"][:] = 4
    _write_folder(folder, arrays)
    with pytest.raises(DataError, match=r"the training split holds only class '4' \(label 4\); a classifier needs "
                                        r"at least two classes"):
        load_dataset(folder)


def test_honest_gzip_bomb_passes_the_budget_first(mnist_like, monkeypatch):
    # 4 MB of zero pixels gzip to ~4 KB, inside deflate's ratio: only the budget can refuse them
    folder, arrays = mnist_like
    arrays["train-images-idx3-ubyte"] = np.zeros((4000, 1000), np.uint8)
    arrays["train-labels-idx1-ubyte"] = np.arange(4000, dtype=np.uint8) % 10
    arrays["t10k-images-idx3-ubyte"] = np.zeros((8, 1000), np.uint8)
    _write_folder(folder, arrays, gz=True)
    assert (folder / "train-images-idx3-ubyte.gz").stat().st_size < 20_000
    message = (r"train-images-idx3-ubyte\.gz: 4000x1000 uint8 values needs 24,000,000 bytes, and the load would "
               r"then hold 24,000,000 bytes, over the data budget of 20,000,000 bytes; nothing was allocated\. "
               r"Use a smaller data set, or raise the budget with the environment variable LAYERLAB_DATA_MAX_BYTES")
    monkeypatch.setenv("LAYERLAB_DATA_MAX_BYTES", "20M")
    decompressed = []
    real_read = gzip.GzipFile.read
    monkeypatch.setattr(gzip.GzipFile, "read", lambda f, n=-1: decompressed.append(n) or real_read(f, n))
    with pytest.raises(SizeLimitError, match=message):
        load_dataset(folder)
    assert max(decompressed) <= 4 * 2  # only the header was decompressed
    monkeypatch.delenv("LAYERLAB_DATA_MAX_BYTES")
    assert load_dataset(folder).x_train.shape == (4000, 1, 1000)


def test_budget_counts_all_four_files(mnist_like):
    # train images 30x6x5 uint8: 2 x 900 raw + 4 x 900 float32 = 5,400 bytes; labels 2 x 30
    folder, arrays = mnist_like
    _write_folder(folder, arrays)
    with pytest.raises(SizeLimitError, match=r"train-labels-idx1-ubyte: 30 uint8 values needs 60 bytes, and the "
                                             r"load would then hold 5,460 bytes, over the data budget of 5,459 bytes"):
        load_dataset(folder, max_bytes=5459)


def test_fifo_named_like_an_idx_file_is_reported_without_blocking(mnist_like):
    folder, arrays = mnist_like
    _write_folder(folder, arrays)
    (folder / "train-images-idx3-ubyte").unlink()
    os.mkfifo(folder / "train-images-idx3-ubyte")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: expected a regular IDX file, found a FIFO, device, "
                                        r"socket or broken symlink; layerlab never opens those \(a FIFO would block "
                                        r"forever\): replace it with the IDX file it is named after"):
        load_dataset(folder)
