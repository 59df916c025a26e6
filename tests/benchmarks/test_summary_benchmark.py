"""``benchmarks/summary.py``: its argument errors (timings are never asserted in tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "summary.py"


def test_rounds_must_be_positive():
    result = subprocess.run([sys.executable, str(SCRIPT), "--rounds", "0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--rounds and --threads must be positive. Received: --rounds 0 --threads 2" in result.stderr
