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


def pytest_terminal_summary(terminalreporter):
    """One line when the browser tests of ``layerlab serve`` skipped (no headless Chromium here):
    which tests, and how to get the browser (``tests/serve/conftest.py`` decides the skip)."""
    skipped = [report for report in terminalreporter.stats.get("skipped", [])
               if report.nodeid.startswith("tests/serve/test_page_")]
    if skipped:
        files = ", ".join(sorted({report.nodeid.split("::")[0] for report in skipped}))
        terminalreporter.write_line(f"{len(skipped)} browser tests skipped ({files}): they need headless Chromium, "
                                    "get it with `apt-get install chromium chromium-driver`")
