"""``layerlab explain`` end to end into tmp_path: files written, tables and JSON numbers right,
bad input reported as a named error with exit status 2."""

from __future__ import annotations

import argparse
import json
import pathlib
import textwrap

import matplotlib.image
import pytest

from layerlab.cli.explain import MAX_NAME, PADDING_DEFAULT, picture_name
from layerlab.cli.main import build_parser, main


def _json(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _png(path):
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    return image


def test_conv2d_table_png_svg_and_record(tmp_path, capsys):
    out = tmp_path / "explain"
    assert main(["explain", "conv2d", "--input", "1x6x6", "--out-channels", "1", "--kernel", "3", "--out", str(out), "--svg"]) == 0
    table = capsys.readouterr().out
    assert "matrix_shape" in table and "[16, 36]" in table and "distinct_colours" in table
    name = "conv2d-1x6x6-c1-k3"
    assert sorted(p.name for p in out.iterdir()) == [f"{name}.json", f"{name}.png", f"{name}.svg"]
    assert f"wrote {out / name}.png" in table
    _png(out / f"{name}.png")
    record = json.loads((out / f"{name}.json").read_text())
    assert record["arguments"]["kernel"] == "3" and record["numbers"]["weights"] == 9
    numbers = record["numbers"]
    assert numbers["structural_nonzeros"] == 16 * 9 and numbers["distinct_colours"] == 9
    assert numbers["density"] == pytest.approx(9 / 36)


@pytest.mark.parametrize("argv, matrix, weights, nonzeros, name", [
    (["local2d", "--input", "1x6x6", "--out-channels", "1", "--kernel", "3"], [16, 36], 144, 144, "local2d-1x6x6-c1-k3"),
    (["local2d", "--input", "2x5x5", "--out-channels", "2", "--kernel", "3", "--padding", "1", "--stride", "2"],
     [18, 50], 9 * 2 * 9 * 2, None, "local2d-2x5x5-c2-k3-s2-p1"),
    (["dense", "--input", "9", "--out-features", "4"], [4, 9], 36, 36, "dense-9-f4"),
    (["dense", "--input", "1x3x3", "--out-features", "4", "--no-bias"], [4, 9], 36, 36, "dense-1x3x3-f4-nobias"),
    (["convtranspose2d", "--input", "1x3x3", "--out-channels", "1", "--kernel", "3", "--stride", "2"], [49, 9], 9, 81,
     "convtranspose2d-1x3x3-c1-k3-s2"),
    # the same scatter, a different weight at each of the 9 input positions: 81 weights, none tied
    (["localtranspose2d", "--input", "1x3x3", "--out-channels", "1", "--kernel", "3", "--stride", "2"], [49, 9], 81, 81,
     "localtranspose2d-1x3x3-c1-k3-s2"),
    (["localtranspose2d", "--input", "2x3x3", "--out-channels", "2", "--kernel", "3", "--stride", "2", "--padding", "1",
      "--output-padding", "1"], [72, 18], 9 * 2 * 2 * 9, None, "localtranspose2d-2x3x3-c2-k3-s2-p1-op1"),
    (["conv2d", "--input", "4x5x5", "--out-channels", "4", "--kernel", "3", "--groups", "2", "--padding", "same",
      "--dilation", "1x2"], [100, 100], 72, None, "conv2d-4x5x5-c4-k3-psame-d1x2-g2"),
])
def test_layer_commands_json(tmp_path, capsys, argv, matrix, weights, nonzeros, name):
    doc = _json(capsys, ["explain", *argv, "--out", str(tmp_path)])
    numbers = doc["numbers"]
    assert numbers["matrix_shape"] == matrix and numbers["weights"] == weights
    if nonzeros is not None:
        assert numbers["structural_nonzeros"] == nonzeros
    assert doc["files"] == [str(tmp_path / f"{name}.png"), str(tmp_path / f"{name}.json")] and doc["replaced"] == []
    _png(tmp_path / f"{name}.png")


def test_family_gives_the_three_weight_counts(tmp_path, capsys):
    doc = _json(capsys, ["explain", "family", "--input", "3x32x32", "--out-channels", "32", "--kernel", "3",
                         "--padding", "same", "--out", str(tmp_path), "--max-pixels", "96"])
    numbers = doc["numbers"]
    assert numbers["weights"] == {"conv": 864, "local": 884_736, "dense": 100_663_296}
    assert numbers["matrix_shape"] == [32768, 3072] and numbers["output_shape"] == [32, 32, 32]
    assert [p["mode"] for p in numbers["pictures"]] == ["aggregate"] * 3 + ["crop"] * 3
    assert numbers["pictures"][0]["caption"].startswith("aggregated: each pixel = 342×32 entries")
    _png(tmp_path / "family-3x32x32-c32-k3-psame-px96.png")


def test_coverage_checkerboard_and_uniform(tmp_path, capsys):
    k3 = _json(capsys, ["explain", "coverage", "--kernel", "3", "--stride", "2", "--out", str(tmp_path)])["numbers"]
    k4 = _json(capsys, ["explain", "coverage", "--kernel", "4", "--stride", "2", "--padding", "1", "--input", "16",
                        "--out", str(tmp_path)])["numbers"]
    assert (k3["interior_min"], k3["interior_max"], k3["uniform_interior"]) == (1, 4, False)
    assert k3["output_size"] == [17, 17]
    assert (k4["interior_min"], k4["interior_max"], k4["uniform_interior"]) == (2, 2, True)  # 1-d: 2 taps
    assert k4["output_size"] == [32]
    _png(tmp_path / "coverage-k3-s2.png")
    _png(tmp_path / "coverage-16-k4-s2-p1.png")


MODEL = """
import torch.nn as nn

def build():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3),
                         nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))

def local():
    from layerlab.nn import LocallyConnected2d
    return nn.Sequential(LocallyConnected2d(1, 2, 3, input_size=(6, 6)))
"""


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(MODEL))
    return path


def test_rf_of_a_model_file(tmp_path, capsys, model_file):
    doc = _json(capsys, ["explain", "rf", f"{model_file}:build", "--input", "1x28x28", "--layer", "3",
                         "--output-index", "0,6,6", "--out", str(tmp_path)])
    numbers = doc["numbers"]
    assert numbers["output_shape"] == [8, 12, 12] and numbers["field_size"] == [8, 8]
    assert numbers["formula"]["size"] == [8, 8] and numbers["formula"]["jump"] == [2, 2]
    assert numbers["field_extent"] == [[11, 18], [11, 18]] and numbers["field_cells"] == 64
    whole = _json(capsys, ["explain", "rf", f"{model_file}:build", "--input", "1x28x28", "--out", str(tmp_path)])
    assert whole["numbers"]["field_cells"] == 28 * 28 and whole["numbers"]["formula"]["global"] is True
    _png(tmp_path / "rf-model.build-1x28x28.png")
    _png(tmp_path / "rf-model.build-1x28x28-layer3-out0_6_6.png")


def test_filters_of_a_model_file(tmp_path, capsys, model_file):
    doc = _json(capsys, ["explain", "filters", f"{model_file}:build", "--layer", "3", "--out", str(tmp_path)])
    assert (doc["numbers"]["rows"], doc["numbers"]["cols"], doc["numbers"]["tile"]) == (8, 4, [3, 3])
    doc = _json(capsys, ["explain", "filters", f"{model_file}:local", "--layer", "0", "--channel", "1",
                         "--out", str(tmp_path)])
    assert (doc["numbers"]["rows"], doc["numbers"]["cols"]) == (4, 4) and "output channel 1" in doc["numbers"]["caption"]
    _png(tmp_path / "filters-model.build-layer3.png")
    _png(tmp_path / "filters-model.local-layer0-ch1.png")


@pytest.mark.parametrize("argv, message", [
    (["conv2d", "--input", "1x6x6", "--out-channels", "1", "--kernel", "3x"],
     "--kernel must be an integer or 2 integers joined by 'x'. Received: --kernel '3x'"),
    (["conv2d", "--input", "1x6", "--out-channels", "1", "--kernel", "3"],
     "--input must be a C×H×W shape with 2 spatial sizes for this command. Received: --input '1x6'"),
    (["conv2d", "--input", "1x2x2", "--out-channels", "1", "--kernel", "3"], "too small"),
    (["rf", "nowhere.py:build", "--input", "1x8x8"], "nowhere.py"),
    (["rf", "MODEL:build", "--input", "1x8x8", "--output-index", "a,b"],
     "--output-index must be integers separated by commas, e.g. 0,3,3. Received: --output-index 'a,b'"),
    (["filters", "MODEL:build", "--layer", "head"],
     "explain filters: the model has no layer named 'head'. Received: --layer 'head'; layers: 0, 1, 2"),
    (["filters", "MODEL:build", "--layer", "1"], "filters: expected a Conv*d, LocallyConnected*d or TiledConv*d layer"),
    (["coverage", "--kernel", "3", "--stride", "0"], "coverage: stride must be positive integers. Received: stride=(0, 0)"),
    (["conv2d", "--input", "1x6x6", "--out-channels", "1", "--kernel", "3x3x3"],
     "explain: --kernel must be an int or a tuple of 2 ints. Received: --kernel=(3, 3, 3)"),
])
def test_bad_input_exits_2_with_a_named_error(tmp_path, capsys, model_file, argv, message):
    argv = [str(model_file) + a[5:] if a.startswith("MODEL:") else a for a in argv]
    assert main(["explain", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("layerlab explain: error: ") and message in err


def test_huge_layer_is_refused_before_allocating(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "1MiB")
    argv = ["explain", "conv2d", "--input", "64x64x64", "--out-channels", "64", "--kernel", "3", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "would allocate" in err and "over the limit of 1.0 MiB; nothing was allocated" in err
    assert not (tmp_path / "conv2d.png").exists()
    argv = ["explain", "dense", "--input", "3x1024x1024", "--out-features", "100000", "--out", str(tmp_path)]
    assert main(argv) == 2  # 314,572,800,000 weights: refused before the layer is built
    err = capsys.readouterr().err
    assert "explain dense: building Dense(100000, in_features=3145728, bias=True) would allocate 314,572,900,000 " \
           "elements" in err and "Use a smaller layer" in err


def _explain_parsers():
    """``{name: parser}`` of every ``explain`` subcommand, the hidden old names included."""
    explain = build_parser("explain")._subparsers._group_actions[0].choices["explain"]
    return explain._subparsers._group_actions[0].choices


@pytest.mark.parametrize("what", ["conv2d", "local2d", "convtranspose2d", "localtranspose2d", "family", "coverage"])
def test_padding_defaults_to_torchs_zero_in_every_command(what):
    parser = _explain_parsers()[what]
    assert parser.get_default("padding") == PADDING_DEFAULT == "0"
    assert "(default: 0)" in next(a.help for a in parser._actions if a.dest == "padding")


def test_family_without_padding_is_the_valid_layer(tmp_path, capsys):
    numbers = _json(capsys, ["explain", "family", "--input", "1x6x6", "--out-channels", "1", "--kernel", "3",
                             "--out", str(tmp_path)])["numbers"]
    assert numbers["output_shape"] == [1, 4, 4] and numbers["matrix_shape"] == [16, 36]
    assert numbers["weights"] == {"conv": 9, "local": 144, "dense": 576}


def test_every_input_option_is_called_input():
    parsers = _explain_parsers()
    for what, parser in parsers.items():
        shown = {o for a in parser._actions if a.help != argparse.SUPPRESS for o in a.option_strings}
        assert "--in" not in shown, what
        if what not in ("rf", "filters"):  # their --input is optional there
            assert "--input" in shown, what
    assert "--input" in {o for a in build_parser("summary")._subparsers._group_actions[0].choices["summary"]._actions
                         for o in a.option_strings}


def test_old_spellings_work_hidden_for_one_release(tmp_path, capsys):
    old = ["explain", "compare", "--in", "1x6x6", "--out-channels", "1", "--kernel", "3", "--out", str(tmp_path / "old")]
    new = ["explain", "family", "--input", "1x6x6", "--out-channels", "1", "--kernel", "3", "--out", str(tmp_path / "new")]
    assert main(old + ["--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "layerlab explain: note: --in is now called --input; --in will be removed in the next release\n"
        "layerlab explain: note: explain compare is now called explain family; explain compare will be removed in "
        "the next release\n")
    was = json.loads(captured.out)
    now = _json(capsys, new)
    assert was["command"] == now["command"] == "explain family" and was["numbers"] == now["numbers"]
    assert (tmp_path / "old" / "family-1x6x6-c1-k3.png").is_file()
    assert main(["explain", "coverage", "--kernel", "3", "--stride", "2", "--in", "5", "--out", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["numbers"]["output_size"] == [11]
    explain = build_parser("explain")._subparsers._group_actions[0].choices["explain"]
    listing = explain.format_help()
    assert "family" in listing and "compare" not in listing
    for what, parser in _explain_parsers().items():
        assert "--in " not in parser.format_help() and "--in," not in parser.format_help(), what


def test_missing_or_doubled_input_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["explain", "conv2d", "--out-channels", "1", "--kernel", "3", "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "error: one of the arguments --input is required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["explain", "conv2d", "--in", "1x6x6", "--input", "1x6x6", "--out-channels", "1", "--kernel", "3"])
    assert exit_.value.code == 2 and "error: argument --input: not allowed with argument --in" in capsys.readouterr().err


def test_pictures_of_different_commands_never_overwrite_each_other(tmp_path, capsys):
    runs = [["conv2d", "--input", "1x6x6", "--out-channels", "1", "--kernel", "3"],
            ["conv2d", "--input", "1x6x6", "--out-channels", "1", "--kernel", "5"],
            ["conv2d", "--input", "1x6x6", "--out-channels", "1", "--kernel", "3", "--seed", "1"],
            ["conv2d", "--input", "1x6x6", "--out-channels", "1", "--kernel", "3", "--padding", "1"],
            ["local2d", "--input", "1x6x6", "--out-channels", "1", "--kernel", "3"],
            ["family", "--input", "1x6x6", "--out-channels", "1", "--kernel", "3"]]
    files = [_json(capsys, ["explain", *argv, "--out", str(tmp_path)])["files"][0] for argv in runs]
    assert [pathlib.Path(f).name for f in files] == [
        "conv2d-1x6x6-c1-k3.png", "conv2d-1x6x6-c1-k5.png", "conv2d-1x6x6-c1-k3-seed1.png",
        "conv2d-1x6x6-c1-k3-p1.png", "local2d-1x6x6-c1-k3.png", "family-1x6x6-c1-k3.png"]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(pathlib.Path(f).name for f in files)


def test_the_same_command_again_says_it_replaced_its_files(tmp_path, capsys):
    argv = ["explain", "coverage", "--kernel", "3", "--stride", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert f"wrote {tmp_path}/coverage-k3-s2.png" in capsys.readouterr().out
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert f"replaced {tmp_path}/coverage-k3-s2.png" in table and f"replaced {tmp_path}/coverage-k3-s2.json" in table
    assert "wrote" not in table
    doc = _json(capsys, argv + ["--svg"])
    assert doc["replaced"] == [f"{tmp_path}/coverage-k3-s2.png", f"{tmp_path}/coverage-k3-s2.json"]
    assert doc["files"][1] == f"{tmp_path}/coverage-k3-s2.svg"


def test_a_long_name_is_cut_and_stays_distinct(tmp_path, capsys, model_file):
    layer = "x" * 200
    names = []
    for channel in ("1", "2"):
        args = _explain_parsers()["filters"].parse_args([f"{model_file}:build", "--layer", layer, "--channel", channel])
        args.what = "filters"
        names.append(picture_name(args))
    assert all(len(n) == MAX_NAME and n.startswith("filters-model.build-layerxxx") for n in names)
    assert names[0] != names[1]
