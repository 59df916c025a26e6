"""Build on first use, verify and load the C++ CPU kernels of ``local_conv`` (``csrc/*.cpp``).

The extension registers ``torch.ops.layerlab_local.{forward, weight_grad, input_grad}`` with fake
(meta) implementations so that ``torch.compile`` can trace them. It is compiled once with
``torch.utils.cpp_extension`` (ninja + a C++ compiler, ``-O3 -fopenmp``) into the extension cache,
``cache_dir()/extensions`` (the cache root of ``layerlab._cache``: ``$LAYERLAB_CACHE``, else
``$XDG_CACHE_HOME/layerlab``, else ``~/.cache/layerlab``)::

    <tag>/                 the current build: build.ninja, objects, the library, manifest.json
    <tag>.lock             locked (flock) while a process checks, builds or replaces <tag>;
                           holds "pid P on HOST" of its holder, emptied on release
    .<tag>.build-XXXXXXXX/ a build in progress (every build starts in a fresh folder)

with ``<tag> = torch<version>-py<major><minor>``. :func:`load`:

1. takes the lock. The kernel releases an flock when its holder dies, so a build killed half-way
   (``kill -9``, SIGHUP) never blocks a later one; the next holder says so on stderr and deletes the
   unfinished build folder. A live holder is waited for, with one line on stderr, at most
   ``LAYERLAB_EXTENSION_WAIT`` seconds (default 300); then this process warns, naming the lock
   file, and uses the pure-torch path.
2. checks ``<tag>/manifest.json`` *before* opening the library (a truncated library kills the
   process with SIGBUS inside ``dlopen``): same fingerprint (sha256 of every file in ``csrc``, the
   source list, the compiler flags, torch, Python and the machine), and the library's size and
   sha256 as recorded at build time. A match is loaded with ``torch.ops.load_library``.
3. otherwise (first use, changed sources, truncated or garbage library, no or bad manifest)
   builds once, in a fresh folder, with the same flags (with OpenMP; without it only when the
   compiler has no OpenMP runtime, e.g. clang without libomp), writes the manifest, and renames the
   folder to ``<tag>`` (the old one is deleted). One line on stderr when the build starts and one
   when it ends.

When the kernels cannot be built, :func:`load` warns once and returns ``False``; ``local_conv``
then uses the pure-torch path of ``layerlab.functional._local_torch``. ``LAYERLAB_NO_EXTENSION=1``
skips the extension altogether.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import platform
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import IO, Iterator

import torch

from layerlab._cache import cache_dir
from layerlab.errors import ArgumentError

__all__ = ["load", "build_directory", "memory_format", "lock_path"]

_CSRC = Path(__file__).with_name("csrc")
# the translation units compiled into the one library; the fingerprint also covers every other
# file of csrc (headers)
_SOURCES = sorted(_CSRC.glob("*.cpp"))
_NAME = "layerlab_local_conv"
_MANIFEST = "manifest.json"
_MANIFEST_VERSION = 1
_WAIT_VARIABLE = "LAYERLAB_EXTENSION_WAIT"
_WAIT_DEFAULT = 300.0
_POLL_SECONDS = 0.2
_LOCK = threading.Lock()
_STATE: dict[str, bool] = {}
_log = logging.getLogger("layerlab")
# at::parallel_for is a header template: without -fopenmp the kernels' parallel loops compile to
# serial ones. On Linux, torch ships libgomp.so.1 and the extension binds to that same runtime.
_OPENMP = ("-fopenmp",) if sys.platform.startswith("linux") else ()


class _LockBusy(Exception):
    """A live process held the build lock longer than the wait allows (the message says who)."""


def build_directory() -> Path:
    """Where the compiled extension is cached: one folder per torch and Python version."""
    tag = f"torch{torch.__version__.replace('+', '_')}-py{sys.version_info[0]}{sys.version_info[1]}"
    return cache_dir() / "extensions" / tag


def lock_path() -> Path:
    """The lock file next to :func:`build_directory` (``<tag>.lock``)."""
    folder = build_directory()
    return folder.with_name(folder.name + ".lock")


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


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _attempts() -> list[tuple[str, ...]]:
    """Compiler flag sets to try in order: with OpenMP first, then without it."""
    return [_OPENMP, ()] if _OPENMP else [()]


def _fingerprint() -> str:
    """sha256 of everything a build depends on: csrc's files, the source list, flags, versions."""
    digest = hashlib.sha256()
    for part in (f"manifest {_MANIFEST_VERSION}", torch.__version__, sys.version, platform.machine(),
                 repr([s.name for s in _SOURCES]), repr(_attempts())):
        digest.update(part.encode() + b"\0")
    for f in sorted(p for p in _CSRC.iterdir() if p.is_file()):
        digest.update(f.name.encode() + b"\0" + _sha256(f).encode() + b"\0")
    return digest.hexdigest()


def _verified_library(folder: Path, fingerprint: str) -> tuple[Path | None, str]:
    """``(library, "")`` when ``folder`` holds a build of ``fingerprint`` whose library matches its
    manifest (size, then sha256; nothing is opened but the files' bytes), else ``(None, reason)``
    with the reason phrased to follow "the cached build in FOLDER"."""
    try:
        manifest = json.loads((folder / _MANIFEST).read_text())
    except FileNotFoundError:
        return None, f"has no {_MANIFEST}"
    except (OSError, ValueError) as err:
        return None, f"has an unreadable {_MANIFEST} ({type(err).__name__}: {err})"
    if not isinstance(manifest, dict) or manifest.get("fingerprint") != fingerprint:
        return None, "was built from other sources, flags or versions"
    name, size, sha256 = manifest.get("library"), manifest.get("size"), manifest.get("sha256")
    if not isinstance(name, str) or Path(name).name != name or not isinstance(size, int):
        return None, f"has a malformed {_MANIFEST}"
    library = folder / name
    try:
        actual = library.stat().st_size
    except OSError:
        return None, f"lacks {name}"
    if actual != size:
        return None, f"does not match its manifest: {name} has {actual} bytes, the manifest records {size}"
    if _sha256(library) != sha256:
        return None, f"does not match its manifest: the sha256 of {name} differs from the one recorded at build time"
    return library, ""


def _wait_seconds() -> float:
    text = os.environ.get(_WAIT_VARIABLE, "").strip()
    if not text:
        return _WAIT_DEFAULT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ArgumentError(f"{_WAIT_VARIABLE} must be a number of seconds >= 0. Received: {_WAIT_VARIABLE}={text!r}")
    return seconds


def _try_lock(f: IO[str]) -> bool:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """Hold ``path`` (flock, exclusive) for the block; raises :class:`_LockBusy` when a live holder
    keeps it longer than ``LAYERLAB_EXTENSION_WAIT`` seconds. A holder that ended without releasing
    it (killed) left its "pid P on HOST" in the file: reported, and its unfinished builds deleted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:  # the kernel drops the flock when f is closed or its process dies
        if not _try_lock(f):
            wait = _wait_seconds()
            f.seek(0)
            holder = f.read().strip() or "another process"
            _say(f"layerlab: waiting up to {wait:g} s for {holder} to finish building the local layer's C++ "
                 f"kernels (lock {path})")
            deadline = time.monotonic() + wait
            while not _try_lock(f):
                if time.monotonic() >= deadline:
                    raise _LockBusy(
                        f"layerlab: {holder} has held the lock {path} for over {wait:g} s while building the "
                        "local layer's C++ kernels; using the slower pure-torch path in this process. Set "
                        f"{_WAIT_VARIABLE}=SECONDS to wait longer, or delete {path} if no such build is running"
                    )
                time.sleep(_POLL_SECONDS)
        f.seek(0)
        previous = f.read().strip()
        leftovers = sorted(path.parent.glob(f".{path.stem}.build-*")) + sorted(path.parent.glob(f".{path.stem}.old-*"))
        if previous:
            _say(f"layerlab: {previous} ended while holding {path} without releasing it (killed?); the lock went "
                 f"with it, and {len(leftovers)} unfinished build folder(s) it left are deleted")
        for folder in leftovers:  # only lock holders create them, so with the lock held they are stale
            shutil.rmtree(folder, ignore_errors=True)
        f.truncate(0)
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            f.flush()


def _compile(folder: Path, flags: tuple[str, ...]) -> Path:
    """Compile and link ``_SOURCES`` into ``folder`` and load the library; its path."""
    # torch.utils.cpp_extension imports setuptools (~0.3 s): only needed when building
    from torch.utils.cpp_extension import load as cpp_load

    return Path(cpp_load(
        name=_NAME,
        sources=[str(s) for s in _SOURCES],
        build_directory=str(folder),
        extra_cflags=["-O3", *flags],
        extra_ldflags=list(flags),
        is_python_module=False,
        verbose=False,
    ))


def _build(target: Path, fingerprint: str) -> None:
    """Build in a fresh folder (per flag set tried), write its manifest, then rename it to ``target``
    (replacing what was there). The library is loaded by the build itself."""
    attempts = _attempts()
    for i, flags in enumerate(attempts):
        fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.build-", dir=target.parent))
        try:
            library = _compile(fresh, flags)
            break
        except BaseException as exc:
            shutil.rmtree(fresh, ignore_errors=True)
            if not isinstance(exc, Exception) or i == len(attempts) - 1:
                raise
            _log.info("layerlab: building with %s failed; building single-threaded kernels", " ".join(flags))
    manifest = {"version": _MANIFEST_VERSION, "fingerprint": fingerprint, "library": library.name,
                "size": library.stat().st_size, "sha256": _sha256(library), "flags": list(flags),
                "sources": [s.name for s in _SOURCES], "torch": torch.__version__}
    (fresh / _MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / target.name)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(fresh, target)


def _load_or_build() -> None:
    """Under the build lock: load the verified cached build, else build once and load that."""
    target = build_directory()
    with _build_lock(lock_path()):
        fingerprint = _fingerprint()
        library, reason = _verified_library(target, fingerprint)
        if library is not None:
            torch.ops.load_library(str(library))
            return
        if not target.exists():
            _say(f"layerlab: building the local layer's C++ kernels, first use only, ~30 s (into {target})")
        else:
            _say(f"layerlab: rebuilding the local layer's C++ kernels in a fresh folder, ~30 s: the cached build "
                 f"in {target} {reason}")
        start = time.monotonic()
        _build(target, fingerprint)
        _say(f"layerlab: built the local layer's C++ kernels in {time.monotonic() - start:.0f} s")


def load() -> bool:
    """Compile (first time only), verify and register the C++ ops; ``True`` when they are usable."""
    if "ok" in _STATE:
        return _STATE["ok"]
    with _LOCK:
        if "ok" in _STATE:
            return _STATE["ok"]
        if os.environ.get("LAYERLAB_NO_EXTENSION", "") not in ("", "0"):
            _STATE["ok"] = False
            return False
        try:
            _load_or_build()
            _register_fakes()
            _STATE["ok"] = True
        except _LockBusy as exc:
            warnings.warn(str(exc), RuntimeWarning, stacklevel=3)
            _STATE["ok"] = False
        except Exception as exc:  # no compiler, no ninja, headers missing, link error, unwritable cache
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
