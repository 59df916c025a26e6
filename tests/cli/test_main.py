"""`layerlab` itself: the help of every subcommand is built without importing torch (fast start)."""

from __future__ import annotations

import os
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


def test_size_limit_errors_name_the_commands_flag_or_only_the_environment_variable(monkeypatch, capsys, tmp_path):
    import layerlab.cli.train
    from layerlab.cli.main import main
    from layerlab.limits import check_size

    monkeypatch.chdir(tmp_path)
    assert main(["explain", "conv2d", "--in", "3x64x64", "--out-channels", "8", "--kernel", "3",
                 "--max-bytes", "1000"]) == 2
    assert capsys.readouterr().err.endswith(
        "raise the limit with --max-bytes N or the environment variable LAYERLAB_MAX_BYTES\n")

    monkeypatch.setattr(layerlab.cli.train, "run", lambda args: check_size("a model", 10, 4, max_bytes=1, hint="Fix"))
    assert main(["train"]) == 2
    assert capsys.readouterr().err == ("layerlab train: error: a model would allocate 10 elements × 4 bytes = 40 B, "
                                       "over the limit of 1 B; nothing was allocated. Fix, or raise the limit with "
                                       "the environment variable LAYERLAB_MAX_BYTES\n")


def test_a_reader_that_goes_away_ends_the_command_quietly_with_141():
    """``layerlab ... | head``: the pipe closes before the output is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    codes = ["from layerlab.cli.main import main; import sys; sys.exit(main(['shape', '1x28x28', 'Conv2d(8, 3)', "
             "'--json']))",
             # a short output stays in stdout's buffer until the end of the command
             "import sys, layerlab.cli.shape as shape; shape.run = lambda args: print('short'); "
             "from layerlab.cli.main import main; sys.exit(main(['shape', '1x28x28']))"]
    for code in codes:
        done = subprocess.run([sys.executable, "-c", code], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=120, env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"})
        assert (done.returncode, done.stderr) == (141, ""), code
    os.close(write_end)
