"""MACs of layerlab's summary beside torchinfo, fvcore, thop, ptflops and FlopCounterMode.

Prints the markdown table of ``docs/summary.md`` ("Side by side"): one row per model — the models
of ``benchmarks/summary_models.py`` (a patch-conv transformer, an LSTM, a custom forward full of
functional ops) and the zoo — and one column per tool, each cell the tool's MACs for one sample,
``✓`` where it equals the truth and ``✗`` where it does not.

The truth: the hand counts of ``summary_models.py`` for its models (checked in
``tests/analysis/test_summary_ops.py``), and for the zoo ``torch.utils.flop_counter.FlopCounterMode``
/ 2 on a train-mode forward with the math attention backend, which counts every op of those models
(convolutions, matrix products; layerlab's locally connected and tiled layers run on their
pure-torch kernels here, ``LAYERLAB_NO_EXTENSION=1``, whose ``bmm`` it counts).

How each tool is called (its documented entry point, default options, one sample):
``layerlab.summary(model, shape).total.macs``; ``torchinfo.summary(model, input_size=(1, *shape),
verbose=0).total_mult_adds``; ``fvcore.nn.FlopCountAnalysis(model, x).total()`` (fvcore's "flops"
are MACs); ``thop.profile(copy, inputs=(x,))[0]``; ``ptflops.get_model_complexity_info(model, shape,
as_strings=False)[0]``; ``FlopCounterMode`` / 2 on an eval-mode forward with torch's default
kernels ("FlopCounterMode (eval)").

The tools are not dependencies of layerlab: the script creates a virtual environment (``--venv``,
default ``<layerlab cache>/summary-tools-venv``) that sees this interpreter's packages (torch,
layerlab) and installs the pinned tools into it with pip (``TOOLS``), then runs itself there.

Usage: ``python benchmarks/summary_tools.py [--venv DIR]``
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import site
import subprocess
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

HERE = Path(__file__).resolve().parent
# pinned versions; --no-deps keeps pip from touching torch, so the small dependencies are listed
TOOLS = ["torchinfo==1.8.0", "fvcore==0.1.5.post20221221", "thop==0.1.1.post2209072238", "ptflops==0.7.5",
         "iopath==0.1.10", "yacs==0.1.8", "portalocker", "tabulate", "termcolor", "tqdm", "pyyaml"]
INNER = "--inner"

# zoo model -> (input shape, classes)
ZOO = {
    "mlp": ((1, 28, 28), 10), "cnn": ((3, 32, 32), 10), "lcn": ((3, 32, 32), 10), "tiled": ((3, 32, 32), 10),
    "allconv": ((3, 32, 32), 10), "lenet5": ((1, 32, 32), 10), "tf_cifar10": ((3, 32, 32), 10),
    "tf_cifar10_local": ((3, 32, 32), 10), "cuda_convnet": ((3, 32, 32), 10),
    "dcgan_generator": ((100, 1, 1), 3), "dcgan_discriminator": ((3, 64, 64), 1), "unet": ((3, 64, 64), 2),
}
HAND = {"patch_transformer": 1_311_360, "lstm_classifier": 533_120, "functional_net": 150_016}


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _ensure_venv(venv: Path) -> Path:
    """A venv that sees this interpreter's site-packages, with the tools installed; its python."""
    python = _venv_python(venv)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        target = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                                capture_output=True, text=True, check=True).stdout.strip()
        Path(target, "layerlab-parent.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    probe = "import torchinfo, fvcore, thop, ptflops"
    if subprocess.run([str(python), "-c", probe], capture_output=True).returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", *TOOLS], check=True)
    return python


def _quiet(fn, *args, **kwargs):
    """``fn``'s result with its prints and warnings swallowed; ``None`` and the error's name if it raises."""
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs), None
        except Exception as err:  # a tool that cannot handle a model: shown in its cell
            return None, type(err).__name__


def _measure(build, shape) -> dict[str, tuple]:
    """Each tool's MACs for one sample of ``shape`` (``(value, error)`` pairs)."""
    import torch  # here: the outer process only installs the tools
    import torchinfo
    from fvcore.nn import FlopCountAnalysis
    from ptflops import get_model_complexity_info
    from thop import profile
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from layerlab.analysis import summary

    torch.manual_seed(0)
    model = build()
    x = torch.randn(1, *shape)

    def flop_counter(train: bool):
        model.train(train)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            if train:
                with sdpa_kernel(SDPBackend.MATH):
                    model(x)
            else:
                model(x)
        return counter.get_total_flops() // 2

    def layerlab_macs():
        s = summary(model, shape)
        return s.total.macs if s.complete else f"≥{s.total.macs:,}"

    results = {
        "flop_counter_train": _quiet(flop_counter, True),
        "layerlab": _quiet(layerlab_macs),
        "torchinfo": _quiet(lambda: torchinfo.summary(model.eval(), input_size=(1, *shape), verbose=0).total_mult_adds),
        "fvcore": _quiet(lambda: FlopCountAnalysis(model.eval(), x).total()),
        "thop": _quiet(lambda: int(profile(copy.deepcopy(model).eval(), inputs=(x,), verbose=False)[0])),
        "ptflops": _quiet(lambda: get_model_complexity_info(model.eval(), tuple(shape), as_strings=False,
                                                            print_per_layer_stat=False)[0]),
        "flop_counter_eval": _quiet(flop_counter, False),
    }
    return results


def _cell(value, error, truth) -> str:
    if error is not None:
        return f"error ({error})"
    if isinstance(value, str):  # layerlab's lower bound
        return f"{value} ✗"
    value = int(value)
    return f"{value:,} {'✓' if value == truth else '✗'}"


def inner() -> int:
    import torch  # here: the outer process only installs the tools
    import torchinfo

    from layerlab.zoo import build

    sys.path.insert(0, str(HERE))
    from summary_models import MODELS

    torch.set_num_threads(1)
    cases = [(name, MODELS[name][0], MODELS[name][1]) for name in HAND]
    cases += [(name, (lambda name=name, shape=shape, classes=classes: build(name, shape, classes)), shape)
              for name, (shape, classes) in ZOO.items()]
    columns = ["layerlab", "torchinfo", "fvcore", "thop", "ptflops", "flop_counter_eval"]
    heads = ["layerlab", "torchinfo 1.8.0", "fvcore 0.1.5", "thop 0.1.1", "ptflops 0.7.5", "FlopCounterMode (eval)"]
    print(f"torch {torch.__version__}; MACs per sample; ✓ = equals the truth (hand: hand count; "
          "train: FlopCounterMode/2, train mode, math attention)")
    print()
    print("| model | input | truth | " + " | ".join(heads) + " |")
    print("|---|---|---:|" + "---:|" * len(heads))
    for name, builder, shape in cases:
        results = _measure(builder, shape)
        truth = HAND.get(name, results["flop_counter_train"][0])
        source = "hand" if name in HAND else "train"
        cells = [_cell(*results[column], truth) for column in columns]
        print(f"| {name} | {'×'.join(map(str, shape))} | {truth:,} ({source}) | " + " | ".join(cells) + " |")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [INNER]:
        return inner()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from layerlab._cache import cache_dir  # here: keeps --help free of layerlab's imports

    parser.add_argument("--venv", type=Path, default=cache_dir() / "summary-tools-venv",
                        help="virtual environment for the tools (default: <layerlab cache>/summary-tools-venv)")
    args = parser.parse_args(argv)
    python = _ensure_venv(args.venv)
    env = {**os.environ, "LAYERLAB_NO_EXTENSION": "1"}
    return subprocess.run([str(python), str(Path(__file__).resolve()), INNER], env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main())
