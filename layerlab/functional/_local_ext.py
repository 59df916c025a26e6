"""Build on first use and load the C++ CPU kernels of ``local_conv`` (``csrc/local_conv.cpp``).

The extension is compiled once with ``torch.utils.cpp_extension`` (ninja + a C++ compiler) into
``$XDG_CACHE_HOME/layerlab/extensions/<torch version>-<python>`` (``~/.cache`` when unset) and
registers the ops ``torch.ops.layerlab_local.{forward, weight_grad, input_grad}`` with fake (meta)
implementations so that ``torch.compile`` can trace them. When it cannot be built, :func:`load`
warns once and returns ``False``; ``local_conv`` then uses the pure-torch path of
``layerlab.functional._local_torch``. Set ``LAYERLAB_NO_EXTENSION=1`` to skip the build.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from pathlib import Path

import torch

__all__ = ["load", "build_directory", "memory_format"]

# the one translation unit: it includes the kernel headers csrc/*.h (ninja rebuilds when they change)
_SOURCE = Path(__file__).with_name("csrc") / "local_conv.cpp"
_LOCK = threading.Lock()
_STATE: dict[str, bool] = {}
_log = logging.getLogger("layerlab")
# at::parallel_for is a header template: without -fopenmp the kernels' parallel loops compile to
# serial ones. On Linux, torch ships libgomp.so.1 and the extension binds to that same runtime.
_OPENMP = ("-fopenmp",) if sys.platform.startswith("linux") else ()


def build_directory() -> Path:
    """Where the compiled extension is cached: one folder per torch and Python version."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    tag = f"torch{torch.__version__.replace('+', '_')}-py{sys.version_info[0]}{sys.version_info[1]}"
    return Path(base) / "layerlab" / "extensions" / tag


def memory_format(t: torch.Tensor) -> torch.memory_format:
    """The output layout rule of the C++ ops: channels_last in, channels_last out; else contiguous."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if t.dim() == 5 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


def _register_fakes() -> None:
    @torch.library.register_fake("layerlab_local::forward")
    def _forward(input, weight, bias, stride, padding, dilation, groups):
        ndim = input.dim() - 2
        shape = (input.shape[0], weight.shape[ndim] * weight.shape[-1], *weight.shape[:ndim])
        return torch.empty(shape, dtype=input.dtype, device=input.device, memory_format=memory_format(input))

    @torch.library.register_fake("layerlab_local::weight_grad")
    def _weight_grad(grad, input, weight_size, stride, padding, dilation, groups):
        return input.new_empty(weight_size)

    @torch.library.register_fake("layerlab_local::input_grad")
    def _input_grad(grad, weight, input, stride, padding, dilation, groups):
        return torch.empty_like(input, memory_format=memory_format(input))


def _build() -> None:
    """Compile and load the extension: with OpenMP first, then without it (a compiler without an
    OpenMP runtime, e.g. clang without libomp, still gives working kernels, only single-threaded)."""
    from torch.utils.cpp_extension import load as cpp_load

    directory = build_directory()
    directory.mkdir(parents=True, exist_ok=True)
    _log.info("layerlab: building the local_conv C++ kernels in %s (first use only)", directory)
    attempts = [_OPENMP, ()] if _OPENMP else [()]
    for i, flags in enumerate(attempts):
        try:
            cpp_load(
                name="layerlab_local_conv",
                sources=[str(_SOURCE)],
                build_directory=str(directory),
                extra_cflags=["-O3", *flags],
                extra_ldflags=list(flags),
                is_python_module=False,
                verbose=False,
            )
            return
        except Exception:
            if i == len(attempts) - 1:
                raise
            _log.info("layerlab: building with %s failed; building single-threaded kernels", " ".join(flags))


def load() -> bool:
    """Compile (first time only) and register the C++ ops; ``True`` when they are usable."""
    if "ok" in _STATE:
        return _STATE["ok"]
    with _LOCK:
        if "ok" in _STATE:
            return _STATE["ok"]
        if os.environ.get("LAYERLAB_NO_EXTENSION", "") not in ("", "0"):
            _STATE["ok"] = False
            return False
        try:
            _build()
            _register_fakes()
            _STATE["ok"] = True
        except Exception as exc:  # no compiler, no ninja, headers missing, link error
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            warnings.warn(
                f"layerlab: could not build the C++ kernels of local_conv ({type(exc).__name__}: "
                f"{first}); using the slower pure-torch path. Install g++ (or clang) and ninja to "
                "get the fast CPU path, or set LAYERLAB_NO_EXTENSION=1 to silence this warning",
                RuntimeWarning,
                stacklevel=3,
            )
            _STATE["ok"] = False
    return _STATE["ok"]
