"""The data budget and the class-count bound that every loader applies before allocating."""

from __future__ import annotations

import time

import numpy as np
import pytest

from layerlab.data import Dataset
from layerlab.data.dataset import stratified_split
from layerlab.data.limits import (DEFAULT_DATA_MAX_BYTES, MAX_CLASSES, DataBudget, data_max_bytes,
                                  numbered_classes)
from layerlab.errors import ArgumentError, DataError, SizeLimitError


def test_budget_precedence(monkeypatch):
    monkeypatch.delenv("LAYERLAB_DATA_MAX_BYTES", raising=False)
    assert data_max_bytes() == DEFAULT_DATA_MAX_BYTES == 2 * 1024**3
    monkeypatch.setenv("LAYERLAB_DATA_MAX_BYTES", "8GiB")
    assert data_max_bytes() == 8 * 1024**3
    monkeypatch.setenv("LAYERLAB_DATA_MAX_BYTES", "3 M")
    assert data_max_bytes() == 3_000_000
    assert data_max_bytes(1234) == 1234  # the argument wins over the environment


@pytest.mark.parametrize("text, reason", [
    ("1e400", r"must be a number of bytes below 2\*\*63 \(about 9\.2e18\)\. Received: '1e400'; use e\.g\. 2GiB"),
    ("9" * 30, r"must be a number of bytes below 2\*\*63"),
    ("99999999TiB", r"must be a number of bytes below 2\*\*63"),
    ("-5", r"must be a number of bytes such as 2147483648, 2e9 or 2GiB\. Received: '-5'"),
    ("4 parsecs", r"must be a number of bytes such as 2147483648, 2e9 or 2GiB\. Received: '4 parsecs'"),
    ("0", r"must be positive\. Received: '0'"),
])
def test_bad_budget_setting(monkeypatch, text, reason):
    monkeypatch.setenv("LAYERLAB_DATA_MAX_BYTES", text)
    with pytest.raises(ArgumentError, match=r"^the environment variable LAYERLAB_DATA_MAX_BYTES " + reason):
        data_max_bytes()


def test_budget_setting_reads_like_the_memory_limit(monkeypatch):
    monkeypatch.setenv("LAYERLAB_DATA_MAX_BYTES", "2.5GiB")
    assert data_max_bytes() == int(2.5 * 1024**3)
    monkeypatch.setenv("LAYERLAB_DATA_MAX_BYTES", "2e9")
    assert data_max_bytes() == 2_000_000_000


@pytest.mark.parametrize("value", [0, -1, True, 2.0, 2**63])
def test_bad_budget_argument(value):
    with pytest.raises(ArgumentError, match=r"max_bytes must be a positive integer below 2\*\*63\. Received: max_bytes="):
        DataBudget(value)


def test_budget_adds_up_and_names_the_way_out():
    budget = DataBudget(max_bytes=1000)
    budget.charge(600, "f: member x")
    with pytest.raises(SizeLimitError, match=r"^f: member y needs 600 bytes, and the load would then hold 1,200 "
                                             r"bytes, over the data budget of 1,000 bytes; nothing was allocated\. "
                                             r"Use a smaller data set, or raise the budget with the environment "
                                             r"variable LAYERLAB_DATA_MAX_BYTES \(e\.g\. LAYERLAB_DATA_MAX_BYTES=8GiB\)$"):
        budget.charge(600, "f: member y")
    assert budget.used == 600  # a refused charge is not counted


def test_class_count_is_bounded_before_the_list_is_built():
    assert len(numbered_classes(MAX_CLASSES - 1, "f")) == MAX_CLASSES
    with pytest.raises(DataError, match=r"^f: the largest label is 1,099,511,627,776; layerlab accepts at most "
                                        r"100,000 classes \(labels 0\.\.99,999\); the labels are corrupt or not "
                                        r"class indices, renumber them 0\.\.K-1$"):
        numbered_classes(2**40, "f")


def _toy(y_train, classes):
    x = np.zeros((len(y_train), 1, 3), np.float32)
    return Dataset("toy", x, np.array(y_train), x[:1].copy(), np.array([0]), classes)


def test_one_class_training_split_is_refused():
    with pytest.raises(DataError, match=r"dataset 'toy': the training split holds only class 'a' \(label 0\); a "
                                        r"classifier needs at least two classes to learn anything \(one class "
                                        r"scores a meaningless 100%\); add samples of the other classes"):
        _toy([0, 0, 0], ["a", "b"])
    assert _toy([0, 1, 0], ["a", "b"]).num_classes == 2


def test_too_many_class_names_are_refused():
    with pytest.raises(DataError, match=r"dataset 'toy': classes must be a list of at most 100,000 names\. "
                                        r"Received: 100,001 names"):
        _toy([0, 1], [str(k) for k in range(MAX_CLASSES + 1)])


def test_samples_without_values_are_refused():
    x = np.zeros((2, 1, 0), np.float32)
    with pytest.raises(DataError, match=r"dataset 'toy': samples of shape \(1, 0\) hold no values; every per-sample "
                                        r"dimension \(C, \*spatial\) must be at least 1"):
        Dataset("toy", x, np.array([0, 1]), x[:1].copy(), np.array([0]), ["a", "b"])


def test_split_time_is_linear_in_the_number_of_classes():
    # 40,000 classes of 2 samples (a 1 MB npz): a y == k scan per class took ~14 s, one sort takes ~1 s
    y = np.arange(80_000) % 40_000
    start = time.perf_counter()
    train, test = stratified_split(y, 0.5, seed=0)
    assert time.perf_counter() - start < 8
    assert len(train) == len(test) == 40_000 and set(y[test]) == set(range(40_000))


def test_split_is_the_one_published_runs_used():
    # the indices the per-class scan gave for this input (seeded splits must not move between versions)
    y = np.array([2, 0, 1, 2, 2, 0, 1, 1, 0, 2, 1, 0, 0, 2, 1])
    train, test = stratified_split(y, 0.4, seed=3)
    assert train.tolist() == [6, 4, 14, 9, 7, 5, 11, 1, 13]
    assert test.tolist() == [0, 3, 2, 10, 8, 12]
