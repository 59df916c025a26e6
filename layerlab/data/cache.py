"""The on-disk cache of generated or parsed built-in data (``.npz`` files, written atomically).

Location: ``$LAYERLAB_CACHE`` if set, else ``$XDG_CACHE_HOME/layerlab``, else ``~/.cache/layerlab``.
A cache file is only ever replaced whole (write to a temporary file in the same folder, flush,
``fsync``, ``os.replace``), so a crash or a full disk leaves either the old file or none, never a
half-written one. Reads are validated by the caller's ``check``; a file that fails (corrupt zip,
wrong keys, wrong shapes) is regenerated and replaced. An unwritable cache folder only costs
speed: the data is returned uncached with a warning.
"""

from __future__ import annotations

import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from layerlab._cache import cache_dir

__all__ = ["cache_dir", "cached_arrays"]


def cached_arrays(
    filename: str,
    make: Callable[[], dict[str, np.ndarray]],
    check: Callable[[dict[str, np.ndarray]], bool],
) -> dict[str, np.ndarray]:
    """Arrays from ``cache_dir()/filename`` if present and valid, else ``make()`` (then cached).

    Args:
        filename: cache file name; put a format version in it (``"mnist1d-v1.npz"``).
        make: builds the arrays (slow: generation, parsing).
        check: ``True`` when loaded arrays are complete and well-formed.

    Returns:
        ``{key: array}``, either read from the cache or freshly made.
    """
    path = cache_dir() / filename
    if path.is_file():
        arrays = _read(path)
        if arrays is not None and _passes(check, arrays):
            return arrays
    arrays = make()
    try:
        _write_atomic(path, arrays)
    except OSError as err:
        warnings.warn(f"layerlab: could not cache data in {path} ({err}); set LAYERLAB_CACHE to a "
                      f"writable folder to skip regenerating it next time", RuntimeWarning, stacklevel=3)
    return arrays


def _passes(check: Callable[[dict[str, np.ndarray]], bool], arrays: dict[str, np.ndarray]) -> bool:
    # the cache is outside layerlab's control: a check tripping over odd content means "invalid"
    try:
        return bool(check(arrays))
    except Exception:
        return False


def _read(path: Path) -> dict[str, np.ndarray] | None:
    # zip CRCs catch flipped bytes; allow_pickle=False keeps the cache from running code
    try:
        with np.load(path, allow_pickle=False) as f:
            return {key: f[key] for key in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        return None


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is ordinary user data
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
