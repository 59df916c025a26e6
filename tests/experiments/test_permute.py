"""permute_positions against an explicit loop over pixels."""

from __future__ import annotations

import numpy as np
import pytest

from layerlab.data import Dataset
from layerlab.errors import ArgumentError
from layerlab.experiments import permute_positions, position_permutation


def image_dataset(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    x_train = rng.normal(size=(5, 3, 4, 6)).astype(np.float32)
    x_test = rng.normal(size=(2, 3, 4, 6)).astype(np.float32)
    return Dataset("rgb", x_train, np.array([0, 1, 2, 0, 1]), x_test, np.array([2, 0]), ["a", "b", "c"])


def test_every_channel_of_a_pixel_moves_to_the_same_place():
    data = image_dataset()
    permuted, perm = permute_positions(data, seed=3)
    height, width = 4, 6
    for split in ("train", "test"):
        x, out = getattr(data, f"x_{split}"), getattr(permuted, f"x_{split}")
        for n in range(len(x)):
            for c in range(3):
                for i in range(height):
                    for j in range(width):
                        source = perm[i * width + j]
                        assert out[n, c, i, j] == x[n, c, source // width, source % width]
    assert np.array_equal(permuted.y_train, data.y_train) and np.array_equal(permuted.y_test, data.y_test)
    assert permuted.classes == data.classes and permuted.x_train.dtype == np.float32
    assert permuted.name == "rgb (positions permuted, seed 3)"


def test_permutation_is_a_fixed_bijection():
    perm = position_permutation((4, 6), seed=3)
    assert sorted(perm.tolist()) == list(range(24))
    assert np.array_equal(perm, position_permutation((4, 6), seed=3))
    assert not np.array_equal(perm, position_permutation((4, 6), seed=4))
    assert not np.array_equal(perm, np.arange(24))


def test_one_dimensional_signals():
    x = np.arange(2 * 1 * 10, dtype=np.float32).reshape(2, 1, 10)
    data = Dataset("signal", x, np.array([0, 1]), x[:1].copy(), np.array([1]), ["a", "b"])
    permuted, perm = permute_positions(data, seed=0)
    assert np.array_equal(permuted.x_train[:, 0], x[:, 0][:, perm])
    assert np.array_equal(permuted.x_test[0, 0], x[0, 0][perm])


def test_bad_seed():
    with pytest.raises(ArgumentError, match=r"permutation seed must be a non-negative integer. Received: seed=-1"):
        position_permutation((3,), seed=-1)
