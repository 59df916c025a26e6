"""A short coverage-guided atheris run of the parsers (skipped when atheris is not installed)."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

HERE = Path(__file__).parent


def test_atheris_short_run_finds_no_crash(tmp_path):
    result = subprocess.run(
        [sys.executable, str(HERE / "fuzz_parse.py"), "-runs=4000", "-seed=7", f"-dict={HERE / 'layers.dict'}", "-max_len=600"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,  # crash files land in tmp_path
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Done 4000 runs" in result.stderr
