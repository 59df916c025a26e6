"""Format detection of ``load_dataset`` paths and its errors."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from layerlab.data import detect_format, load_dataset
from layerlab.errors import ArgumentError, DataError


def test_detects_each_format(tmp_path):
    with open(tmp_path / "d.NPZ", "wb") as f:  # a path would get ".npz" appended
        np.savez(f, x=np.zeros((5, 1, 2)), y=np.zeros(5))
    assert detect_format(tmp_path / "d.NPZ") == "npz"
    idx = tmp_path / "idx"
    idx.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte.gz",
                 "t10k-images.idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (idx / name).write_bytes(b"")
    assert detect_format(idx) == "idx"
    c10 = tmp_path / "c10" / "cifar-10-batches-py"
    c10.mkdir(parents=True)
    for name in ("data_batch_1", "test_batch"):
        (c10 / name).write_bytes(pickle.dumps({}))
    assert detect_format(c10) == "cifar10" and detect_format(c10.parent) == "cifar10"
    c100 = tmp_path / "c100"
    c100.mkdir()
    for name in ("train", "test", "meta"):
        (c100 / name).write_bytes(b"")
    assert detect_format(c100) == "cifar100"
    images = tmp_path / "images"
    (images / "cat").mkdir(parents=True)
    assert detect_format(images) == "image_folder"


def test_unknown_file_type(tmp_path):
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(DataError, match=r"data\.csv: cannot tell the format of this file: a data file must be "
                                        r"an \.npz with x and y arrays; IDX, CIFAR and image data are loaded "
                                        r"from their folder, so pass .*"):
        load_dataset(tmp_path / "data.csv")


def test_folder_with_nothing_readable(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / ".git").mkdir()
    with pytest.raises(DataError, match=r"this folder holds no data layerlab can read: expected the four MNIST "
                                        r"IDX files, a CIFAR-10/100 python folder, or one sub-folder of images "
                                        r"per class"):
        load_dataset(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"nothing-here: no such file or folder, and not a built-in data set "
                                        r"name \(mnist1d, mnist, digits, poskeys\); check the path"):
        load_dataset(tmp_path / "nothing-here")


def test_a_folder_named_like_a_builtin_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "a").mkdir()
    (tmp_path / "digits" / "b").mkdir()
    with pytest.raises(DataError, match=r"the class folder 'a' holds no images"):
        load_dataset("digits")  # the local folder, not scikit-learn's digits


def test_limit_applies_to_files(tmp_path):
    np.savez(tmp_path / "x.npz", x=np.arange(100, dtype=np.float32).reshape(50, 1, 2), y=np.arange(50) % 2)
    ds = load_dataset(tmp_path / "x.npz", limit=7)
    assert len(ds.y_train) == 7 and len(ds.y_test) == 7


def test_fifo_path_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.npz")
    with pytest.raises(DataError, match=r"pipe\.npz: neither a regular file nor a folder \(a FIFO or device\?\); "
                                        r"pass a data file or folder"):
        load_dataset(tmp_path / "pipe.npz")


def test_data_package_imports_without_torch(tmp_path):
    # layerlab.data needs numpy only (ARCHITECTURE.md): import and load with torch made unimportable
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np\n"
            "from layerlab.data import load_dataset\n"
            f"np.savez({str(tmp_path / 'd.npz')!r}, x=np.zeros((10, 1, 3)), y=np.arange(10) % 2)\n"
            f"print(load_dataset({str(tmp_path / 'd.npz')!r}).input_shape)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(1, 3)"


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_name_is_refused_instead_of_loading_the_current_folder(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    for k in ("a", "b"):  # the current folder would load as an image folder of two classes
        (tmp_path / k).mkdir()
    with pytest.raises(ArgumentError, match=r"name_or_path is empty: pass a built-in name \(mnist1d, mnist, digits, "
                                            r"poskeys\) or the path of a data file or folder \(use '\.' for the current folder\)"):
        load_dataset(name)
