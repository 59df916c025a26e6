"""Where layerlab keeps what it can rebuild: generated data sets and the compiled C++ kernels.

``$LAYERLAB_CACHE`` if set, else ``$XDG_CACHE_HOME/layerlab``, else ``~/.cache/layerlab``
(``docs/data.md``, "The cache"). A small module of its own, without torch or numpy, so that both
``layerlab.data`` and ``layerlab.functional`` use this one definition.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """The folder layerlab caches built-in data and compiled kernels in (not created here)."""
    if os.environ.get("LAYERLAB_CACHE"):
        return Path(os.environ["LAYERLAB_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "layerlab"
