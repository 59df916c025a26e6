"""`layerlab summary` end to end and the FILE.py:NAME / package.module:NAME loader (its errors pinned)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from layerlab.cli.loading import load_model, load_object, split_target
from layerlab.cli.main import main
from layerlab.errors import ArgumentError

MODEL = """
import torch.nn as nn

def build():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))

    @classmethod
    def small(cls):
        return cls()

instance = nn.Linear(4, 2)
number = 3

def needs_args(width, depth=2):
    return nn.Linear(width, width)

def returns_list():
    return [nn.Linear(2, 2)]

def raises():
    return 1 / 0

def huge():
    return nn.Linear(100_000, 100_000)  # 40 GB if built for real
"""


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    return path


def test_summary_table(model_file, capsys):
    assert main(["summary", f"{model_file}:build", "--input", "3x8x8"]) == 0
    out = capsys.readouterr().out
    for piece in ("0 (Conv2d)", "(1, 8, 6, 6)", "3 (Linear)", "2,890", "Total params: 3,114", "MACs: 10,656", "FLOPs = 2 × MACs"):
        assert piece in out, piece


def test_summary_json_class_and_depth(model_file, capsys):
    assert main(["summary", f"{model_file}:Net", "--input", "1x8x8", "--json", "--batch-size", "4", "--depth", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [layer["name"] for layer in data["layers"]] == ["features", "head"]
    assert data["total"]["params"] == (4 * 9 + 4) + 8 + (256 * 3 + 3)
    assert data["total"]["macs"] == 4 * (4 * 64 * 9 + 256 * 3)
    assert data["batch_size"] == 4 and data["complete"] is True


def test_summary_huge_model_is_built_on_meta(model_file, capsys):
    assert main(["summary", f"{model_file}:huge", "--input", "100000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["params"] == 100_000 * 100_001


def test_summary_dotted_attribute_and_cpu_device(model_file, capsys):
    assert main(["summary", f"{model_file}:Net.small", "--input", "1x8x8", "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output_shapes"] == [[1, 3]]


def test_summary_module_path(tmp_path, monkeypatch, capsys):
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(MODEL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "userpkg", raising=False)
    monkeypatch.delitem(sys.modules, "userpkg.nets", raising=False)
    assert main(["summary", "userpkg.nets:instance", "--input", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["params"] == 10


def test_summary_missing_attribute_exits_2(model_file, capsys):
    assert main(["summary", f"{model_file}:nope", "--input", "3x8x8"]) == 2
    assert capsys.readouterr().err.startswith(f"layerlab summary: error: '{model_file}' has no attribute 'nope'")


def test_summary_misfit_input_exits_2(model_file, capsys):
    assert main(["summary", f"{model_file}:Net", "--input", "1x9x9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("layerlab summary: error: Net on input (1, 1, 9, 9): module 'head' (Linear(in_features=256")
    assert "Linear(256 → 3) expects 256 input features, gets 324" in err


@pytest.mark.parametrize(
    "target, message",
    [
        ("model.py", r"model target 'model.py' has no ':NAME' part; expected FILE.py:NAME or package.module:NAME"),
        ("model.py:", r"model target 'model.py:' has an empty NAME part"),
        (":build", r"model target ':build' has an empty file/module part"),
        ("model.py:1x", r"model target 'model.py:1x': '1x' is not a \(dotted\) Python name"),
        ("missing.py:build", r"model file 'missing.py' does not exist \(looked in .*\); check the path"),
        ("model.py:buld", r"'model.py' has no attribute 'buld' \(from target 'model.py:buld'\); did you mean 'build'\? callables there: Net, build"),
        ("model.py:Net.smal", r"'Net' has no attribute 'smal' .*did you mean 'small'"),
        ("model.py:number", r"'model.py:number' is a int, not an nn.Module, a class or a function; point to a function"),
        ("model.py:needs_args", r"'model.py:needs_args' needs argument\(s\) width, but layerlab calls it with none"),
        ("model.py:returns_list", r"model.py:returns_list\(\) returned list, expected a torch.nn.Module; return the model itself"),
        ("model.py:raises", r"calling model.py:raises\(\) raised ZeroDivisionError: division by zero \(line \d+: return 1 / 0\); fix the builder"),
        ("no_such_pkg_xyz.models:build", r"model module 'no_such_pkg_xyz.models' not found \(no module named 'no_such_pkg_xyz'\); install"),
    ],
)
def test_loader_errors(model_file, monkeypatch, target, message):
    monkeypatch.chdir(model_file.parent)
    with pytest.raises(ArgumentError, match=message):
        load_model(target)


def test_loader_import_errors(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\nx = 1\nraise RuntimeError('boom')\n")
    with pytest.raises(ArgumentError, match=r"importing model file '.*broken.py' raised RuntimeError: boom \(line 3: raise RuntimeError\('boom'\)\); fix the file"):
        load_object(f"{broken}:x")
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def build(:\n    pass\n")
    with pytest.raises(ArgumentError, match=r"model file '.*syntax.py' has a syntax error at line 1: .*; fix the file"):
        load_object(f"{syntax}:build")
    exits = tmp_path / "exits.py"
    exits.write_text("import sys\nsys.exit(3)\n")
    with pytest.raises(ArgumentError, match=r"importing model file '.*exits.py' raised SystemExit: 3"):
        load_object(f"{exits}:build")
    missing_dep = tmp_path / "dep.py"
    missing_dep.write_text("import no_such_module_abc\n")
    with pytest.raises(ArgumentError, match=r"raised ModuleNotFoundError: No module named 'no_such_module_abc'"):
        load_object(f"{missing_dep}:build")
    with pytest.raises(ArgumentError, match=r"model file '.*' is not a file; give a .py file"):
        load_object(f"{tmp_path}/:build")


def test_loader_runs_file_as_module_not_main(tmp_path):
    path = tmp_path / "guarded.py"
    path.write_text(textwrap.dedent("""
        import torch.nn as nn
        import sibling
        model = nn.Linear(sibling.WIDTH, 1)
        if __name__ == "__main__":
            raise SystemExit("must not run")
    """))
    (tmp_path / "sibling.py").write_text("WIDTH = 5\n")
    assert load_model(f"{path}:model").in_features == 5  # sibling modules import; __main__ block skipped
    assert str(tmp_path) not in sys.path  # the folder was only on sys.path during the import
    assert split_target("C:\\nets\\m.py:build") == ("C:\\nets\\m.py", "build")


def test_loader_meta_hint(tmp_path, capsys):
    path = tmp_path / "item.py"
    path.write_text("import torch, torch.nn as nn\ndef build():\n    n = int(torch.ones(1).sum().item())\n    return nn.Linear(n, 1)\n")
    assert main(["summary", f"{path}:build", "--input", "1"]) == 2
    assert "add --device cpu" in capsys.readouterr().err
    assert main(["summary", f"{path}:build", "--input", "1", "--device", "cpu"]) == 0


def test_subprocess_summary_and_error(model_file):
    ok = subprocess.run([sys.executable, "-m", "layerlab", "summary", f"{model_file}:build", "--input", "3x8x8", "--json"],
                        capture_output=True, text=True, timeout=180)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["total"]["params"] == 3_114
    bad = subprocess.run([sys.executable, "-m", "layerlab", "summary", f"{model_file}:build", "--input", "3x-8"],
                         capture_output=True, text=True, timeout=180)
    assert bad.returncode == 2
    assert bad.stderr.startswith("layerlab summary: error: shape '3x-8': size 2 is -8; every size must be a positive integer")


STACKS = {  # layer strings for `layerlab shape`, and the same layers as torch modules for `layerlab summary`
    "cnn": (["Conv2d(4, 3, padding=1)", "ReLU()", "MaxPool2d(2)", "Conv2d(8, 3, stride=2, padding=1)", "Tanh()",
             "AvgPool2d(2)", "Conv2d(16, 3, padding=2, dilation=2)", "Flatten()", "Linear(10)", "Softmax(dim=1)"],
            "nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, stride=2, padding=1), "
            "nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(8, 16, 3, padding=2, dilation=2), nn.Flatten(), "
            "nn.Linear(16 * 2 * 2, 10), nn.Softmax(dim=1)"),
    "norms": (["Conv1d(6, 5)", "BatchNorm1d()", "GELU()", "ConvTranspose1d(3, 4, stride=2, padding=1)",
               "GroupNorm(3)", "Upsample(scale_factor=2)", "Dropout(0.5)", "AdaptiveMaxPool1d(4)"],
              "nn.Conv1d(2, 6, 5), nn.BatchNorm1d(6), nn.GELU(), nn.ConvTranspose1d(6, 3, 4, stride=2, padding=1), "
              "nn.GroupNorm(3, 3), nn.Upsample(scale_factor=2), nn.Dropout(0.5), nn.AdaptiveMaxPool1d(4)"),
}
INPUTS = {"cnn": "3x16x16", "norms": "2x12"}


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_shape_and_summary_give_the_same_records_and_totals(stack, tmp_path, capsys):
    layers, modules = STACKS[stack]
    (tmp_path / "stack.py").write_text(f"import torch.nn as nn\n\ndef build():\n    return nn.Sequential({modules})\n")
    assert main(["shape", INPUTS[stack], *layers, "--batch-size", "3", "--json"]) == 0
    shape = json.loads(capsys.readouterr().out)
    assert main(["summary", f"{tmp_path / 'stack.py'}:build", "--input", INPUTS[stack], "--batch-size", "3", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(shape["layers"]) == len(summary["layers"]) == len(layers)
    for ours, theirs in zip(shape["layers"], summary["layers"]):
        assert set(ours) - set(theirs) == {"index", "text", "layer"}  # shape's own keys, kept
        assert {key: ours[key] for key in theirs} == theirs
    assert shape["layers"][1]["name"] == "1" and shape["layers"][1]["input_shape"][0] == 3
    shape_total, summary_total = shape.pop("total"), summary.pop("total")
    assert shape_total.pop("activation_memory") == {
        "inference": summary_total["memory"]["activations_inference"],
        "training": summary_total["memory"]["activations_training"], "dtype": "float32", "batch_size": 3}
    if stack == "norms":  # torch keeps BatchNorm's num_batches_tracked as int64, shape counts 4 bytes
        for key in ("buffers", "total"):
            assert summary_total["memory"][key] - shape_total["memory"][key] == 4
            shape_total["memory"][key] = summary_total["memory"][key]
    assert shape_total == summary_total
    assert {key: shape[key] for key in summary if key != "layers"} == {key: summary[key] for key in summary if key != "layers"}
