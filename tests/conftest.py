"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test runs on one torch thread, and the previous count is restored afterwards.

    The suite runs under pytest-xdist on 2 cores: tiny ops on several threads per worker cost more
    in hand-offs than they gain, and bit-exact comparisons (resume, DDP, permutation invariance)
    need the same thread count in every run. Tests that measure other counts set them themselves.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

