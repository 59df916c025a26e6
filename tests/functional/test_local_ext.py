"""Building, verifying and loading the C++ kernels: locks left by killed builds, corrupt libraries.

Everything here uses a private extension cache (``LAYERLAB_CACHE`` in a temporary folder), never
the user's. Real compiles are few: one session-wide build (after a build killed half-way), and one
rebuild of a truncated library; the other cases copy that build or stub the compiler.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from layerlab.functional import _local_ext

ROOT = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()
OPENMP = list(_local_ext._OPENMP)

# loads the kernels; with the C++ ops, checks them against the pure-torch path
LOAD = """
import torch
from layerlab.functional import _local_ext, _local_torch
ok = _local_ext.load()
print("cpp", ok)
if ok:
    x, w = torch.randn(2, 3, 6, 6, dtype=torch.float64), torch.randn(4, 4, 1, 3, 3, 3, 5, dtype=torch.float64)
    args = ([1, 1], [0, 0], [1, 1], 1)
    torch.testing.assert_close(torch.ops.layerlab_local.forward(x, w, None, *args),
                               _local_torch.forward(x, w, None, *args))
    print("forward matches")
"""

BUILD_START = r"^layerlab: building the local layer's C\+\+ kernels, first use only, ~30 s \(into {}\)$"
BUILD_END = r"^layerlab: built the local layer's C\+\+ kernels in \d+ s$"


def environment(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LAYERLAB_NO_EXTENSION"}
    env.update(LAYERLAB_CACHE=str(cache), PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1", LAYERLAB_EXTENSION_WAIT="60")
    env.update(extra)
    return env


def python(code: str, cache: Path, *args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with ``cache`` as LAYERLAB_CACHE; fails the test on a hang
    (after killing the interpreter and any compiler it started)."""
    child = subprocess.Popen([sys.executable, "-c", code, *args], env=environment(cache, **extra), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        pytest.fail(f"still running after {timeout} s (hung?); stderr:\n{child.communicate()[1]}")
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


def target_in(cache: Path) -> Path:
    """The build folder for ``cache`` (``build_directory()`` with LAYERLAB_CACHE=cache)."""
    return cache / "extensions" / _local_ext.build_directory().name


def lock_in(cache: Path) -> Path:
    target = target_in(cache)
    return target.with_name(target.name + ".lock")


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """A build killed with SIGKILL half-way (while it holds the lock and compiles), then a fresh
    process loading over what it left. Returns the cache, the killed pid, the lock file's content
    and torch's lock files the killed build left, and the second process's result."""
    cache = tmp_path_factory.mktemp("extension-cache")
    extensions = cache / "extensions"
    builder = subprocess.Popen([sys.executable, "-c", LOAD], env=environment(cache), text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 400  # importing torch alone can take minutes on a loaded machine
    try:
        while not list(extensions.glob(".*.build-*/build.ninja")):  # torch writes it, then runs ninja
            if builder.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the first build ended or stalled before compiling: {builder.returncode}")
            time.sleep(0.05)
    finally:
        os.killpg(builder.pid, signal.SIGKILL)  # the builder, ninja and the compiler, as kill -9 would leave them
        builder.communicate()
    left = lock_in(cache).read_text()
    torch_locks = list(extensions.glob(".*.build-*/lock"))  # torch's own lock file, held while it builds
    after = python(LOAD, cache, timeout=600)
    return SimpleNamespace(cache=cache, killed=builder.pid, left=left, torch_locks=torch_locks, after=after)


def copy_of(built, tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    shutil.copytree(built.cache / "extensions", cache / "extensions", symlinks=True)
    return cache


def manifest_of(cache: Path) -> dict:
    return json.loads((target_in(cache) / "manifest.json").read_text())


# ---- a build killed half-way ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_build_killed_half_way_does_not_block_the_next_one(built):
    lock = lock_in(built.cache)
    assert built.left == f"pid {built.killed} on {HOST}\n"  # what a killed builder leaves
    assert len(built.torch_locks) == 1
    assert built.after.returncode == 0, built.after.stderr
    assert "cpp True\nforward matches" in built.after.stdout
    assert (f"layerlab: pid {built.killed} on {HOST} ended while holding {lock} without releasing it (killed?); the "
            "lock went with it, and 1 unfinished build folder(s) it left are deleted") in built.after.stderr
    assert not list((built.cache / "extensions").glob(".*")), "unfinished build folders are left"
    assert lock.read_text() == ""  # released cleanly


@pytest.mark.slow
def test_the_build_says_on_stderr_when_it_starts_and_ends(built):
    err = built.after.stderr
    assert len(re.findall(BUILD_START.format(re.escape(str(target_in(built.cache)))), err, re.M)) == 1, err
    assert len(re.findall(BUILD_END, err, re.M)) == 1, err
    assert err.index("building the local layer's") < err.index("built the local layer's")


@pytest.mark.slow
def test_the_build_records_a_manifest_and_uses_openmp(built):
    target = target_in(built.cache)
    manifest = manifest_of(built.cache)
    library = target / manifest["library"]
    assert manifest["size"] == library.stat().st_size
    assert manifest["sha256"] == hashlib.sha256(library.read_bytes()).hexdigest()
    assert manifest["fingerprint"] == _local_ext._fingerprint()
    assert manifest["flags"] == OPENMP
    assert manifest["sources"] == [s.name for s in _local_ext._SOURCES]
    if OPENMP:
        assert "-fopenmp" in (target / "build.ninja").read_text()


@pytest.mark.slow
def test_a_verified_build_is_loaded_without_building_even_with_stale_locks(built, tmp_path):
    """A dead pid in the lock file and torch's own lock file inside the build folder (a killed
    build's leftovers) neither block nor trigger a build."""
    cache = copy_of(built, tmp_path)
    pid = dead_pid()
    lock_in(cache).write_text(f"pid {pid} on {HOST}\n")
    (target_in(cache) / "lock").touch()
    result = python(LOAD, cache)
    assert result.returncode == 0, result.stderr
    assert "cpp True\nforward matches" in result.stdout
    assert f"layerlab: pid {pid} on {HOST} ended while holding {lock_in(cache)}" in result.stderr
    assert "building" not in result.stderr, result.stderr


# ---- a corrupt library --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_truncated_library_is_rebuilt_once_in_a_fresh_folder(built, tmp_path):
    cache = copy_of(built, tmp_path)
    target = target_in(cache)
    library = target / manifest_of(cache)["library"]
    size = library.stat().st_size
    library.write_bytes(library.read_bytes()[: size // 2])  # opening this one dies with SIGBUS
    (target / "marker").touch()
    result = python(LOAD, cache, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "cpp True\nforward matches" in result.stdout
    assert (f"layerlab: rebuilding the local layer's C++ kernels in a fresh folder, ~30 s: the cached build in "
            f"{target} does not match its manifest: {library.name} has {size // 2} bytes, the manifest records "
            f"{size}") in result.stderr
    assert len(re.findall(BUILD_END, result.stderr, re.M)) == 1
    assert not (target / "marker").exists(), "rebuilt in the old folder"
    assert manifest_of(cache)["flags"] == OPENMP
    if OPENMP:
        assert "-fopenmp" in (target / "build.ninja").read_text()
    again = python(LOAD, cache)
    assert again.returncode == 0 and "cpp True" in again.stdout and "build" not in again.stderr, again.stderr


# the compiler replaced by a copy of a good library: records what it was asked to build
STUB_COMPILER = """
import json, shutil, sys, torch
import torch.utils.cpp_extension as cpp_extension
from pathlib import Path
good, record = sys.argv[1], sys.argv[2]
def compile_by_copying(**kwargs):
    folder = Path(kwargs["build_directory"])
    library = folder / (kwargs["name"] + ".so")
    shutil.copyfile(good, library)
    torch.ops.load_library(str(library))
    with open(record, "a") as f:
        f.write(json.dumps({k: kwargs[k] for k in ("build_directory", "extra_cflags", "extra_ldflags")}) + "\\n")
    return str(library)
cpp_extension.load = compile_by_copying
"""


@pytest.mark.slow
def test_a_garbage_library_of_the_right_size_is_rebuilt_once_with_the_same_flags(built, tmp_path):
    cache = copy_of(built, tmp_path)
    target = target_in(cache)
    library = target / manifest_of(cache)["library"]
    library.write_bytes(np.random.default_rng(0).bytes(library.stat().st_size))
    (target / "marker").touch()
    good = target_in(built.cache) / library.name
    record = tmp_path / "compiles.jsonl"
    result = python(STUB_COMPILER + LOAD, cache, str(good), str(record))
    assert result.returncode == 0, result.stderr
    assert "cpp True\nforward matches" in result.stdout
    assert (f"the cached build in {target} does not match its manifest: the sha256 of {library.name} differs from "
            "the one recorded at build time") in result.stderr
    compiles = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(compiles) == 1
    assert compiles[0]["extra_cflags"] == ["-O3", *OPENMP] and compiles[0]["extra_ldflags"] == OPENMP
    assert Path(compiles[0]["build_directory"]).name.startswith(f".{target.name}.build-")
    assert not (target / "marker").exists()
    assert manifest_of(cache)["sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()


# ---- a live holder of the lock ------------------------------------------------------------------


def hold_lock(cache: Path, holder: str):
    """Take the build lock in this process as a live builder would; returns the open file."""
    path = lock_in(cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.write(holder + "\n")
    f.flush()
    return f


def test_a_live_holder_is_waited_for_a_bounded_time_then_pure_torch_with_a_warning(tmp_path):
    cache = tmp_path / "cache"
    with hold_lock(cache, "pid 4242 on builder-host"):
        result = python(LOAD, cache, timeout=200, LAYERLAB_EXTENSION_WAIT="1")
    lock = lock_in(cache)
    assert result.returncode == 0, result.stderr
    assert "cpp False" in result.stdout
    assert (f"layerlab: waiting up to 1 s for pid 4242 on builder-host to finish building the local layer's C++ "
            f"kernels (lock {lock})") in result.stderr
    assert (f"RuntimeWarning: layerlab: pid 4242 on builder-host has held the lock {lock} for over 1 s while "
            "building the local layer's C++ kernels; using the slower pure-torch path in this process. Set "
            f"LAYERLAB_EXTENSION_WAIT=SECONDS to wait longer, or delete {lock} if no such build is running"
            ) in result.stderr


@pytest.mark.slow
def test_sigterm_while_train_waits_for_the_lock_stops_it_promptly(tmp_path):
    """``timeout`` sends one SIGTERM: the training loop, blocked in the first forward, must end."""
    cache = tmp_path / "cache"
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 1, 6, 6)).astype(np.float32), rng.integers(0, 4, size=64)
    np.savez(tmp_path / "toy.npz", x=x, y=y, x_test=x, y_test=y)
    command = [sys.executable, "-m", "layerlab", "train", "--model", "lcn", "--dataset", str(tmp_path / "toy.npz"),
               "--epochs", "1", "--threads", "1", "--no-progress", "--out", str(tmp_path / "run")]
    with hold_lock(cache, "pid 4242 on builder-host"):
        child = subprocess.Popen(command, env=environment(cache, LAYERLAB_EXTENSION_WAIT="600"), text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = []
        for line in child.stderr:  # returns once the child prints the waiting line (or ends)
            lines.append(line)
            if "layerlab: waiting up to 600 s for pid 4242" in line:
                break
        time.sleep(1.0)  # into the wait loop proper
        child.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        try:
            _, rest = child.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
            pytest.fail(f"SIGTERM did not stop the waiting train command: {''.join(lines) + child.communicate()[1]}")
    took = time.monotonic() - sent
    err = "".join(lines) + rest
    assert child.returncode == 130, err
    assert took < 60, took  # 10 s of grace, then the exit; the margin is for a loaded machine
    assert ("layerlab: SIGTERM: the training step did not finish within 10 s of the signal; stopping now, without "
            "a new checkpoint") in err
    assert "Traceback" not in err


# ---- the pieces, in-process (no compiler) -------------------------------------------------------


@pytest.fixture
def fresh_state(monkeypatch, tmp_path):
    """load() forgets its result and builds into an empty private cache."""
    monkeypatch.delenv("LAYERLAB_NO_EXTENSION", raising=False)
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_local_ext, "_STATE", {})
    return tmp_path / "cache"


def test_build_failure_warns_and_falls_back(monkeypatch, fresh_state):
    import torch.utils.cpp_extension as cpp_extension

    def broken(**kwargs):
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.setattr(cpp_extension, "load", broken)
    with pytest.warns(RuntimeWarning, match=r"could not build the C\+\+ kernels of local_conv \(RuntimeError: "
                      r"Ninja is required.*using the slower pure-torch path"):
        assert _local_ext.load() is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _local_ext.load() is False  # warned once
    assert sorted(p.name for p in (fresh_state / "extensions").iterdir()) == [lock_in(fresh_state).name]


@pytest.fixture
def stub_compiler(monkeypatch, fresh_state):
    """cpp_extension.load writes a small file as the library (failing with -fopenmp when
    ``stub.openmp`` is False); loads are recorded, not done. Returns the record."""
    import torch.utils.cpp_extension as cpp_extension

    stub = SimpleNamespace(openmp=True, calls=[], loaded=[])

    def compile_stub(**kwargs):
        stub.calls.append(kwargs["extra_cflags"])
        if "-fopenmp" in kwargs["extra_cflags"] and not stub.openmp:
            raise RuntimeError("fatal error: omp.h: No such file or directory")
        library = Path(kwargs["build_directory"]) / "layerlab_local_conv.so"
        library.write_bytes(b"a library")
        return str(library)

    monkeypatch.setattr(cpp_extension, "load", compile_stub)
    monkeypatch.setattr(torch.ops, "load_library", stub.loaded.append)
    monkeypatch.setattr(_local_ext, "_register_fakes", lambda: None)
    monkeypatch.setattr(_local_ext, "_OPENMP", ("-fopenmp",))
    return stub


def test_build_without_openmp_when_the_compiler_has_none_and_it_is_not_rebuilt_next_time(
        monkeypatch, fresh_state, stub_compiler, capfd):
    """A compiler without an OpenMP runtime still gives the C++ kernels (single-threaded), without a
    warning, and the next process loads that build instead of trying again."""
    stub_compiler.openmp = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _local_ext.load() is True
    assert stub_compiler.calls == [["-O3", "-fopenmp"], ["-O3"]]
    assert manifest_of(fresh_state)["flags"] == []
    err = capfd.readouterr().err
    assert len(re.findall(BUILD_START.format(re.escape(str(target_in(fresh_state)))), err, re.M)) == 1, err
    assert len(re.findall(BUILD_END, err, re.M)) == 1, err
    assert lock_in(fresh_state).read_text() == ""  # released
    monkeypatch.setattr(_local_ext, "_STATE", {})
    assert _local_ext.load() is True
    assert stub_compiler.calls == [["-O3", "-fopenmp"], ["-O3"]], "rebuilt"
    assert stub_compiler.loaded == [str(target_in(fresh_state) / "layerlab_local_conv.so")]
    assert capfd.readouterr().err == ""


def test_a_dead_holders_lock_and_unfinished_builds_are_taken_over(monkeypatch, fresh_state, stub_compiler, capfd):
    """What a builder killed half-way leaves: its pid in the lock file, a build folder with torch's
    own lock file in it. The lock is free (it died with its holder); the leftovers are deleted."""
    target, lock, pid = target_in(fresh_state), lock_in(fresh_state), dead_pid()
    unfinished = target.with_name(f".{target.name}.build-k1lled00")
    unfinished.mkdir(parents=True)
    (unfinished / "lock").touch()
    half_replaced = target.with_name(f".{target.name}.old-k1lled00")
    half_replaced.mkdir()
    lock.write_text(f"pid {pid} on {HOST}\n")
    monkeypatch.setenv("LAYERLAB_EXTENSION_WAIT", "5")
    assert _local_ext.load() is True
    assert (f"layerlab: pid {pid} on {HOST} ended while holding {lock} without releasing it (killed?); the lock "
            "went with it, and 2 unfinished build folder(s) it left are deleted") in capfd.readouterr().err
    assert not unfinished.exists() and not half_replaced.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name, lock.name]
    assert lock.read_text() == ""


def test_no_extension_env_var_skips_the_build_silently(monkeypatch):
    monkeypatch.setenv("LAYERLAB_NO_EXTENSION", "1")
    monkeypatch.setattr(_local_ext, "_STATE", {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _local_ext.load() is False


def test_the_extension_cache_follows_the_data_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "a"))
    assert _local_ext.build_directory().parent == tmp_path / "a" / "extensions"
    assert _local_ext.lock_path() == tmp_path / "a" / "extensions" / (_local_ext.build_directory().name + ".lock")
    monkeypatch.delenv("LAYERLAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _local_ext.build_directory().parent == tmp_path / "xdg" / "layerlab" / "extensions"


@pytest.fixture
def fake_build(tmp_path):
    """A folder with a 1000-byte library and its manifest, as a build would leave them."""
    folder = tmp_path / "build"
    folder.mkdir()
    data = np.random.default_rng(1).bytes(1000)
    (folder / "lib.so").write_bytes(data)
    manifest = {"fingerprint": "f" * 64, "library": "lib.so", "size": 1000, "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder, manifest


@pytest.mark.parametrize("damage, reason", [
    (lambda f, m: None, None),
    (lambda f, m: (f / "lib.so").write_bytes((f / "lib.so").read_bytes()[:500]),
     "does not match its manifest: lib.so has 500 bytes, the manifest records 1000"),
    (lambda f, m: (f / "lib.so").write_bytes(bytes(1000)),
     "does not match its manifest: the sha256 of lib.so differs from the one recorded at build time"),
    (lambda f, m: (f / "lib.so").unlink(), "lacks lib.so"),
    (lambda f, m: (f / "manifest.json").unlink(), "has no manifest.json"),
    (lambda f, m: (f / "manifest.json").write_text('{"fingerprint": '),
     r"has an unreadable manifest.json \(JSONDecodeError: "),
    (lambda f, m: (f / "manifest.json").write_text(json.dumps({**m, "fingerprint": "e" * 64})),
     "was built from other sources, flags or versions"),
    (lambda f, m: (f / "manifest.json").write_text(json.dumps({**m, "library": "../lib.so"})),
     "has a malformed manifest.json"),
    (lambda f, m: (f / "manifest.json").write_text("[1, 2]"), "was built from other sources, flags or versions"),
])
def test_the_library_is_checked_against_its_manifest_before_it_is_opened(fake_build, damage, reason):
    folder, manifest = fake_build
    damage(folder, manifest)
    library, why = _local_ext._verified_library(folder, "f" * 64)
    if reason is None:
        assert (library, why) == (folder / "lib.so", "")
    else:
        assert library is None and re.fullmatch(reason + (".*" if reason.endswith(": ") else ""), why), why


def test_the_fingerprint_covers_every_file_of_the_sources_and_the_flags(monkeypatch, tmp_path):
    csrc = tmp_path / "csrc"
    csrc.mkdir()
    for name in ("a.cpp", "b.cpp", "common.h"):
        (csrc / name).write_text(f"// {name}\n")
    monkeypatch.setattr(_local_ext, "_CSRC", csrc)
    monkeypatch.setattr(_local_ext, "_SOURCES", sorted(csrc.glob("*.cpp")))
    seen = {_local_ext._fingerprint()}
    for name in ("a.cpp", "b.cpp", "common.h"):
        (csrc / name).write_text(f"// {name}, changed\n")
        seen.add(_local_ext._fingerprint())
    monkeypatch.setattr(_local_ext, "_OPENMP", ("-fopenmp", "-DX"))
    seen.add(_local_ext._fingerprint())
    monkeypatch.setattr(_local_ext, "_SOURCES", sorted(csrc.glob("a.cpp")))
    seen.add(_local_ext._fingerprint())
    assert len(seen) == 6


def test_a_bad_wait_setting_is_named(monkeypatch, fresh_state):
    monkeypatch.setenv("LAYERLAB_EXTENSION_WAIT", "soon")
    with hold_lock(fresh_state, "pid 1 on h"), pytest.warns(
            RuntimeWarning, match=r"\(ArgumentError: LAYERLAB_EXTENSION_WAIT must be a number of seconds >= 0\. "
                                  r"Received: LAYERLAB_EXTENSION_WAIT='soon'\)"):
        assert _local_ext.load() is False
