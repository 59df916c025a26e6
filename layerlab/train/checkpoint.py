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
     "config": TrainConfig.to_dict(), "world_size": int, "train_seconds": float,
     "data": {"name", "train_samples", "test_samples", "sha256"}}   # layerlab.train.data.fingerprint

:func:`check_resumable` checks that every key is there with the right type (a crafted or damaged
file gets a :class:`TrainingError` naming the key, never a ``KeyError`` or ``TypeError`` later);
``data`` is optional (checkpoints written before it existed lack it).
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

__all__ = ["save_checkpoint", "load_checkpoint", "check_resumable", "rng_state", "set_rng_state", "CHECKPOINT_NAME"]

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
    except BaseException:  # a second Ctrl-C (KeyboardInterrupt) mid-write: no temp file stays behind either
        Path(tmp_name).unlink(missing_ok=True)
        raise
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


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_rng(value: object) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("torch"), torch.Tensor)
            and isinstance(value.get("cuda"), list) and isinstance(value.get("numpy"), dict)
            and isinstance(value.get("python"), (tuple, list)) and len(value["python"]) == 3)


# key -> (check, what it must be)
_LAYOUT = {
    "model": (lambda v: isinstance(v, dict), "a state dict"),
    "optimizer": (lambda v: isinstance(v, dict), "an optimizer state dict"),
    "global_step": (_is_count, "an integer >= 0"),
    "epoch": (_is_count, "an integer >= 0"),
    "step_in_epoch": (_is_count, "an integer >= 0"),
    "partial": (lambda v: isinstance(v, dict) and all(_is_number(v.get(k)) for k in ("loss_sum", "correct", "seen")),
                "a dict of the numbers loss_sum, correct, seen"),
    "history": (lambda v: isinstance(v, list) and all(isinstance(row, dict) for row in v), "a list of dicts"),
    "rng": (lambda v: isinstance(v, list) and len(v) > 0 and all(_is_rng(r) for r in v),
            "a list of per-process RNG states (torch, cuda, numpy, python)"),
    "config": (lambda v: isinstance(v, dict), "a TrainConfig dict"),
    "world_size": (lambda v: _is_count(v) and v >= 1, "an integer >= 1"),
    "train_seconds": (_is_number, "a number"),
}


def check_resumable(state: dict, path: str | os.PathLike) -> None:
    """Raise :class:`TrainingError` naming the first key of the layout above that is missing or mistyped."""
    for key, (check, expected) in _LAYOUT.items():
        if key not in state:
            raise TrainingError(f"checkpoint {path} lacks {key!r}; it is damaged or was not written by layerlab train; "
                                "delete it and start a new run")
        if not check(state[key]):
            shown = type(state[key]).__name__ if isinstance(state[key], (dict, list, torch.Tensor)) else repr(state[key])
            raise TrainingError(f"checkpoint {path}: {key!r} must be {expected}. Received: {shown[:80]}; it is damaged "
                                "or was not written by layerlab train; delete it and start a new run")


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
    """Restore what :func:`rng_state` captured.

    Raises:
        TrainingError: the state does not have :func:`rng_state`'s layout (a damaged checkpoint).
    """
    try:
        _set_rng_state(state)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise TrainingError(
            f"the RNG state in the checkpoint is damaged ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            "delete the checkpoint and start a new run"
        ) from err


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
