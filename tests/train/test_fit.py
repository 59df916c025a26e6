"""fit(): learning, metrics files, exact resume, recipe checks."""

from __future__ import annotations

import csv
import json
import re

import pytest
import torch
from torch import nn

from layerlab.errors import ArgumentError, DataError, ShapeError, TrainingError
from layerlab.train import TrainConfig, TrainingInterrupted, fit
from train_worker import TinyNet, config, tiny_data


def without_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_fit_learns_and_writes_metrics(tmp_path):
    model = TinyNet()
    data = tiny_data()
    with torch.no_grad():
        before = (model(torch.as_tensor(data.x_test)).argmax(1) == torch.as_tensor(data.y_test)).float().mean()
    result = fit(model, data, config(epochs=4), out_dir=tmp_path, progress=False)
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert result.test_accuracy > 0.8 > before
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    # the accuracy fit reports is the model's real accuracy on the test split
    with torch.no_grad():
        after = (model(torch.as_tensor(data.x_test)).argmax(1) == torch.as_tensor(data.y_test)).float().mean()
    assert result.test_accuracy == pytest.approx(float(after))
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [float(r["test_accuracy"]) for r in rows] == [r["test_accuracy"] for r in result.history]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["history"] == result.history and saved["final"] == result.history[-1]
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["config"] == config(epochs=4).to_dict()
    assert record["global_batch_size"] == 16 and record["steps_per_epoch"] == 16
    assert result.checkpoint == tmp_path / "checkpoint.pt"


def test_lr_column_follows_the_schedule(tmp_path):
    result = fit(TinyNet(), tiny_data(), config(epochs=2, schedule="none"), progress=False)
    assert [row["lr"] for row in result.history] == [0.05, 0.05]


@pytest.mark.parametrize("signal_at_step, where", [
    (5, "epoch 1, step 5 of 16"),      # mid-epoch: checkpoint after step 5
    (16, "the end of epoch 1"),        # last step: the epoch finishes, then stop
    (37, "epoch 3, step 5 of 16"),     # after a finished epoch and mid-way through the last one
])
def test_interrupted_then_resumed_run_is_bit_identical(tmp_path, signal_at_step, where):
    straight = TinyNet()
    expected = fit(straight, tiny_data(), config(), out_dir=tmp_path / "straight", progress=False)

    out = tmp_path / "interrupted"
    with pytest.raises(TrainingInterrupted, match=re.escape(f"training stopped by SIGTERM at {where}; checkpoint "
                                                            f"written to {out / 'checkpoint.pt'}; continue with "
                                                            f"`layerlab train --out {out} --resume`")):
        fit(TinyNet(signal_at_step=signal_at_step), tiny_data(), config(), out_dir=out, progress=False)
    resumed_model = TinyNet(seed=123)  # a different init: everything must come from the checkpoint
    resumed = fit(resumed_model, tiny_data(), config(), out_dir=out, resume=True, progress=False)

    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed_model.state_dict()[name]), name
    assert without_seconds(resumed.history) == without_seconds(expected.history)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["test_loss"] for r in rows] == [repr(h["test_loss"]) for h in expected.history]


def test_resume_adam_with_step_schedule_and_clipping_is_exact(tmp_path):
    recipe = TrainConfig(optimizer="adam", lr=0.01, weight_decay=1e-3, schedule="step", lr_step_size=1,
                         lr_gamma=0.5, warmup_epochs=1, grad_clip=0.5, epochs=3, batch_size=32, seed=4, device="cpu")
    straight = TinyNet()
    fit(straight, tiny_data(), recipe, progress=False)
    with pytest.raises(TrainingInterrupted):
        fit(TinyNet(signal_at_step=11), tiny_data(), recipe, out_dir=tmp_path, progress=False)
    resumed = TinyNet()
    fit(resumed, tiny_data(), recipe, out_dir=tmp_path, resume=True, progress=False)
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


def test_resume_of_a_finished_run_trains_no_more(tmp_path):
    first = fit(TinyNet(), tiny_data(), config(epochs=2), out_dir=tmp_path, progress=False)
    model = TinyNet(seed=5)
    again = fit(model, tiny_data(), config(epochs=2), out_dir=tmp_path, resume=True, progress=False)
    assert again.history == first.history
    assert model.calls == 0


def test_resume_refuses_a_changed_recipe(tmp_path):
    fit(TinyNet(), tiny_data(), config(epochs=2), out_dir=tmp_path, progress=False)
    with pytest.raises(TrainingError, match=r"cannot resume .*checkpoint.pt: the recipe changed \(epochs: checkpoint 2 "
                                            r"!= now 3\); resume with the same settings"):
        fit(TinyNet(), tiny_data(), config(epochs=3), out_dir=tmp_path, resume=True, progress=False)


def test_resume_refuses_another_model(tmp_path):
    fit(TinyNet(), tiny_data(), config(epochs=1), out_dir=tmp_path, progress=False)
    other = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    with pytest.raises(TrainingError, match=r"checkpoint .* does not fit Sequential .*resume with the same model"):
        fit(other, tiny_data(), config(epochs=1), out_dir=tmp_path, resume=True, progress=False)


def test_existing_checkpoint_is_not_overwritten_by_a_new_run(tmp_path):
    fit(TinyNet(), tiny_data(), config(epochs=1), out_dir=tmp_path, progress=False)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(TrainingError, match=r"checkpoint.pt already exists from an earlier run; continue it with "
                                            r"--resume \(resume=True\), or choose another --out"):
        fit(TinyNet(), tiny_data(), config(epochs=1), out_dir=tmp_path, progress=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_resume_without_checkpoint_or_out_dir(tmp_path):
    with pytest.raises(TrainingError, match=r"no checkpoint at .*checkpoint.pt: start without --resume"):
        fit(TinyNet(), tiny_data(), config(), out_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(ArgumentError, match=r"resume=True needs out_dir"):
        fit(TinyNet(), tiny_data(), config(), resume=True, progress=False)


def test_interrupt_without_out_dir_says_nothing_was_saved():
    with pytest.raises(TrainingInterrupted, match=r"at epoch 1, step 3 of 16; no out_dir was given, so nothing was "
                                                  r"saved") as info:
        fit(TinyNet(signal_at_step=3), tiny_data(), config(), progress=False)
    assert info.value.signal_number == 15


def test_float64_model_trains_in_float64():
    model = TinyNet().double()
    data = tiny_data()
    with torch.no_grad():
        before = (model(torch.as_tensor(data.x_test).double()).argmax(1) == torch.as_tensor(data.y_test)).double().mean()
    result = fit(model, data, config(epochs=4), progress=False)
    assert model.body[1].weight.dtype == torch.float64
    assert result.test_accuracy > 0.8 > before  # reaches 0.875 from 0.30 (4 classes: chance is 0.25)


def test_bce_with_class_labels_and_multi_label_targets():
    data = tiny_data()
    single = fit(TinyNet(), data, config(epochs=3, loss="bce", lr=0.5), progress=False)
    assert single.test_accuracy > 0.6
    # multi-label: class c is "on" when input feature c is positive (K = 4 independent labels)
    data.y_train = (data.x_train[:, 0, :4] > 0).astype("int64")
    data.y_test = (data.x_test[:, 0, :4] > 0).astype("int64")
    multi = fit(TinyNet(), data, config(epochs=3, loss="bce", lr=0.5), progress=False)
    assert multi.test_accuracy > 0.85  # fraction of the 4 labels right, averaged over samples


def test_deterministic_mode_is_restored_after_the_run():
    assert not torch.are_deterministic_algorithms_enabled()
    fit(TinyNet(), tiny_data(), config(epochs=1, deterministic=True), progress=False)
    assert not torch.are_deterministic_algorithms_enabled()


def test_same_seed_same_run_other_seed_other_order():
    a = fit(TinyNet(), tiny_data(), config(epochs=1), progress=False)
    b = fit(TinyNet(), tiny_data(), config(epochs=1), progress=False)
    c = fit(TinyNet(), tiny_data(), config(epochs=1, seed=2), progress=False)
    assert without_seconds(a.history) == without_seconds(b.history) != without_seconds(c.history)


def test_bad_arguments_are_named():
    with pytest.raises(ArgumentError, match=r"fit\(\) needs a TrainConfig. Received: config=\{'lr': 0.1\}"):
        fit(TinyNet(), tiny_data(), {"lr": 0.1})
    with pytest.raises(ArgumentError, match=r"fit\(\) needs a torch.nn.Module. Received: model of type function"):
        fit(lambda x: x, tiny_data(), config())
    with pytest.raises(ArgumentError, match=r"ReLU has no trainable parameters; there is nothing to train"):
        fit(nn.ReLU(), tiny_data(), config())
    with pytest.raises(ArgumentError, match=r"dataset must have x_train, y_train, x_test and y_test arrays .*"
                                            r"dict lacks x_train, y_train, x_test, y_test"):
        fit(TinyNet(), {"x": 1}, config())


def test_model_that_does_not_fit_the_data():
    with pytest.raises(ShapeError, match=r"Sequential cannot take samples of shape \(1, 16\) from dataset 'tiny' "
                                         r"\(.*\); build the model for input_shape=\(1, 16\)"):
        fit(nn.Sequential(nn.Flatten(), nn.Linear(10, 4)), tiny_data(), config())
    with pytest.raises(ShapeError, match=r"Sequential outputs 3 classes but dataset 'tiny' has labels up to 3; "
                                         r"build it with num_classes=4"):
        fit(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), tiny_data(), config())
    with pytest.raises(ShapeError, match=r"Conv1d must output \(B, num_classes\) logits, got shape \(2, 4, 16\); "
                                         r"end it with a Flatten"):
        fit(nn.Conv1d(1, 4, 3, padding=1), tiny_data(), config())


@pytest.mark.parametrize("change, message", [
    (lambda d: setattr(d, "y_train", d.y_train[:-1]), r"dataset 'tiny': x_train has 256 samples but y_train has 255"),
    (lambda d: setattr(d, "x_test", d.x_test[:0]), r"dataset 'tiny': the test split is empty"),
    (lambda d: d.x_train.__setitem__((7, 0, 3), float("nan")),
     r"dataset 'tiny': x_train holds NaN/Inf in 1 sample\(s\) \(first: sample 7\); clean or impute them"),
    (lambda d: d.y_test.__setitem__(2, -1), r"dataset 'tiny': y_test holds negative labels \(min -1\)"),
    (lambda d: setattr(d, "y_train", d.y_train + 0.5), r"dataset 'tiny': y_train holds non-integer labels"),
    (lambda d: setattr(d, "x_train", d.x_train[:, 0, 0]), r"dataset 'tiny': x_train must be \(N, \*input_shape\), "
                                                          r"got shape \(256,\); add a feature dimension"),
    (lambda d: setattr(d, "y_train", d.y_train[:, None]), r"dataset 'tiny': y_train must be \(N,\) class indices"),
])
def test_bad_data_is_named(change, message):
    data = tiny_data()
    change(data)
    with pytest.raises(DataError, match=message):
        fit(TinyNet(), data, config())
