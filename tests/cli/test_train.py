"""`layerlab train` end to end: files, --resume, interruption, errors, and torchrun with 2 processes."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from layerlab.cli.main import main
from layerlab.train.checkpoint import load_checkpoint
from layerlab.zoo import MODELS, build

BASE = ["train", "--model", "mlp", "--epochs", "2", "--batch-size", "32", "--lr", "0.01", "--threads", "1",
        "--device", "cpu", "--no-progress"]


@pytest.fixture
def npz(tmp_path):
    """A 4-class (1, 6, 6) image data set as an .npz file: class templates plus noise."""
    rng = np.random.default_rng(2)
    templates = rng.normal(size=(4, 1, 6, 6))
    y = rng.integers(0, 4, size=320)
    x = (templates[y] + 1.5 * rng.normal(size=(320, 1, 6, 6))).astype(np.float32)
    path = tmp_path / "toy.npz"
    np.savez(path, x=x[:256], y=y[:256], x_test=x[256:], y_test=y[256:])
    return str(path)


def rows_without_seconds(path):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(open(path))]


def test_train_writes_the_run_folder_and_resume_continues_it(tmp_path, npz, capsys):
    out = tmp_path / "run"
    assert main([*BASE, "--dataset", npz, "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"mlp on {npz}: test accuracy ") and "after 2 epochs" in line
    assert sorted(p.name for p in out.iterdir()) == [".layerlab.lock", "args.json", "checkpoint.pt", "config.json",
                                                     "metrics.csv", "metrics.json"]
    args = json.loads((out / "args.json").read_text())
    assert args["model"] == "mlp" and args["lr"] == 0.01 and args["batch_size"] == 32 and args["dataset"] == npz
    # --resume needs only --out: the rest comes from args.json; the run is complete, so it just reports
    assert main(["train", "--out", str(out), "--resume", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["final"] == json.loads((out / "metrics.json").read_text())["final"]
    assert report["world_size"] == 1 and report["checkpoint"] == str(out / "checkpoint.pt")
    assert report["params"] == sum(p.numel() for p in build("mlp", (1, 6, 6), 4).parameters())


class Stopper(nn.Module):
    """Wraps the zoo mlp; the first instance sends SIGTERM to this process during training step 5."""

    instances = 0

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.net = build("mlp", input_shape, num_classes)
        Stopper.instances += 1
        self.signal_at, self.calls = (5 if Stopper.instances == 1 else None), 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.signal_at:
                os.kill(os.getpid(), signal.SIGTERM)
        return self.net(x)


def test_sigterm_exits_143_and_resume_matches_an_uninterrupted_run(tmp_path, npz, capsys, monkeypatch):
    Stopper.instances = 0
    monkeypatch.setitem(MODELS, "stopper", lambda shape, classes, width: Stopper(shape, classes))
    command = [*BASE, "--model", "stopper", "--dataset", npz, "--epochs", "3"]
    out = tmp_path / "stopped"
    assert main([*command, "--out", str(out)]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert (f"layerlab train: training stopped by SIGTERM at epoch 1, step 5 of 8; checkpoint written to "
            f"{out / 'checkpoint.pt'}; continue with `layerlab train --out {out} --resume`") in err
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert main([*command, "--out", str(tmp_path / "straight")]) == 0
    resumed = load_checkpoint(out / "checkpoint.pt")["model"]
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    assert rows_without_seconds(out / "metrics.csv") == rows_without_seconds(tmp_path / "straight" / "metrics.csv")


@pytest.mark.parametrize("argv, message", [
    (["--resume"], r"layerlab train: error: --resume needs --out DIR"),
    (["--out", "{tmp}/nothing", "--resume"], r"layerlab train: error: --resume: cannot read .*nothing/args.json"),
    (["--model", "resnet"], r"layerlab train: error: unknown zoo model 'resnet'; choose one of logistic, mlp"),
    (["--threads", "0"], r"layerlab train: error: --threads must be an integer from 1 to 1024. Received: --threads 0"),
    (["--lr", "-1"], r"layerlab train: error: TrainConfig.lr must be a finite number > 0. Received: lr=-1.0"),
    (["--threads", "20000"], r"layerlab train: error: --threads must be an integer from 1 to 1024. Received: "
                             r"--threads 20000"),
    (["--threads", "100000"], r"layerlab train: error: --threads must be an integer from 1 to 1024"),
    (["--dataset", ""], r"layerlab train: error: --dataset must be a built-in data set name \(mnist1d, mnist, "
                        r"digits, poskeys\) or a path. Received: --dataset ''"),
    (["--seed", "99999999999999999999"], r"layerlab train: error: TrainConfig.seed must be a non-negative integer up "
                                         r"to 2\*\*63 - 1. Received: seed=99999999999999999999"),
    (["--out", ""], r"layerlab train: error: --out must name a folder. Received: --out ''"),
])
def test_bad_arguments_exit_2_with_the_reason(tmp_path, npz, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main([*BASE, "--dataset", npz, *argv]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_resume_refuses_a_changed_recipe_and_a_new_run_refuses_an_old_folder(tmp_path, npz, capsys):
    out = str(tmp_path / "run")
    assert main([*BASE, "--dataset", npz, "--out", out]) == 0
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    assert main(["train", "--out", out, "--resume", "--lr", "0.5"]) == 2
    assert "the recipe changed (lr: checkpoint 0.01 != now 0.5)" in capsys.readouterr().err
    assert main([*BASE, "--dataset", npz, "--out", out]) == 2
    assert "checkpoint.pt already exists from an earlier run; continue it with --resume" in capsys.readouterr().err
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process_with_the_same_global_batch(tmp_path, npz, capsys):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    recipe = ["--model", "cnn", "--dataset", npz, "--epochs", "2", "--lr", "0.01", "--threads", "1", "--device", "cpu",
              "--no-progress"]
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "layerlab",
         "train", *recipe, "--batch-size", "16", "--out", str(ddp), "--json"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert launched.returncode == 0, launched.stderr
    report = json.loads(launched.stdout)  # rank 0 alone prints
    assert report["world_size"] == 2
    assert json.loads((ddp / "config.json").read_text())["global_batch_size"] == 32
    assert main(["train", *recipe, "--batch-size", "32", "--out", str(single)]) == 0
    capsys.readouterr()
    two = load_checkpoint(ddp / "checkpoint.pt")["model"]
    one = load_checkpoint(single / "checkpoint.pt")["model"]
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5)
    history = json.loads((single / "metrics.json").read_text())["history"]
    assert len(report["history"]) == len(history) == 2
    for got, want in zip(report["history"], history):  # metrics are all-reduced over both processes
        assert got["test_accuracy"] == pytest.approx(want["test_accuracy"], abs=1 / 64 + 1e-9)  # 64 test samples
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4)
        assert got["test_loss"] == pytest.approx(want["test_loss"], rel=1e-4)
        assert got["lr"] == want["lr"]


def test_train_and_compare_share_one_default_recipe_shown_by_their_help(npz, monkeypatch, capsys):
    """Without recipe flags both commands train with DEFAULT_RECIPE on DEFAULT_THREADS threads."""
    import layerlab.experiments.compare as experiments_compare
    import layerlab.train as train_package
    from layerlab.cli.main import build_parser
    from layerlab.train.config import DEFAULT_RECIPE, DEFAULT_THREADS

    used = []

    def fake_fit(model, data, config, **kwargs):
        used.append((config, torch.get_num_threads()))
        raise KeyboardInterrupt

    monkeypatch.setattr(train_package, "fit", fake_fit)
    monkeypatch.setattr(experiments_compare, "fit", fake_fit)
    torch.set_num_threads(2)
    main(["train", "--dataset", npz, "--no-progress"])
    torch.set_num_threads(2)
    main(["compare", "--dataset", npz, "--model", "mlp", "--no-permute-pixels"])
    main(["train", "--dataset", npz, "--no-progress", "--epochs", "1"])  # no warmup in a 1-epoch run
    capsys.readouterr()
    assert [c for c, _ in used[:2]] == [DEFAULT_RECIPE, DEFAULT_RECIPE]
    assert (used[2][0].epochs, used[2][0].warmup_epochs) == (1, 0)
    used.pop()
    assert [t for _, t in used] == [DEFAULT_THREADS, DEFAULT_THREADS]
    for command in ("train", "compare"):
        text = " ".join(build_parser(command)._subparsers._group_actions[0].choices[command].format_help().split())
        for flag, value in (("--lr", "0.01"), ("--batch-size", "100"), ("--epochs", "15"), ("--threads", "1")):
            assert re.search(rf"{flag} \S+ .*?\(default: {value}", text), (command, flag)


def test_a_long_training_announces_its_estimate_and_prints_a_line_per_epoch(npz, capsys, monkeypatch):
    """8 steps per epoch × 2 epochs × 4 s per step × 1.1 for evaluation = 70.4 s ≈ 1.2 min."""
    import layerlab.experiments.estimate

    monkeypatch.setattr(layerlab.experiments.estimate, "time_step", lambda model, data, batch, loss: 4.0)
    assert main([*[a for a in BASE if a != "--no-progress"], "--dataset", npz]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "estimated ~1.2 min for the whole run (from 3 timed steps per model)"
    assert [line[:10] for line in err[1:]] == ["epoch 1/2:", "epoch 2/2:"]
    assert main([*BASE, "--dataset", npz]) == 0
    assert capsys.readouterr().err == ""
