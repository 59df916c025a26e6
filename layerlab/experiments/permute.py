"""Shuffle the positions of every sample by one fixed permutation (the "permuted pixels" test).

A dense first layer is indifferent to the order of its inputs: permuting the columns of its weight
matrix undoes any permutation of the input. A convolution is not: its prior (nearby inputs belong
together, the same pattern anywhere) only holds in the original order. Training both on data whose
positions were shuffled by *one* permutation, shared by all samples and both splits, measures how
much each layer type owes to that prior.
"""

from __future__ import annotations

from math import prod

import numpy as np

from layerlab.data import Dataset
from layerlab.errors import ArgumentError

__all__ = ["position_permutation", "permute_positions"]


def position_permutation(spatial_shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A permutation of the ``∏ spatial_shape`` positions, from ``numpy.random.default_rng(seed)``.

    Examples:
        >>> position_permutation((2, 2), seed=0).tolist()
        [2, 0, 1, 3]
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ArgumentError(f"permutation seed must be a non-negative integer. Received: seed={seed!r}")
    return np.random.default_rng(seed).permutation(prod(spatial_shape))


def permute_positions(dataset: Dataset, seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """The same data with the positions of every sample shuffled by one fixed permutation.

    All channels of a position move together (a pixel keeps its RGB), and train and test use the
    same permutation: ``out[n, c, p] = x[n, c, perm[p]]`` over flattened positions ``p``.

    Args:
        dataset: the data set, ``x`` of shape ``(N, C, *spatial)``.
        seed: seed of the permutation. Default: ``0``.

    Returns:
        ``(permuted dataset, perm)`` with ``perm`` of shape ``(∏ spatial,)``.

    Shape:
        x ``(N, C, *spatial)`` → ``(N, C, *spatial)``.

    Examples:
        >>> ds = Dataset("toy", np.arange(8, dtype=np.float32).reshape(2, 1, 4), np.array([0, 1]),
        ...              np.zeros((1, 1, 4), np.float32), np.array([0]), ["a", "b"])
        >>> permuted, perm = permute_positions(ds, seed=0)
        >>> perm.tolist(), permuted.x_train[0, 0].tolist()
        ([2, 0, 1, 3], [2.0, 0.0, 1.0, 3.0])
    """
    spatial = dataset.x_train.shape[2:]
    perm = position_permutation(spatial, seed)

    def shuffle(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), x.shape[1], -1)  # (N, C, P)
        return np.ascontiguousarray(flat[:, :, perm]).reshape(x.shape)

    permuted = Dataset(f"{dataset.name} (positions permuted, seed {seed})", shuffle(dataset.x_train),
                       dataset.y_train, shuffle(dataset.x_test), dataset.y_test, list(dataset.classes))
    return permuted, perm
