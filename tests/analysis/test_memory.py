"""Training memory: measure_memory against hand counts, the saved-for-backward estimate against the
measurement, and the model left as it was."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from layerlab.analysis import summary
from layerlab.analysis.memory import measure_memory
from layerlab.arith.counts import saved_bytes
from layerlab.errors import ArgumentError, SizeLimitError
from layerlab.zoo import build


def test_measure_counts_what_autograd_keeps_by_hand():
    # conv keeps its input x (2·1·8·8); ReLU its output (2·4·6·6), which max pooling reads (same
    # storage) and whose int64 indices it keeps (2·4·3·3 · 8 bytes); Flatten is a view of the pool
    # output (2·4·3·3), which Linear keeps; the logits are kept by nobody
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 5))
    floats = 2 * 1 * 8 * 8 + 2 * 4 * 6 * 6 + 2 * 4 * 3 * 3
    expected = floats * 4 + 2 * 4 * 3 * 3 * 8
    assert measure_memory(model, (1, 8, 8), batch_size=2) == {"device": "cpu", "saved_for_backward": expected, "peak": None}
    assert summary(model, (1, 8, 8), batch_size=2).total.memory["activations_saved"] == expected


def test_saved_bytes_counts_a_tensor_kept_twice_once():
    # Linear keeps its input, ReLU its output, the next Linear the same tensor again
    assert saved_bytes(10, [("Linear", 10, 8), ("ReLU", 8, 8), ("Linear", 8, 2)], 4) == (10 + 8) * 4
    # a tensor made between two layers (torch.cat) is new: 6 elements kept by the second Linear
    assert saved_bytes(10, [("Linear", 10, 3), ("Linear", 6, 2)], 4) == (10 + 6) * 4
    # an unknown kind keeps both its input and its output
    assert saved_bytes(10, [("MyBlock", 10, 7)], 4) == (10 + 7) * 4


@pytest.mark.parametrize("name, shape, classes", [
    ("cnn", (3, 32, 32), 10), ("lenet5", (1, 32, 32), 10), ("allconv", (3, 32, 32), 10),
    ("tf_cifar10", (3, 32, 32), 10), ("dcgan_generator", (100, 1, 1), 3), ("unet", (1, 16, 16), 2),
])
def test_estimate_is_within_two_percent_of_the_measurement(name, shape, classes):
    model = build(name, shape, classes)
    s = summary(model, shape, batch_size=4, memory="measure")
    estimate, measured = s.total.memory["activations_saved"], s.memory_measured["saved_for_backward"]
    assert abs(estimate - measured) <= 0.02 * measured, (estimate, measured)


def test_measure_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.5), nn.ReLU()).eval()
    model[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    measure_memory(model, (1, 6, 6), batch_size=3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # running stats untouched
    assert all(p.grad is None for p in model.parameters())
    assert not any(m.training for m in model.modules())
    assert not model[0].weight.requires_grad


def test_summary_measure_adds_keys_only():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    estimated = summary(model, (4,), batch_size=2).to_dict()
    measured = summary(model, (4,), batch_size=2, memory="measure").to_dict()
    assert estimated["memory_measured"] is None
    assert measured["memory_measured"] == {"device": "cpu", "saved_for_backward": 56, "peak": None}
    assert {k: v for k, v in measured.items() if k != "memory_measured"} == {
        k: v for k, v in estimated.items() if k != "memory_measured"}
    text = str(summary(model, (4,), batch_size=2, memory="measure"))
    assert "Memory measured (one forward+backward on cpu): saved for backward 56 B, estimated 56 B (+0.0%)" in text
    json.dumps(measured)


def test_measure_refuses_a_meta_model():
    with torch.device("meta"):
        model = nn.Linear(3, 2)
    with pytest.raises(ArgumentError, match=r"measure_memory: Linear has parameters on the meta device; measuring runs "
                                            r"the model for real. Build it on cpu or cuda \(on the command line: --device cpu\)"):
        summary(model, (3,), memory="measure")


def test_measure_is_size_checked_first(monkeypatch):
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "1000")
    with pytest.raises(SizeLimitError, match=r"summary\(memory='measure'\) of Sequential on input \(64, 8\) would allocate "
                                             r".*Measure at a smaller batch_size, or use memory='estimate'"):
        summary(nn.Sequential(nn.Linear(8, 8)), (8,), batch_size=64, memory="measure")


def test_cli_memory_measure_builds_on_cpu(tmp_path, capsys):
    from layerlab.cli.main import main

    path = tmp_path / "net.py"
    path.write_text("import torch.nn as nn\n\ndef build():\n    return nn.Sequential(nn.Linear(4, 3), nn.ReLU())\n")
    assert main(["summary", f"{path}:build", "--input", "4", "--batch-size", "2", "--memory", "measure", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["memory_measured"]["saved_for_backward"] == 56
