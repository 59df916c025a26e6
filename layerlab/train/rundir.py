"""Output folders of ``train``, ``compare`` and ``explain``: checked before any work, locked while in use.

* :func:`prepare_out_dir` creates the folder and proves, before anything is computed, that files can
  be written there and that the file system has room for the expected outputs (a probe file is
  written, ``fsync``-ed and removed; ``shutil.disk_usage`` gives the free space).
* :func:`lock_out_dir` holds an exclusive ``flock`` on ``DIR/.layerlab.lock`` while a run writes to
  ``DIR``. The file records the holder's pid and command; a second run is refused with them. The
  kernel releases the lock when the process exits in any way (a crash or ``kill -9`` included), so
  a lock is never stale; the file itself stays.
* :func:`printable` shows a file name that is not UTF-8 with ``\\xNN`` for its odd bytes.
* :func:`remove_stale_temp_files` deletes ``.NAME.*.tmp`` files that a killed atomic write left
  behind (called under the lock, so no live writer owns them).

Torch-free: the CLI calls these before importing torch-heavy code paths.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from layerlab.errors import ArgumentError, TrainingError

try:
    import fcntl
except ImportError:  # Windows has no flock; runs there are not locked (docs/robustness.md)
    fcntl = None

__all__ = ["LOCK_NAME", "prepare_out_dir", "lock_out_dir", "remove_stale_temp_files", "printable"]

LOCK_NAME = ".layerlab.lock"
MARGIN_BYTES = 1 << 20  # room kept free beyond the estimate (metrics, JSON records)


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def prepare_out_dir(path: str | os.PathLike, *, needed_bytes: int, who: str = "--out") -> Path:
    """Create ``path`` and check that ``needed_bytes`` (plus 1 MiB) can be written there.

    Args:
        path: the output folder (created with its parents).
        needed_bytes: the expected size of everything the command will write.
        who: the argument named in messages.

    Returns:
        The folder as a :class:`~pathlib.Path`.

    Raises:
        ArgumentError: ``path`` is a file, cannot be created, is not writable, or its file system
            has less free space than ``needed_bytes + 1 MiB``; the message names the reason and the fix.
    """
    out = Path(path)
    if str(path) == "":
        raise ArgumentError(f"{who} must name a folder. Received: {who} ''")
    try:
        if os.path.lexists(out) and not out.is_dir():  # lexists: a dangling or looping symlink is no folder either
            raise ArgumentError(f"{who} {str(out)!r} exists and is not a folder; pass a folder path")
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".layerlab-probe.", dir=out)
        try:
            os.write(fd, b"\0")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
        free = shutil.disk_usage(out).free
    except OSError as err:
        hint = "free disk space" if err.errno in (errno.ENOSPC, errno.EDQUOT) else "choose a writable folder"
        raise ArgumentError(
            f"{who} {str(out)!r} cannot be written ({_reason(err)}); nothing was computed; {hint}, e.g. "
            f"{who} {Path(tempfile.gettempdir()) / 'layerlab-out'}"
        ) from err
    wanted = int(needed_bytes) + MARGIN_BYTES
    if free < wanted:
        raise ArgumentError(
            f"{who} {str(out)!r} has {free:,} bytes free, but the outputs need about {wanted:,}; nothing was "
            "computed; free disk space or choose a folder on another file system"
        )
    return out


def _holder(fd: int) -> str:
    """'pid N: COMMAND' of the run that holds the lock, from the lock file."""
    try:
        record = json.loads(os.pread(fd, 65536, 0).decode("utf-8", "replace") or "{}")
        return f"pid {int(record['pid'])}: {str(record['command'])}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown: the lock file is being written"


@contextlib.contextmanager
def lock_out_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on the output folder ``out`` (which must exist) for the ``with`` block.

    Raises:
        TrainingError: another process holds the lock; the message gives its pid and command.
        ArgumentError: the lock file cannot be created.
    """
    path = Path(out) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise ArgumentError(f"cannot create the lock file {path} ({_reason(err)}); choose a writable --out") from err
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TrainingError(
                    f"{out} is in use by another layerlab run ({_holder(fd)}); wait for it to finish, or choose "
                    "another --out"
                ) from None
            except OSError as err:  # e.g. a network file system without flock
                raise ArgumentError(f"cannot lock {path} ({_reason(err)}); choose an --out on a local file "
                                    "system") from err
        record = json.dumps({"pid": os.getpid(), "command": shlex.join(getattr(sys, "orig_argv", sys.argv))}).encode()
        with contextlib.suppress(OSError):  # the record only helps the message of a second run
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock (the kernel does so on any exit too)


def remove_stale_temp_files(out: str | os.PathLike, names: tuple[str, ...]) -> list[Path]:
    """Delete ``out/.NAME.*.tmp`` for each ``NAME``: leftovers of atomic writes that were killed.

    Call it only while holding :func:`lock_out_dir`: then no live writer owns such a file.

    Returns:
        The files removed.
    """
    removed = []
    for name in names:
        for stale in Path(out).glob(f".{name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                removed.append(stale)
    return removed


def printable(text: str) -> str:
    """``text`` with undecodable bytes of a file name (``surrogateescape``) shown as ``\\xNN``.

    Paths that are not UTF-8 reach Python as lone surrogates, which cannot be printed, written as
    UTF-8 or drawn by matplotlib; the name shown in tables, titles and JSON uses this form.
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file name byte maps to
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")
