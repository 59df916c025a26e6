"""Runs that go wrong: NaN/Inf loss, exploding learning rate, a full disk, bad checkpoint files."""

from __future__ import annotations

import errno
import io
import math
import os
import pickle

import pytest
import torch

from layerlab.errors import TrainingError
from layerlab.train import checkpoint as checkpoint_module
from layerlab.train import fit
from layerlab.train.checkpoint import load_checkpoint, save_checkpoint
from train_worker import TinyNet, config, tiny_data


def test_nan_loss_stops_before_the_step_and_keeps_the_last_checkpoint(tmp_path):
    model = TinyNet(nan_at_step=16 + 3)  # epoch 2, step 3 = global step 18 (0-based) of 48
    lr = 0.05 * 0.5 * (1 + math.cos(math.pi * 18 / 48))
    with pytest.raises(TrainingError, match=rf"loss became nan at epoch 2, step 3 \(lr={lr:.3g}\): lower the learning "
                                            r"rate, check the input for NaNs, or enable gradient clipping \(grad_clip / "
                                            r"--grad-clip\); last good checkpoint: .*checkpoint.pt \(the end of epoch 1\)"):
        fit(model, tiny_data(), config(), out_dir=tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1 and state["step_in_epoch"] == 0
    # the weights after the guard are those after step 2 of epoch 2: finite (the NaN step never ran backward)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_huge_learning_rate_is_caught():
    with pytest.raises(TrainingError, match=r"loss became (nan|inf) at epoch 1, step \d+ \(lr=1e\+10\): lower the "
                                            r"learning rate.*; no out_dir, so no checkpoint"):
        fit(TinyNet(), tiny_data(), config(lr=1e10, schedule="none"), progress=False)


def test_weights_that_blow_up_on_the_last_step_are_never_checkpointed(tmp_path, monkeypatch):
    """A finite loss can still leave inf weights after the step; the epoch-end check refuses to save them."""
    model = TinyNet()
    original_step = torch.optim.SGD.step

    def poisoned_step(self, *args, **kwargs):
        result = original_step(self, *args, **kwargs)
        if model.calls == 16 * 2:  # last step of epoch 2
            with torch.no_grad():
                model.body[3].bias.fill_(float("inf"))
        return result

    monkeypatch.setattr(torch.optim.SGD, "step", poisoned_step)
    with pytest.raises(TrainingError, match=r"weights or test loss became non-finite at the end of epoch 2 \(test loss "
                                            r"nan\).*last good checkpoint: .*checkpoint.pt \(the end of epoch 1\)"):
        fit(model, tiny_data(), config(), out_dir=tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1


def test_disk_full_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    out = tmp_path / "run"
    seen = {"writes": 0, "previous": None}
    real_write = checkpoint_module._write

    def full_disk_on_second_checkpoint(file, data):
        seen["writes"] += 1
        if seen["writes"] == 2:
            seen["previous"] = (out / "checkpoint.pt").read_bytes()
            file.write(data[: len(data) // 2])  # half the bytes land, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(file, data)

    monkeypatch.setattr(checkpoint_module, "_write", full_disk_on_second_checkpoint)
    with pytest.raises(TrainingError, match=r"could not write checkpoint .*checkpoint.pt: No space left on device "
                                            r"\(\d+ bytes\); the previous checkpoint .* is intact; free disk space, "
                                            r"then continue with --resume"):
        fit(TinyNet(), tiny_data(), config(epochs=3), out_dir=out, progress=False)
    # no temporary file left behind, the epoch-1 checkpoint byte-for-byte as it was
    assert sorted(p.name for p in out.iterdir()) == [".layerlab.lock", "checkpoint.pt", "config.json", "metrics.csv",
                                                     "metrics.json"]
    assert (out / "checkpoint.pt").read_bytes() == seen["previous"]
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    # and the run continues from it, exactly, once the disk has room again
    monkeypatch.setattr(checkpoint_module, "_write", real_write)
    resumed, straight = TinyNet(), TinyNet()
    fit(resumed, tiny_data(), config(epochs=3), out_dir=out, resume=True, progress=False)
    fit(straight, tiny_data(), config(epochs=3), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), straight.parameters()))


def test_first_checkpoint_write_failing_says_none_exists(tmp_path, monkeypatch):
    def no_permission(file, data):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(checkpoint_module, "_write", no_permission)
    with pytest.raises(TrainingError, match=r"could not write checkpoint .*: Permission denied \(\d+ bytes\); no "
                                            r"previous checkpoint exists; check the folder"):
        save_checkpoint({"x": torch.ones(2)}, tmp_path / "checkpoint.pt")
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too


def test_checkpoint_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(6.0).view(2, 3)}, "epoch": 3, "history": [{"a": 1.5}], "rng": (1, 2)}
    save_checkpoint(state, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert loaded["epoch"] == 3 and loaded["history"] == [{"a": 1.5}]


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    buffer = io.BytesIO()
    torch.save({"format": "layerlab-checkpoint", "version": 1, "payload": _RunsCode()}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(TrainingError, match=r"checkpoint .*checkpoint.pt is unreadable \(UnpicklingError: .*only "
                                            r"tensors and plain containers are loaded"):
        load_checkpoint(path)


@pytest.mark.parametrize("content, message", [
    (b"", r"is unreadable"),
    (b"not a zip file at all", r"is unreadable"),
    (None, r"is not a layerlab checkpoint \(expected a dict with format='layerlab-checkpoint'\)"),
])
def test_corrupt_or_foreign_checkpoints(tmp_path, content, message):
    path = tmp_path / "checkpoint.pt"
    if content is None:
        torch.save({"weights": torch.ones(2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(TrainingError, match=message):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"model": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(TrainingError, match=r"is unreadable .*truncated, corrupt or not a layerlab checkpoint"):
        load_checkpoint(path)


def test_newer_checkpoint_version(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "layerlab-checkpoint", "version": 99}, path)
    with pytest.raises(TrainingError, match=r"has version 99, this layerlab reads version 1"):
        load_checkpoint(path)


def test_pickle_module_is_not_used_for_loading(tmp_path, monkeypatch):
    """weights_only=True loads through torch's restricted unpickler, never pickle.load."""
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"x": torch.ones(1)}, path)
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("full unpickle"))
    assert load_checkpoint(path)["x"].item() == 1.0
