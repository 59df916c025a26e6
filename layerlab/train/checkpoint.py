"""Checkpoints that survive crashes, full disks and untrusted files.

Writing is atomic: the checkpoint is serialised in memory, written to a temporary file in the same
folder, flushed and ``fsync``-ed, then moved over the old file with ``os.replace`` (atomic on POSIX
and Windows) and the folder is ``fsync``-ed. A failure at any point (a full disk, a kill) leaves the
previous checkpoint untouched and removes the temporary file.

Reading uses ``torch.load(weights_only=True)``: only tensors and plain containers (dict, list,
tuple, str, int, float, bool, None) are accepted, so a crafted file cannot run code.

A checkpoint is a dict::

    {"format": "layerlab-checkpoint", "version": 1,
     "model": state_dict, "optimizer": state_dict,
     "global_step": int,            # drives the learning-rate schedule
     "epoch": int,                  # completed epochs
     "step_in_epoch": int,          # steps done in the current epoch (> 0 after an interrupt)
     "partial": {"loss_sum", "correct", "seen"},   # running train metrics of that epoch
     "history": [per-epoch metrics dicts],
     "rng": [per-rank {"torch", "cuda", "numpy", "python"}],
     "sampler": {"seed": int},      # data order = randperm(N, seed + epoch), see layerlab.train.data
     "config": TrainConfig.to_dict(), "world_size": int, "train_seconds": float}
"""

from __future__ import annotations

import errno
import io
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from layerlab.errors import TrainingError
from layerlab.train.metrics import current_umask

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = "layerlab-checkpoint"
VERSION = 1
_CHUNK = 1 << 20


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temp file, fsync, ``os.replace``).

    Args:
        state: the checkpoint dict (tensors and plain containers only).
        path: destination file; its folder must exist.

    Returns:
        The path written.

    Raises:
        TrainingError: the write failed (e.g. ``ENOSPC``); the previous file at ``path`` is intact.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp_name, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as tmp:
            _write(tmp, buffer.getbuffer())
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except OSError as err:
        Path(tmp_name).unlink(missing_ok=True)
        previous = f"the previous checkpoint {path} is intact" if path.exists() else "no previous checkpoint exists"
        hint = "free disk space" if err.errno in (errno.ENOSPC, errno.EDQUOT) else "check the folder"
        raise TrainingError(
            f"could not write checkpoint {path}: {err.strerror or err} ({len(buffer.getbuffer())} bytes); "
            f"{previous}; {hint}, then continue with --resume"
        ) from err
    _fsync_dir(path.parent)
    return path


def _write(file, data: memoryview) -> None:
    """Write ``data`` in 1 MiB chunks (the seam the fault-injection tests patch)."""
    for start in range(0, len(data), _CHUNK):
        file.write(data[start:start + _CHUNK])


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; some file systems (and Windows) cannot open folders, which is fine."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` with ``torch.load(weights_only=True)``.

    Raises:
        TrainingError: the file is missing, truncated, not a layerlab checkpoint, or holds objects
            other than tensors and plain containers.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"no checkpoint at {path}: start without --resume, or point --out at the run's folder")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise TrainingError(
            f"checkpoint {path} is unreadable ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            "it is truncated, corrupt or not a layerlab checkpoint (only tensors and plain containers are "
            "loaded); delete it and start a new run"
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TrainingError(
            f"{path} is not a layerlab checkpoint (expected a dict with format={FORMAT!r}); "
            "point --out at a folder written by layerlab train"
        )
    if state.get("version") != VERSION:
        raise TrainingError(
            f"checkpoint {path} has version {state.get('version')!r}, this layerlab reads version {VERSION}; "
            "resume it with the layerlab version that wrote it"
        )
    return state


def rng_state() -> dict:
    """The random states of torch (CPU and CUDA), numpy and python, as tensors and plain containers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
