"""The Makefile's setup: triton (0.9 GB) only on request (`make triton`), which CI makes before `make test`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target, installs_triton", [("setup", False), ("test", False), ("run", False),
                                                     ("triton", True)])
def test_triton_is_installed_only_by_make_triton(tmp_path, target, installs_triton):
    plan = subprocess.run(["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}"],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert "torch==" in plan
    assert ("triton==" in plan) is installs_triton, plan


def test_ci_installs_triton_before_it_runs_the_tests():
    commands = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("make")]
    assert commands == ["make triton", "make test"]


def test_ci_installs_the_browser_and_requires_the_browser_tests():
    """CI runs the browser tests of `layerlab serve`, never skips them: it installs Debian's
    chromium + chromium-driver when missing (without prompts) and makes a missing browser a failure."""
    script = (ROOT / ".ci" / "run").read_text()
    install = script.index("$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver")
    required = script.index("export LAYERLAB_BROWSER_TESTS=required")
    make_test = script.index("\nmake test\n")
    assert script.index("$sudo apt-get update -q") < install < make_test
    assert required < make_test
    assert "LAYERLAB_BROWSER_TESTS" in (ROOT / "tests" / "serve" / "conftest.py").read_text()
