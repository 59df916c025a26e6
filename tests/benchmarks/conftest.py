"""The benchmark scripts import what they share (``benchmarks/_machine.py``) from their own folder,
which is on ``sys.path`` when they run as ``python benchmarks/NAME.py``; the tests that load them
as modules put it there too."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = str(Path(__file__).resolve().parents[2] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)
