"""`layerlab` itself: the help of every subcommand is built without importing torch (fast start)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from layerlab.cli.main import COMMANDS


def help_without_torch(*argv: str) -> subprocess.CompletedProcess:
    """``layerlab *argv`` in a fresh process where any ``import torch`` raises ImportError."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from layerlab.cli.main import main\n"
        f"sys.exit(main({list(argv)!r}))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_help_lists_every_command_without_torch():
    result = help_without_torch("--help")
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_subcommand_help_without_torch(command):
    result = help_without_torch(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: layerlab {command}")
