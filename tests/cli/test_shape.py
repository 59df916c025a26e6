"""`layerlab shape` end to end: table, JSON, --solve, error exits; torch is never imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from layerlab.cli.main import main

DCGAN_D = [
    "Conv2d(64, 4, 2, 1, bias=False)", "LeakyReLU(0.2)",
    "Conv2d(128, 4, 2, 1, bias=False)", "BatchNorm2d()", "LeakyReLU(0.2)",
    "Conv2d(256, 4, 2, 1, bias=False)", "BatchNorm2d()", "LeakyReLU(0.2)",
    "Conv2d(512, 4, 2, 1, bias=False)", "BatchNorm2d()", "LeakyReLU(0.2)",
    "Conv2d(1, 4, 1, 0, bias=False)", "Sigmoid()",
]
VGG_LIKE = ["Conv2d(64,3,padding=1)", "MaxPool2d(2)", "Conv2d(64,3,padding=1)", "MaxPool2d(2)", "Flatten()", "Linear(10, in_features=4096)"]


def run_json(capsys, *argv: str) -> dict:
    assert main(["shape", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_table_shows_shapes_formulas_params_macs_rf(capsys):
    assert main(["shape", "3x64x64", "Conv2d(64, 4, stride=2, padding=1)", "LeakyReLU(0.2)", "Conv2d(128, 4, 2, 1)"]) == 0
    out = capsys.readouterr().out
    for piece in ("64×32×32", "128×16×16", "3,136", "131,200", "3,145,728", "H: floor((64 + 2·1 − 1·(4−1) − 1)/2) + 1 = 32",
                  "10×10", "FLOPs = 2 × MACs", "Total params: 134,336"):
        assert piece in out, piece


def test_json_dcgan_discriminator(capsys):
    data = run_json(capsys, "3x64x64", *DCGAN_D)
    assert [layer["output_shape"] for layer in data["layers"] if layer["type"] == "Conv2d"] == [
        [1, 64, 32, 32], [1, 128, 16, 16], [1, 256, 8, 8], [1, 512, 4, 4], [1, 1, 1, 1]]  # batch of 1 first
    assert data["total"]["params"] == 2_765_568  # published DCGAN discriminator, ndf = 64, BatchNorm included
    assert data["total"]["flops"] == 2 * data["total"]["macs"]
    # conv MACs = C_out·∏out·C_in·∏k: first layer 64·32·32·3·16
    assert data["layers"][0]["macs"] == 64 * 32 * 32 * 3 * 16
    assert data["layers"][-2]["receptive_field"]["size"] == [94, 94]  # 4 + 3·2 + 3·4 + 3·8 + 3·16
    assert {"input_shape", "output_shape", "layers", "total", "conventions"} <= set(data)


def test_json_output_size_first_rule_and_warnings(capsys):
    data = run_json(capsys, "1x7x7", "MaxPool2d(2)", "Flatten()", "Linear(5)")
    assert data["output_shape"] == [5]
    assert data["layers"][2]["params"] == 9 * 5 + 5
    assert any("floor drops the last 1 row(s)" in w for w in data["layers"][0]["warnings"])


def test_misfit_exits_2_with_the_explanation(capsys):
    assert main(["shape", "3x64x64", *VGG_LIKE]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "layerlab shape: error: layer 6: Linear(4096 → 10) expects 4096 input features, gets 16384: "
        "flatten gives 64·16·16 = 16384; the input is 64×64, not 32×32"
    )
    assert main(["shape", "3x32x32", *VGG_LIKE]) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["3xx64", "Conv2d(8, 3)"], "layerlab shape: error: shape '3xx64': size 2 is empty"),
        (["3x0", "Linear(3)"], "layerlab shape: error: shape '3x0': size 2 is 0; every size must be a positive integer"),
        (["3x8x8", "Conv2d(8, 3"], "layerlab shape: error: layer 1: cannot parse layer string 'Conv2d(8, 3' at column 7"),
        (["3x8x8", "ReLU()", "Conv2x(8)"], "layerlab shape: error: layer 2: unknown layer 'Conv2x' in 'Conv2x(8)'; did you mean 'Conv2d'"),
        (["3x8x8", "Conv2d(8, 9)"], "layerlab shape: error: layer 1: Conv2d"),
        (["3x8"], None),
        ([], "layerlab shape: error: give an input shape and layers, e.g. layerlab shape 3x32x32"),
        (["--solve", "32", "64"], "layerlab shape: error: --solve needs --kernel K, e.g. layerlab shape --solve 32 64 --kernel 4"),
        (["3x8", "--solve", "32", "64", "--kernel", "4"], "layerlab shape: error: --solve takes no INPUT/LAYER arguments"),
        (["3x8", "Linear(2)", "--batch-size", "0"], "layerlab shape: error: stack_summary: batch_size must be a positive integer. Received: batch_size=0"),
    ],
)
def test_bad_input_exits_2(capsys, argv, message):
    code = main(["shape", *argv])
    if message is None:  # an empty stack is fine: the input is the output
        assert code == 0
        return
    assert code == 2
    assert capsys.readouterr().err.startswith(message)


def test_solve_table_and_json(capsys):
    assert main(["shape", "--solve", "32", "64", "--kernel", "4"]) == 0
    out = capsys.readouterr().out
    assert "ConvTranspose(kernel_size=4, stride=2, padding=1)" in out and "(32 − 1)·2 − 2·1 + 1·(4−1) + 0 + 1 = 64" in out
    data = run_json(capsys, "--solve", "64", "32", "--kernel", "4", "--kind", "conv")
    assert data["solutions"][0] == {
        "transposed": False, "kernel_size": 4, "stride": 2, "padding": 1, "output_padding": 0, "dilation": 1,
        "formula": "floor((64 + 2·1 − 1·(4−1) − 1)/2) + 1 = 32", "dropped": 0,
    }


def test_solve_without_solution_exits_1(capsys):
    assert main(["shape", "--solve", "32", "64", "--kernel", "3", "--kind", "conv"]) == 1
    assert "no conv maps 32 → 64 with kernel_size=3" in capsys.readouterr().out


def test_argparse_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["shape", "--solve", "x", "2", "--kernel", "3"])
    assert exc.value.code == 2


def test_subprocess_without_torch():
    """The command works with torch made unimportable (pure arithmetic, fast start)."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from layerlab.cli.main import main\n"
        "sys.exit(main(['shape', '1x28x28', 'Conv2d(8, 3)', 'MaxPool2d(2)', 'Flatten()', 'Linear(10)', '--json']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["output_shape"] == [10]


def test_subprocess_error_exit_status():
    result = subprocess.run(
        [sys.executable, "-m", "layerlab", "shape", "3x64x64", *VGG_LIKE], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "layerlab shape: error: layer 6: Linear(4096 → 10) expects 4096 input features, gets 16384" in result.stderr


def test_json_is_for_the_batch_and_the_table_per_sample(capsys):
    stack = ["Conv2d(8, 3)", "ReLU()", "Flatten()", "Linear(10)"]
    data = run_json(capsys, "1x8x8", *stack, "--batch-size", "4", "--dtype", "float16")
    assert data["schema"] == "layerlab.summary/1" and data["batch_size"] == 4 and data["dtype"] == "float16"
    first = data["layers"][0]
    assert (first["name"], first["type"], first["index"], first["text"]) == ("0", "Conv2d", 1, "Conv2d(8, 3)")
    assert first["input_shape"] == [4, 1, 8, 8] and first["output_shape"] == [4, 8, 6, 6]
    assert first["macs"] == 4 * 8 * 36 * 9 and first["other_ops"] == {"bias_add": 4 * 8 * 36}  # C_out·∏out·C_in·∏k per sample
    assert data["output_shape"] == [10] and data["output_shapes"] == [[4, 10]]
    assert data["total"]["memory"]["params"] == data["total"]["params"] * 2  # float16
    assert main(["shape", "1x8x8", *stack, "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "│ 1 │ Conv2d(8, 3) │ 8×6×6        │     80 │ 2,592 │" in out and "(per sample)" in out


def test_field_warnings_once_where_they_first_appear(capsys):
    same = "Conv2d(2, 3, padding=1)"
    data = run_json(capsys, "1x8x8", "Conv2d(2, 5)", same, same, same)  # fields 5, 7, 9, 11 on 8×8
    assert [layer["receptive_field"]["size"] for layer in data["layers"]] == [[5, 5], [7, 7], [9, 9], [11, 11]]
    assert [layer["warnings"] for layer in data["layers"]] == [[], [], [
        "H: receptive field 9 > input 8: part of it lies in the padding",
        "W: receptive field 9 > input 8: part of it lies in the padding"], []]


def test_single_layer_training_memory_is_not_below_inference(capsys):
    # Linear(10) on 10 features: the input (40 B) is kept for backward, as is the output (40 B)
    memory = run_json(capsys, "10", "Linear(10)")["total"]["activation_memory"]
    assert (memory["inference"], memory["training"]) == (80, 80)


def test_fractional_field_is_explained_under_the_table(capsys):
    generator = ["ConvTranspose2d(512, 4, 1, 0)", "ReLU()", "ConvTranspose2d(256, 4, 2, 1)", "ConvTranspose2d(3, 4, 2, 1)", "Tanh()"]
    assert main(["shape", "100x1x1", *generator]) == 0
    out = capsys.readouterr().out
    table_end = out.index("└")
    note = out.index("RF 5.5×5.5: fractional because a transposed conv's field is measured in input pixels, "
                     "and each of its output steps is 1/stride of an input step.")
    assert table_end < note < out.index("Formulas:")
    assert out.count("fractional because") == 1
    assert main(["shape", "1x28x28", "Conv2d(8, 3)"]) == 0
    assert "fractional" not in capsys.readouterr().out


def test_torch_order_failure_shows_the_rewritten_string(capsys):
    assert main(["shape", "1x28x28", "Conv2d(1, 32, 3)"]) == 2
    err = capsys.readouterr().err
    assert "kernel_size=32" in err
    assert err.rstrip().endswith(
        "Layer strings start at the output size (the input size is inferred); if you meant torch's order "
        "(in_channels first), write 'Conv2d(32, 3, in_channels=1)'.")
    assert main(["shape", "1x28x28", "Conv2d(32, 3, in_channels=1)"]) == 0


def test_module_prefix_is_explained(capsys):
    assert main(["shape", "1x28x28", "nn.Conv2d(32, 3)"]) == 2
    err = capsys.readouterr().err
    assert "starts with the module prefix 'nn.'" in err and "it is 'Conv2d(32, 3)'" in err
    assert "got Call" not in err


def test_layer_column_wraps_between_arguments_at_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    layers = ["Conv2d(64,3,padding=1)", "Conv2d(128, 3, stride=2, padding=1, dilation=1, groups=1)",
              "ConvTranspose2d(512,4,1,0)", "Conv2d(8, 3, padding_mode='circular',padding=1)"]
    assert main(["shape", "3x224x224", *layers]) == 0
    rows = [line.split("│") for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
    pieces = [row[2].strip() for row in rows if row[2].strip()]
    assert all(len(line) <= 80 for line in ("│".join(row) for row in rows))
    # every piece ends between arguments (or is cut with "…"): a number is never split across lines
    assert all(piece.endswith((",", ")", "…")) for piece in pieces), pieces
    assert pieces[:2] == ["Conv2d(64, 3,", "padding=1)"]
