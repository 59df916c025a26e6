"""`layerlab compare` end to end on a tiny budget: table, --json schema, files, failures, flags."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal

import numpy as np
import pytest
from torch import nn

from layerlab.cli.main import build_parser, main
from layerlab.zoo import MODELS

RESULT_KEYS = {"model", "permuted", "params", "macs", "test_accuracy", "test_accuracy_std", "train_seconds"}
TINY = ["--epochs", "1", "--batch-size", "32"]


@pytest.fixture
def npz(tmp_path):
    """A 4-class (1, 6, 6) image data set as an .npz file: class templates plus noise."""
    rng = np.random.default_rng(1)
    templates = rng.normal(size=(4, 1, 6, 6))
    y = rng.integers(0, 4, size=300)
    x = (templates[y] + 1.5 * rng.normal(size=(300, 1, 6, 6))).astype(np.float32)
    path = tmp_path / "toy.npz"
    np.savez(path, x=x[:240], y=y[:240], x_test=x[240:], y_test=y[240:])
    return str(path)


def test_json_schema_files_and_plots(tmp_path, npz, capsys):
    out = tmp_path / "out"
    code = main(["compare", "--dataset", npz, "--model", "mlp,cnn", *TINY, "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["schema"] == "layerlab.compare/1" and document["failures"] == []
    assert document["dataset"]["input_shape"] == [1, 6, 6] and document["dataset"]["num_classes"] == 4
    assert [(r["model"], r["permuted"]) for r in document["results"]] == [
        ("mlp", False), ("mlp", True), ("cnn", False), ("cnn", True)]
    for row in document["results"]:
        assert RESULT_KEYS <= set(row)
        assert isinstance(row["params"], int) and isinstance(row["macs"], int)
        assert 0 <= row["test_accuracy"] <= 1 and row["test_accuracy_std"] is None and row["train_seconds"] > 0
    assert document["args"]["recipe"]["epochs"] == 1 and document["args"]["permute_pixels"] is True
    assert document["out_dir"] == str(out) and len(document["files"]) == 8
    for name in ("accuracy_vs_params.png", "learning_curves.png", "shuffled_vs_original.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG" and (out / name).stat().st_size > 10_000
    assert json.loads((out / "results.json").read_text())["results"] == document["results"]
    assert json.loads((out / "args.json").read_text())["models"] == ["mlp", "cnn"]
    assert "[4/4] cnn (shuffled) seed 0: test accuracy" in captured.err


def test_table_of_original_positions_only(npz, capsys):
    code = main(["compare", "--dataset", npz, "--model", "mlp", "--no-permute-pixels", *TINY])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "│ mlp   │ original  │" in captured.out and "│ shuffled" not in captured.out
    assert "test accuracy" in captured.out and "total wall time" in captured.out


def test_permute_pixels_flag_is_on_by_default_and_can_be_turned_off():
    args = build_parser().parse_args(["compare", "--permute-pixels"])
    assert args.permute_pixels is True
    assert build_parser().parse_args(["compare"]).permute_pixels is True  # the default includes shuffled runs
    assert build_parser().parse_args(["compare", "--no-permute-pixels"]).permute_pixels is False


def test_model_is_the_flag_of_train_and_compare_and_models_a_hidden_alias():
    assert build_parser().parse_args(["compare", "--model", "mlp,cnn"]).models == "mlp,cnn"
    assert build_parser().parse_args(["compare", "--models", "mlp,cnn"]).models == "mlp,cnn"
    assert build_parser().parse_args(["compare"]).models is None  # run() fills in mlp,cnn,lcn,allconv
    assert build_parser().parse_args(["train", "--model", "mlp"]).model == "mlp"
    text = build_parser("compare")._subparsers._group_actions[0].choices["compare"].format_help()
    assert "--model A,B,..." in text and "--models" not in text


def test_default_models_with_an_out_folder_as_make_run_trains_them(tmp_path, npz, capsys):
    out = tmp_path / "run"
    code = main(["compare", "--dataset", npz, "--no-permute-pixels", *TINY, "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert [r["model"] for r in json.loads(captured.out)["results"]] == ["mlp", "cnn", "lcn", "allconv"]
    assert (out / "results.json").is_file()


def test_builtin_mnist1d_is_the_default_dataset(capsys):
    code = main(["compare", "--limit", "200", "--model", "logistic", "--no-permute-pixels", "--json", *TINY])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["dataset"]["name"] == "mnist1d" and document["dataset"]["input_shape"] == [1, 40]
    assert document["dataset"]["train_samples"] == 200 and document["results"][0]["params"] == 410


def test_one_failing_model_is_reported_the_others_finish_and_the_exit_code_is_1(npz, capsys, monkeypatch):
    def broken(input_shape, num_classes, width):
        raise RuntimeError("broken on purpose")

    monkeypatch.setitem(MODELS, "broken", broken)
    code = main(["compare", "--dataset", npz, "--model", "broken,mlp", *TINY, "--json"])
    captured = capsys.readouterr()
    assert code == 1
    document = json.loads(captured.out)
    status = {(r["model"], r["permuted"]): r["status"] for r in document["results"]}
    assert status == {("broken", False): "failed", ("broken", True): "failed", ("mlp", False): "ok",
                      ("mlp", True): "ok"}
    assert "layerlab compare: broken seed 0 failed: RuntimeError: broken on purpose" in captured.err
    assert "layerlab compare: broken (shuffled) seed 0 failed: RuntimeError: broken on purpose" in captured.err


@pytest.mark.parametrize("argv, message", [
    (["--model", "mlp,vgg"], r"layerlab compare: error: models must be zoo names .*Received: vgg"),
    (["--threads", "0"], r"layerlab compare: error: --threads must be an integer from 1 to 1024. Received: --threads 0"),
    (["--threads", "20000"], r"layerlab compare: error: --threads must be an integer from 1 to 1024. Received: "
                             r"--threads 20000"),
    (["--dataset", ""], r"layerlab compare: error: --dataset must be a built-in data set name \(mnist1d, mnist, "
                        r"digits, poskeys\) or a path. Received: --dataset ''"),
    (["--epochs", "0"], r"layerlab compare: error: TrainConfig.epochs must be a positive integer. Received: epochs=0"),
    (["--seeds", "0"], r"layerlab compare: error: seeds must be a positive integer"),
    (["--width", "inf"], r"layerlab compare: error: width must be a positive finite number \(1.0 = the documented "
                         r"sizes\). Received: width=inf"),
])
def test_bad_arguments_exit_2_with_the_reason(npz, capsys, argv, message):
    assert main(["compare", "--dataset", npz, *argv]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_every_option_says_its_default():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["compare"]
    for action in sub._actions:
        if action.dest != "help" and action.help != argparse.SUPPRESS:  # hidden former spellings
            assert "(default: " in action.help and action.help.endswith(")"), action.dest


def test_ctrl_c_keeps_finished_results_and_exits_130(tmp_path, npz, capsys, monkeypatch):
    from layerlab.experiments.estimate import TIMED_STEPS

    steps = []

    class Interrupts(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(36, 4)

        def forward(self, x):
            steps.append(self.training)
            if sum(steps) > TIMED_STEPS + 1:  # after the timed steps of the estimate
                os.kill(os.getpid(), signal.SIGINT)
            return self.linear(x.flatten(1))

    monkeypatch.setitem(MODELS, "interrupts", lambda shape, classes, width: Interrupts())
    out = tmp_path / "out"
    code = main(["compare", "--dataset", npz, "--model", "mlp,interrupts", *TINY, "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 130
    assert ("layerlab compare: stopped by SIGINT while training interrupts seed 0; 2 of 4 trainings finished and "
            "are reported") in captured.err
    document = json.loads(captured.out)
    assert [(r["model"], r["permuted"]) for r in document["results"]] == [("mlp", False), ("mlp", True)]
    assert json.loads((out / "results.json").read_text())["interrupted"] == document["interrupted"]


def test_total_wall_time_counts_from_the_commands_start(npz, capsys, monkeypatch):
    """Time spent before the trainings (imports, checks, loading) is part of the printed wall time."""
    import time

    import layerlab.experiments
    import layerlab.train.config

    check_threads, run_compare, results = layerlab.train.config.check_threads, layerlab.experiments.run_compare, []
    monkeypatch.setattr(layerlab.train.config, "check_threads", lambda n: time.sleep(2) or check_threads(n))
    monkeypatch.setattr(layerlab.experiments, "run_compare", lambda *a, **k: results.append(run_compare(*a, **k))
                        or results[-1])
    assert main(["compare", "--dataset", npz, "--model", "mlp", "--no-permute-pixels", *TINY]) == 0
    seconds = int(re.search(r"total wall time (\d+) s", capsys.readouterr().out).group(1))
    assert seconds >= results[0].wall_seconds + 1.5  # the 2 s before the trainings, less rounding


def test_a_long_run_announces_its_estimate_before_it_trains_and_prints_a_line_per_epoch(npz, capsys, monkeypatch):
    """8 steps per epoch × 3 epochs × 4 trainings × 1 s per step × 1.1 for evaluation = 105.6 s ≈ 1.8 min."""
    import layerlab.experiments.compare as experiments_compare

    timed = []
    monkeypatch.setattr(experiments_compare, "time_step", lambda model, data, batch, loss: timed.append(batch) or 1.0)
    assert main(["compare", "--dataset", npz, "--model", "mlp,cnn", "--epochs", "3", "--batch-size", "32"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert timed == [32, 32]
    assert err[0] == "estimated ~1.8 min for the whole run (from 3 timed steps per model)"
    assert err[1].startswith("epoch 1/3: train loss ") and len([e for e in err if e.startswith("epoch ")]) == 12

    monkeypatch.setattr(experiments_compare, "time_step", lambda model, data, batch, loss: 0.5)  # 52.8 s: no line
    assert main(["compare", "--dataset", npz, "--model", "mlp,cnn", "--epochs", "3", "--batch-size", "32"]) == 0
    assert not capsys.readouterr().err.startswith("estimated")


def test_sweep_sharing_end_to_end_with_three_seeds_by_default(tmp_path, npz, capsys):
    out = tmp_path / "out"
    argv = ["compare", "--sweep", "sharing", "--dataset", npz, "--tiles", "2", "--ranks", "2", *TINY, "--out", str(out)]
    assert build_parser().parse_args([*argv[:3], "--ranks", "none"]).ranks == ()  # leaves the family out
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["schema"] == "layerlab.sweep/1" and document["args"]["seeds"] == [0, 1, 2]
    assert [(r["model"], r["permuted"], r["seeds"]) for r in document["results"]] == [
        (label, permuted, 3) for label in ("cnn", "tiled-2", "lowrank-2", "lcn") for permuted in (False, True)]
    assert [r["filter_banks"] for r in document["results"][::2]] == [1, 4, 2, 36]
    assert {"sharing.png", "results.md", "runs.jsonl"} <= {os.path.basename(f) for f in document["files"]}
    assert "[24/24] lcn (shuffled) seed 2: test accuracy" in captured.err
    # the folder holds a finished sweep: a second run must say --resume, and --resume trains nothing
    assert main(argv) == 2
    assert "runs.jsonl holds 24 finished training(s) of a sweep; continue it with --resume" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    captured = capsys.readouterr()
    assert "resumed: 24 finished training(s) loaded from" in captured.err and "test accuracy" not in captured.err
    assert "│ lowrank-2 │" in captured.out and "original" in captured.out and "shuffled" in captured.out


@pytest.mark.parametrize("argv, message", [
    (["--sweep", "sharing", "--model", "cnn"], r"layerlab compare: error: --sweep sharing trains its own models \(cnn, "
                                                r"tiled, lowrank, lcn at the cnn's MACs\). Received: --model; leave it "
                                                r"out \(--width scales them all\)"),
    (["--sweep", "sharing", "--params", "9000"], r"error: --sweep sharing trains its own models .*Received: --params;"),
    (["--sweep", "sharing", "--resume"], r"layerlab compare: error: --resume continues the sweep saved in --out. "
                                         r"Received: --resume without --out; add --out DIR"),
    (["--tiles", "2,8", "--resume"], r"layerlab compare: error: --tiles, --resume belong\(s\) to --sweep. Received: "
                                     r"--tiles --resume without --sweep; add --sweep sharing or leave them out"),
    (["--sweep", "sharing", "--tiles", "1"], r"layerlab compare: error: tiles must be integers of at least 2 "
                                             r"\(1 is the convolution, which the sweep trains anyway\). Received: "
                                             r"tiles=1"),
])
def test_bad_sweep_arguments_exit_2_with_the_reason(npz, capsys, argv, message):
    assert main(["compare", "--dataset", npz, *argv]) == 2
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize("argv, message", [
    (["--sweep", "sharing", "--ranks", "4,x"], r"layerlab compare: error: argument --ranks: expected comma-separated "
                                               r"integers, e.g. 2,4, or none. Received: '4,x'"),
    (["--sweep", "width"], r"layerlab compare: error: argument --sweep: invalid choice: 'width' \(choose from "
                           r"'?sharing'?\)"),
])
def test_unparsable_sweep_arguments_are_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", *argv])
    assert exit_info.value.code == 2 and re.search(message, capsys.readouterr().err)


def test_help_shows_the_sweep_and_its_defaults():
    text = build_parser("compare")._subparsers._group_actions[0].choices["compare"].format_help()
    flat = " ".join(text.split())
    for expected in ("--sweep {sharing}", "--tiles T,...", "--ranks R,...", "tile sizes of the tiled points, each >= 2; "
                     "none leaves them out (default: 2,4)", "ranks of the lowrank points, each >= 2; none leaves them "
                     "out (default: 2,4,8)",
                     "(default: 1; 3 with --sweep)", "--resume continues a stopped sweep in the same --out"):
        assert expected in flat, expected
