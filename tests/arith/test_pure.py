"""layerlab.arith imports no torch (and no numpy): proven in a subprocess with both blocked."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
sys.modules["torch"] = None   # any `import torch` now raises ImportError
sys.modules["numpy"] = None
import layerlab.arith as arith
import layerlab.arith.cells  # not re-exported: the cell links of layerlab serve
reports = arith.analyse_stack(
    [arith.ConvSpec(2, 64, 4, stride=2, padding=1), arith.elementwise("ReLU"), arith.FlattenSpec(),
     arith.DenseSpec(10)],
    arith.parse_shape("3x64x64"),
)
fields = arith.receptive_field(reports, (3, 64, 64))
print(reports[-1].output_shape, sum(r.params for r in reports), fields[0].dims[0].size,
      arith.solve(32, 64, 4)[0].describe())
print(sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "numpy") and sys.modules[name]))
"""


def test_arith_runs_with_torch_blocked():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # conv 3→64 k4: 3·64·16 + 64 = 3,136; dense 64·32·32 = 65,536 → 10: 655,370
    assert done.stdout.splitlines() == [
        "(10,) 658506 4 ConvTranspose(kernel_size=4, stride=2, padding=1)",
        "[]",
    ]
