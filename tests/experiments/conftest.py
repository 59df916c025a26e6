"""Shared fixtures of the experiment tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def toy_images():
    """A small image data set (1, 6, 6), 4 classes: class templates plus noise (an MLP reaches ~80% in 2 epochs)."""
    import numpy as np

    from layerlab.data import Dataset

    rng = np.random.default_rng(0)
    templates = rng.normal(size=(4, 1, 6, 6))
    y = rng.integers(0, 4, size=400)
    x = (templates[y] + 2.0 * rng.normal(size=(400, 1, 6, 6))).astype(np.float32)
    return Dataset("toy", x[:320], y[:320].astype(np.int64), x[320:], y[320:].astype(np.int64), list("abcd"))
