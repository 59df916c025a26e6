"""run_compare end to end on a tiny budget, failures, interruption, outputs."""

from __future__ import annotations

import csv
import json
import os
import signal
import statistics

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import layerlab
from layerlab.errors import ArgumentError, TrainingError
from layerlab.experiments import compare_table, run_compare, write_outputs
from layerlab.train import TrainConfig
from layerlab.zoo import MODELS, build

TINY = TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, epochs=2, warmup_epochs=1, device="cpu")


class NaNNet(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), num_classes))

    def forward(self, x):
        out = self.body(x)
        return out * float("nan") if self.training else out


class SignalNet(NaNNet):
    def forward(self, x):
        if self.training:
            os.kill(os.getpid(), signal.SIGINT)
        return self.body(x)


@pytest.fixture
def extra_models(monkeypatch):
    def broken(input_shape, num_classes, width):
        raise RuntimeError("this builder is broken on purpose")

    monkeypatch.setitem(MODELS, "broken", broken)
    monkeypatch.setitem(MODELS, "nan", lambda input_shape, num_classes, width: NaNNet(input_shape, num_classes))
    monkeypatch.setitem(MODELS, "interrupt", lambda shape, classes, width: SignalNet(shape, classes))


def test_each_model_trains_on_original_and_shuffled_positions(toy_images):
    lines = []
    result = run_compare(toy_images, models=("mlp", "cnn"), recipe=TINY, progress=False, log=lines.append)
    assert [(r["model"], r["permuted"]) for r in result.results] == [
        ("mlp", False), ("mlp", True), ("cnn", False), ("cnn", True)]
    assert result.ok and result.interrupted is None and len(lines) == 4
    assert lines[1].startswith("[2/4] mlp (shuffled) seed 0: test accuracy ")
    for row in result.results:
        model = build(row["model"], toy_images.input_shape, toy_images.num_classes)
        totals = layerlab.summary(model, toy_images.input_shape).total
        assert row["params"] == sum(p.numel() for p in model.parameters()) == totals.params
        with FlopCounterMode(display=False) as counter:  # torch's own count, independent of layerlab's arithmetic
            model(torch.zeros(1, *toy_images.input_shape))
        assert row["macs"] == counter.get_total_flops() // 2 > 0  # mlp, cnn: every FLOP is a multiply-add of a weight
        assert 0.4 < row["test_accuracy"] <= 1 and row["test_accuracy_std"] is None and row["seeds"] == 1
        assert row["train_seconds"] > 0 and row["status"] == "ok" and row["error"] is None
    for run in result.runs:
        assert run.test_accuracy == run.history[-1]["test_accuracy"] and len(run.history) == 2
    # the shuffled MLP starts from the same init and sees the same order: its accuracy is near the original's
    mlp, mlp_shuffled = result.results[0]["test_accuracy"], result.results[1]["test_accuracy"]
    assert abs(mlp - mlp_shuffled) < 0.15
    assert result.permutation is not None and sorted(result.permutation) == list(range(36))


def test_seeds_give_mean_and_sample_std(toy_images):
    result = run_compare(toy_images, models=("mlp",), permute_pixels=False, seeds=3, recipe=TINY, progress=False)
    accuracies = [r.test_accuracy for r in result.runs]
    assert [r.seed for r in result.runs] == [0, 1, 2] and len(set(accuracies)) > 1
    row, = result.results
    assert row["test_accuracy"] == pytest.approx(sum(accuracies) / 3)
    assert row["test_accuracy_std"] == pytest.approx(statistics.stdev(accuracies))
    assert row["seeds"] == 3 and result.permutation is None


def test_a_failing_model_is_reported_and_the_others_finish(toy_images, extra_models):
    result = run_compare(toy_images, models=("broken", "mlp", "nan"), recipe=TINY, progress=False)
    rows = {(r["model"], r["permuted"]): r for r in result.results}
    assert rows[("mlp", False)]["status"] == rows[("mlp", True)]["status"] == "ok"
    assert rows[("broken", False)]["status"] == "failed"
    assert rows[("broken", False)]["error"] == "RuntimeError: this builder is broken on purpose"
    assert rows[("nan", True)]["status"] == "failed" and rows[("nan", True)]["test_accuracy"] is None
    assert rows[("nan", True)]["error"].startswith("loss became nan at epoch 1, step 1 (lr=")
    assert not result.ok
    assert [(f["model"], f["permuted"]) for f in result.failures] == [
        ("broken", False), ("broken", True), ("nan", False), ("nan", True)]
    table = compare_table(result)
    assert [c.header for c in table.columns] == ["model", "positions", "params", "MACs", "train time",
                                                 "test accuracy"]


def test_ctrl_c_stops_the_experiment_and_keeps_what_finished(toy_images, extra_models):
    result = run_compare(toy_images, models=("mlp", "interrupt", "cnn"), recipe=TINY, progress=False)
    assert [(r.model, r.permuted) for r in result.runs] == [("mlp", False), ("mlp", True)]
    assert result.signal_number == signal.SIGINT
    assert result.interrupted == ("stopped by SIGINT while training interrupt seed 0; 2 of 6 trainings finished "
                                  "and are reported")


def test_parameter_budget_picks_a_width_per_model(toy_images):
    result = run_compare(toy_images, models=("mlp", "cnn"), permute_pixels=False, params=3000,
                         recipe=TrainConfig(epochs=1, batch_size=64, device="cpu"), progress=False)
    widths = [r["width"] for r in result.results]
    assert widths[0] != widths[1]
    for row in result.results:
        assert abs(row["params"] - 3000) / 3000 < 0.15
    assert result.args["params"] == 3000 and result.args["width"] is None


def test_outputs_written(tmp_path, toy_images):
    result = run_compare(toy_images, models=("mlp", "allconv"), recipe=TINY, progress=False)
    paths = write_outputs(result, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["accuracy_vs_params.png", "args.json", "history.csv", "learning_curves.png", "results.csv",
                     "results.json", "runs.csv", "shuffled_vs_original.png"]
    for path in paths:
        assert path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == json.loads(json.dumps(result.to_dict()))
    args = json.loads((tmp_path / "out" / "args.json").read_text())
    assert args["permutation"] == result.permutation and args["recipe"]["epochs"] == 2
    history = list(csv.DictReader((tmp_path / "out" / "history.csv").open()))
    assert len(history) == 4 * 2  # 4 trainings x 2 epochs
    assert {(h["model"], h["permuted"]) for h in history} == {("mlp", "False"), ("mlp", "True"),
                                                             ("allconv", "False"), ("allconv", "True")}
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert [float(r["test_accuracy"]) for r in rows] == [r["test_accuracy"] for r in result.results]


def test_outputs_of_a_run_where_everything_failed(tmp_path, toy_images, extra_models):
    result = run_compare(toy_images, models=("broken",), recipe=TINY, progress=False)
    paths = write_outputs(result, tmp_path)
    assert all(p.stat().st_size > 0 for p in paths)
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [(r["permuted"], r["status"], r["test_accuracy"], r["params"]) for r in rows] == [
        (False, "failed", None, None), (True, "failed", None, None)]


@pytest.mark.parametrize("kwargs, message", [
    ({"models": ("mlp", "resnet")}, r"models must be zoo names \(logistic, mlp, .*\). Received: resnet; e.g. "
                                    r"--model mlp,cnn,lcn,allconv"),
    ({"models": ()}, r"models must be zoo names .* Received: nothing"),
    ({"models": ("mlp", "mlp")}, r"models lists a name twice. Received: mlp, mlp"),
    ({"seeds": 0}, r"seeds must be a positive integer \(number of seeds per model\). Received: seeds=0"),
    ({"params": -5}, r"params must be a positive integer \(a parameter budget\). Received: params=-5"),
    ({"recipe": {"lr": 1}}, r"recipe must be a TrainConfig. Received: recipe=\{'lr': 1\}"),
    ({"limit": 10}, r"limit applies to data loaded by name or path; subsample a Dataset object yourself"),
])
def test_bad_arguments(toy_images, kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        run_compare(toy_images, **{"progress": False, **kwargs})


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_gpu_is_one_error_before_any_training(toy_images):
    with pytest.raises(TrainingError, match=r"device='cuda' was requested but CUDA is not available here; use "
                                            r"device='cpu' or 'auto'"):
        run_compare(toy_images, recipe=TrainConfig(device="cuda"), progress=False)


def test_models_as_a_comma_separated_string(toy_images):
    result = run_compare(toy_images, models="mlp, logistic", permute_pixels=False,
                         recipe=TrainConfig(epochs=1, device="cpu"), progress=False)
    assert result.args["models"] == ["mlp", "logistic"]


def test_out_must_be_a_folder(tmp_path, toy_images):
    result = run_compare(toy_images, models=("logistic",), permute_pixels=False,
                         recipe=TrainConfig(epochs=1, device="cpu"), progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArgumentError, match=r"--out '.*file' exists and is not a folder; pass a folder path"):
        write_outputs(result, tmp_path / "file")


def test_a_plot_that_cannot_be_drawn_keeps_the_data_files_and_the_other_plots(tmp_path, toy_images, monkeypatch):
    result = run_compare(toy_images, models=("logistic",), permute_pixels=False,
                         recipe=TrainConfig(epochs=1, device="cpu"), progress=False)

    def broken(result, path):
        raise TypeError("set_text(): incompatible function arguments")

    monkeypatch.setattr("layerlab.viz.compare.plot_learning_curves", broken)
    logged = []
    paths = write_outputs(result, tmp_path, log=logged.append)
    assert sorted(p.name for p in paths) == ["accuracy_vs_params.png", "args.json", "history.csv", "results.csv",
                                             "results.json", "runs.csv", "shuffled_vs_original.png"]
    assert logged == [f"plot {tmp_path / 'learning_curves.png'} was not written (TypeError: set_text(): incompatible "
                      "function arguments)"]


def test_time_step_times_a_step_and_leaves_the_weights_as_they_were(toy_images):
    from layerlab.experiments.estimate import time_step
    from layerlab.zoo import build

    model = build("mlp", toy_images.input_shape, toy_images.num_classes)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seconds = time_step(model, toy_images, 16)
    assert 0 < seconds < 5
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
