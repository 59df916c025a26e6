"""Faults around the CLI's output folders and run state: unwritable or full --out, two runs on one
folder, kills and double Ctrl-C during a checkpoint write, crafted run files, changed data on --resume,
failed allocations and sizes that overflow. Real file systems (tmpfs, as root), real processes and
real signals where the fault is one."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from layerlab.cli.main import main
from layerlab.experiments import compare as compare_module
from layerlab.train import metrics as metrics_module
from layerlab.zoo import MODELS
from fault_worker import Slow

WORKER = str(Path(__file__).with_name("fault_worker.py"))
TRAIN = ["train", "--model", "mlp", "--epochs", "2", "--batch-size", "32", "--lr", "0.01", "--threads", "1",
         "--device", "cpu", "--no-progress"]
COMPARE = ["compare", "--models", "mlp", "--epochs", "1", "--batch-size", "32", "--no-permute-pixels"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}


def toy_npz(path: Path, seed: int = 2, n: int = 160) -> str:
    """A 4-class (1, 6, 6) data set as an .npz file: class templates plus noise."""
    rng = np.random.default_rng(seed)
    templates = rng.normal(size=(4, 1, 6, 6))
    y = rng.integers(0, 4, size=n)
    x = (templates[y] + 1.5 * rng.normal(size=(n, 1, 6, 6))).astype(np.float32)
    split = n * 4 // 5
    np.savez(path, x=x[:split], y=y[:split], x_test=x[split:], y_test=y[split:])
    return str(path)


@pytest.fixture
def npz(tmp_path):
    return toy_npz(tmp_path / "toy.npz")


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(name, size, read_only=False) -> Path``: a real tmpfs (root only), unmounted afterwards."""
    mounted = []

    def mount(name: str, size: str, read_only: bool = False) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        point = tmp_path / name
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def fill(folder: Path) -> None:
    """Write zeros into ``folder`` until its file system is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as err:
        assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.fixture
def no_training(monkeypatch):
    """Any training fails the test: errors about --out must come before the first one."""
    monkeypatch.setattr(compare_module, "_train_one", lambda *a, **k: pytest.fail("trained before checking --out"))
    monkeypatch.setattr("layerlab.train.loop._Trainer.run", lambda *a, **k: pytest.fail("trained before checking"))


# ---- --out that cannot be written: refused before any work --------------------------------------

def unwritable(kind: str, tmp_path: Path, tmpfs) -> tuple[str, str]:
    """(an --out of this kind, the reason the message must give)."""
    if kind == "read-only":
        return str(tmpfs("ro", "1m", read_only=True) / "out"), r"cannot be written \(Read-only file system\)"
    if kind == "a file":
        (tmp_path / "file").write_text("x")
        return str(tmp_path / "file"), r"exists and is not a folder; pass a folder path"
    if kind == "under /proc":
        return "/proc/layerlab-out", r"cannot be written \((No such file or directory|Permission denied)\)"
    if kind == "a name too long":
        return str(tmp_path / ("a" * 300)), r"cannot be written \(File name too long\)"
    if kind == "a symlink loop":
        (tmp_path / "loop").symlink_to(tmp_path / "loop")
        return str(tmp_path / "loop"), r"exists and is not a folder; pass a folder path"
    full = tmpfs("full", "1m")
    fill(full)
    return str(full / "out"), r"cannot be written \(No space left on device\); nothing was computed; free disk space"


@pytest.mark.parametrize("kind", ["read-only", "a file", "under /proc", "full", "a name too long", "a symlink loop"])
@pytest.mark.parametrize("command", ["train", "compare", "explain"])
def test_unwritable_out_is_refused_before_any_work(tmp_path, npz, tmpfs, no_training, capsys, command, kind):
    out, reason = unwritable(kind, tmp_path, tmpfs)
    argv = {"train": [*TRAIN, "--dataset", npz], "compare": [*COMPARE, "--dataset", npz],
            "explain": ["explain", "conv2d", "--input", "1x6x6", "--out-channels", "1", "--kernel", "3"]}[command]
    assert main([*argv, "--out", out]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"^layerlab {command}: error: --out '{re.escape(out)}' {reason}", err), err


@pytest.mark.parametrize("command", ["compare", "explain"])
def test_out_without_room_for_the_outputs_is_refused_before_any_work(tmpfs, npz, no_training, capsys, command):
    out = tmpfs("small", "1m") / "out"  # compare asks ~2.6 MiB, explain 17 MiB
    argv = {"compare": [*COMPARE, "--dataset", npz],
            "explain": ["explain", "conv2d", "--input", "1x6x6", "--out-channels", "1", "--kernel", "3"]}[command]
    assert main([*argv, "--out", str(out)]) == 2
    assert re.search(rf"layerlab {command}: error: --out '{re.escape(str(out))}' has [\d,]+ bytes free, but the "
                     r"outputs need about [\d,]+; nothing was computed; free disk space or choose a folder on another "
                     r"file system", capsys.readouterr().err)


# ---- results are never lost -------------------------------------------------------------------------

def test_compare_keeps_its_results_when_the_disk_fills_during_training(tmpfs, npz, capsys, monkeypatch):
    disk = tmpfs("disk", "4m")

    def fills_the_disk(shape, classes, width):
        fill(disk)
        return MODELS["mlp"](shape, classes, width)

    monkeypatch.setitem(MODELS, "filler", fills_the_disk)
    code = main([*COMPARE, "--models", "filler", "--dataset", npz, "--out", str(disk / "out"), "--json"])
    captured = capsys.readouterr()
    assert code == 2
    match = re.search(rf"layerlab compare: error: could not write {re.escape(str(disk))}/out/args.json \(No space left "
                      r"on device\); the results are printed here and were written to (\S+) instead\n", captured.err)
    assert match, captured.err
    printed = json.loads(captured.out)
    assert printed["results"][0]["status"] == "ok" and printed["out_dir"] == match.group(1), captured.err
    kept = Path(match.group(1))
    try:
        assert json.loads((kept / "results.json").read_text())["runs"] == printed["runs"]
        assert (kept / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        shutil.rmtree(kept)


def test_a_non_utf8_dataset_path_keeps_results_and_plots(tmp_path, capsys):
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/data\xff"))
    folder.mkdir()
    dataset = toy_npz(folder / "toy.npz")
    out = folder / "out"
    assert main([*COMPARE, "--dataset", dataset, "--out", str(out)]) == 0
    assert "data\\udcff/out" in capsys.readouterr().out.replace("\n", "")  # "files in DIR", not a UnicodeEncodeError
    assert sorted(p.name for p in out.glob("*.png")) == ["accuracy_vs_params.png", "learning_curves.png",
                                                         "shuffled_vs_original.png"]
    document = json.loads((out / "results.json").read_text())
    assert document["args"]["dataset"] == dataset and document["dataset"]["name"].endswith("data\\xff/toy.npz")


def test_train_prints_a_non_utf8_dataset_path(tmp_path, capsys):
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/data\xff"))
    folder.mkdir()
    dataset = toy_npz(folder / "toy.npz")
    assert main([*TRAIN, "--dataset", dataset, "--out", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.startswith(f"mlp on {tmp_path}/data\\xff/toy.npz: test accuracy ")
    assert json.loads((tmp_path / "run" / "args.json").read_text())["dataset"] == dataset


def test_train_disk_full_while_writing_metrics_keeps_the_checkpoint_and_says_resume(tmp_path, npz, capsys,
                                                                                    monkeypatch):
    real = metrics_module.write_text_atomic

    def full_for_metrics(path, text):
        if path.name == "metrics.csv":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, text)

    out = tmp_path / "run"
    monkeypatch.setattr(metrics_module, "write_text_atomic", full_for_metrics)
    assert main([*TRAIN, "--dataset", npz, "--out", str(out)]) == 2
    assert (f"layerlab train: error: could not write {out / 'metrics.csv'} and metrics.json: No space left on device; "
            f"the checkpoint {out / 'checkpoint.pt'} (the end of epoch 1) is written and intact and holds the metrics; "
            "free disk space, then continue with --resume (it rewrites the metrics files)") in capsys.readouterr().err
    monkeypatch.setattr(metrics_module, "write_text_atomic", real)
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert [row["epoch"] for row in json.loads((out / "metrics.json").read_text())["history"]] == [1, 2]


# ---- one run per folder -----------------------------------------------------------------------------

def wait_for(predicate, what: str, child: subprocess.Popen, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if child.poll() is not None:
            pytest.fail(f"the child exited ({child.returncode}) before {what}: {child.stderr.read()}")
        if time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_second_run_on_a_busy_out_is_refused_and_a_killed_run_frees_it(tmp_path, npz, capsys, monkeypatch):
    out = tmp_path / "run"
    argv = [*TRAIN, "--model", "slow", "--epochs", "30", "--dataset", npz, "--out", str(out)]
    child = subprocess.Popen([sys.executable, WORKER, "slow", "0.05", "--", *argv], env=ENV, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lock = out / ".layerlab.lock"
    wait_for(lambda: (out / "checkpoint.pt").exists() and lock.exists() and lock.read_text(), "a checkpoint", child)
    args_before = (out / "args.json").read_bytes()
    monkeypatch.setitem(MODELS, "slow", lambda shape, classes, width: Slow(shape, classes))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(rf"layerlab train: error: {re.escape(str(out))} is in use by another layerlab run \(pid "
                     rf"{child.pid}: .*fault_worker.py slow 0.05 -- train .*--out {re.escape(str(out))}\); wait for it "
                     r"to finish, or choose another --out", err), err
    assert (out / "args.json").read_bytes() == args_before
    child.send_signal(signal.SIGKILL)  # the kernel drops the lock with the process
    child.communicate(timeout=60)
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["final"]["epoch"] == 30


# ---- leftovers of a checkpoint write that was cut short ----------------------------------------------

def stalled_checkpoint_write(out: Path, npz: str) -> tuple[subprocess.Popen, list[str]]:
    """A child whose second checkpoint write stalls half-way; returns once the temporary file exists."""
    argv = [*TRAIN, "--epochs", "3", "--dataset", npz, "--out", str(out)]
    child = subprocess.Popen([sys.executable, WORKER, "hang-checkpoint", "--", *argv], env=ENV, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: (out / "checkpoint.pt").exists() and list(out.glob(".checkpoint.pt.*.tmp")), "the stalled write",
             child)  # the first checkpoint is complete, so the temporary file is the second one's
    return child, argv


def test_resume_removes_the_temp_file_of_a_killed_checkpoint_write(tmp_path, npz, capsys):
    out = tmp_path / "run"
    child, _ = stalled_checkpoint_write(out, npz)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert list(out.glob(".checkpoint.pt.*.tmp"))  # the kill left it
    assert main(["train", "--out", str(out), "--resume"]) == 0, capsys.readouterr().err
    assert not list(out.glob("*.tmp")) and json.loads((out / "metrics.json").read_text())["final"]["epoch"] == 3


def test_a_second_ctrl_c_during_a_checkpoint_write_leaves_no_temp_file(tmp_path, npz):
    out = tmp_path / "run"
    child, _ = stalled_checkpoint_write(out, npz)
    child.send_signal(signal.SIGINT)  # asks for a stop after the step...
    time.sleep(0.3)
    child.send_signal(signal.SIGINT)  # ...and the second one aborts at once, in the middle of the write
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130 and "layerlab train: interrupted" in err
    assert not list(out.glob("*.tmp"))
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1  # the previous one, intact


# ---- --resume: the run's identity and its files ------------------------------------------------------

@pytest.fixture
def finished_run(tmp_path, npz, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "3", "--dataset", npz, "--out", str(out)]) == 0
    capsys.readouterr()
    return out


def resume_first_epoch(out: Path) -> None:
    """Make the finished run look stopped after epoch 1 (a checkpoint from then), so a resume trains."""
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state.update(epoch=1, global_step=4, history=state["history"][:1])
    torch.save(state, out / "checkpoint.pt")


@pytest.mark.parametrize("flags, message", [
    (["--limit", "100"], r"cannot resume {out}: --limit: run None != now 100; these change the results; resume with "
                         r"the run's own values \(omit the flag\), or start a new run in another --out folder"),
    (["--model", "logistic"], r"cannot resume {out}: --model: run 'mlp' != now 'logistic'"),
    (["--width", "2"], r"cannot resume {out}: --width: run 1.0 != now 2.0"),
    (["--dataset", "{other}"], r"cannot resume {out}/checkpoint.pt: the dataset differs from the one the run trained "
                               r"on \(run: '.*toy.npz', 128 train / 32 test samples, sha256 [0-9a-f]{{12}}; now: "
                               r"'.*other.npz', 128 train / 32 test samples, sha256 [0-9a-f]{{12}}\); resume with the "
                               r"same --dataset and --limit"),
])
def test_resume_refuses_other_data_or_model_naming_the_field(finished_run, tmp_path, capsys, flags, message):
    other = toy_npz(tmp_path / "other.npz", seed=9)
    resume_first_epoch(finished_run)
    before = (finished_run / "checkpoint.pt").read_bytes()
    flags = [f.replace("{other}", other) for f in flags]
    assert main(["train", "--out", str(finished_run), "--resume", *flags]) == 2
    assert re.search(message.format(out=re.escape(str(finished_run))), capsys.readouterr().err)
    assert (finished_run / "checkpoint.pt").read_bytes() == before


def test_resume_accepts_the_same_data_under_another_path(finished_run, tmp_path, npz):
    resume_first_epoch(finished_run)
    copy = tmp_path / "copy.npz"
    shutil.copy(npz, copy)
    assert main(["train", "--out", str(finished_run), "--resume", "--dataset", str(copy)]) == 0


def test_args_and_config_are_written_once_and_agree(finished_run, capsys):
    resume_first_epoch(finished_run)
    args, config = (finished_run / "args.json").read_bytes(), (finished_run / "config.json").read_bytes()
    assert main(["train", "--out", str(finished_run), "--resume", "--ddp-timeout", "30"]) == 0
    assert (finished_run / "args.json").read_bytes() == args and (finished_run / "config.json").read_bytes() == config
    saved_args, saved_config = json.loads(args), json.loads(config)
    assert {k: saved_args[k] for k in saved_config["config"]} == saved_config["config"]
    assert saved_args["data"] == saved_config["data"] and len(saved_config["data"]["sha256"]) == 64


def crafted(state: dict, change: str) -> None:
    if change == "no rng":
        del state["rng"]
    elif change == "rng a string":
        state["rng"] = "abc"
    elif change == "step_in_epoch 10**9":
        state["step_in_epoch"] = 10**9
    elif change == "history a dict":
        state["history"] = {}
    elif change == "broken numpy rng":
        state["rng"][0]["numpy"] = {"kind": "MT19937"}


@pytest.mark.parametrize("change, message", [
    ("no rng", r"checkpoint {out}/checkpoint.pt lacks 'rng'; it is damaged or was not written by layerlab train; "
               r"delete it and start a new run"),
    ("rng a string", r"checkpoint {out}/checkpoint.pt: 'rng' must be a list of per-process RNG states \(torch, cuda, "
                     r"numpy, python\). Received: 'abc'; it is damaged"),
    ("history a dict", r"'history' must be a list of dicts. Received: dict"),
    ("step_in_epoch 10**9", r"cannot resume {out}/checkpoint.pt: its counters are inconsistent \(step_in_epoch "
                            r"1000000000 >= steps per epoch 4; global_step 12 != epoch × steps per epoch \+ "
                            r"step_in_epoch = 1000000012\); it is damaged; delete it and start a new run"),
    ("broken numpy rng", r"the RNG state in the checkpoint is damaged \(KeyError: 'keys'\); delete the checkpoint"),
])
def test_crafted_checkpoints_are_refused_by_name(finished_run, capsys, change, message):
    state = torch.load(finished_run / "checkpoint.pt", weights_only=True)
    crafted(state, change)
    torch.save(state, finished_run / "checkpoint.pt")
    assert main(["train", "--out", str(finished_run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert re.search("layerlab train: error: .*" + message.format(out=re.escape(str(finished_run))), err), err


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", r"--resume: {out}/args.json must hold a JSON object of arguments. Received: a JSON list; it is damaged"),
    ('{"threads": "two"}', r"--resume: {out}/args.json: --threads must be an integer from 1 to 1024. Received: "
                           r"--threads 'two'"),
    ('{"limit": "x"}', r"--resume: {out}/args.json: limit must be null or a positive integer. Received: 'x'"),
    ('{"dataset": 5}', r"--resume: {out}/args.json: --dataset must be a built-in data set name \(mnist1d, mnist, "
                       r"digits, poskeys\) or a path. Received: --dataset 5"),
    ('{"width": "wide"}', r"--resume: {out}/args.json: width must be a number > 0. Received: 'wide'"),
    ('{"lr": "fast"}', r"TrainConfig.lr must be a finite number > 0. Received: lr='fast'"),
])
def test_crafted_args_json_is_refused_by_name(finished_run, capsys, content, message):
    (finished_run / "args.json").write_text(content)
    assert main(["train", "--out", str(finished_run), "--resume"]) == 2
    assert re.search("layerlab train: error: " + message.format(out=re.escape(str(finished_run))),
                     capsys.readouterr().err)


# ---- sizes that overflow and allocations that fail ---------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["summary", "torch.nn:Identity", "--input", "3x999999999x999999999"],
     r"layerlab summary: error: a size is too large to represent \(RuntimeError: Storage size calculation overflowed "
     r"with sizes=\[1, 3, 999999999, 999999999\]\); nothing was computed; use smaller sizes"),
    (["summary", "torch.nn:Identity", "--input", "3x8x8", "--batch-size", "100000000000000000000"],
     r"layerlab summary: error: a size is too large to represent \(TypeError: .*Overflow when unpacking long"),
])
def test_sizes_that_overflow_are_clear_errors(capsys, argv, message):
    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err)


def test_an_infinite_memory_budget_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "1e400")
    assert main(["explain", "dense", "--input", "9", "--out-features", "4", "--out", str(tmp_path)]) == 2
    assert ("layerlab explain: error: the environment variable LAYERLAB_MAX_BYTES must be a number of bytes below "
            "2**63 (about 9.2e18). Received: '1e400'; use e.g. 2GiB") in capsys.readouterr().err


def test_failed_allocations_under_an_address_space_limit_are_clear_errors(tmp_path, npz):
    """Two commands in one child limited to 2 GB of address space (RLIMIT_AS, as `ulimit -v`)."""
    script = (
        "import resource, sys\n"
        "import torch\n"
        "from layerlab.cli.main import main\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 * 10**9, resource.getrlimit(resource.RLIMIT_AS)[1]))\n"
        f"print(main(['explain', 'local2d', '--input', '16x128x128', '--out-channels', '16', '--kernel', '3', "
        f"'--out', {str(tmp_path / 'explain')!r}]))\n"
        f"print(main(['train', '--model', 'mlp', '--width', '150', '--epochs', '1', '--threads', '1', "
        f"'--no-progress', '--dataset', {npz!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["2", "2"], done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(r"layerlab explain: error: out of memory \(MemoryError: Unable to allocate [\d.]+ MiB .*\); this "
                     r"process may use at most 1.9 GiB of address space \(ulimit -v / RLIMIT_AS\); nothing more was "
                     r"computed; use smaller sizes", done.stderr), done.stderr
    assert re.search(r"layerlab train: error: out of memory \(RuntimeError: .*you tried to allocate \d+ bytes.*\); "
                     r"this process may use at most 1.9 GiB", done.stderr), done.stderr
