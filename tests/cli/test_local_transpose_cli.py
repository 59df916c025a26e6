"""The transposed local layer in ``layerlab shape`` (a layer string) and ``layerlab summary`` (a module)."""

from __future__ import annotations

import json

from layerlab.cli.main import main

MODEL = """
import torch.nn as nn
import layerlab

def decoder():
    return nn.Sequential(layerlab.LocallyConnectedTranspose2d(4, 2, 4, stride=2, padding=1), nn.ReLU())
"""


def test_shape_infers_in_channels_from_the_stack(capsys):
    assert main(["shape", "3x4x4", "Conv2d(4, 3, padding=1)", "LocallyConnectedTranspose2d(2, 4, stride=2, padding=1)",
                 "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert layers[1]["type"] == "LocallyConnectedTranspose2d"
    assert layers[1]["output_shape"] == [1, 2, 8, 8]
    # one 4·2·4·4 filter bank per input position (4×4) + a bias per output channel and position
    assert layers[1]["params"] == 16 * 4 * 2 * 16 + 2 * 8 * 8
    assert layers[1]["macs"] == 4 * 16 * 2 * 16  # the scatter cost of the ConvTranspose2d of the same shape


def test_shape_table_shows_the_transposed_formula(capsys):
    assert main(["shape", "4x3x3", "LocallyConnectedTranspose2d(8, 3, stride=2)"]) == 0
    out = capsys.readouterr().out
    for piece in ("LocallyConnectedTranspose2d", "8×7×7", "H: (3 − 1)·2 − 2·0 + 1·(3−1) + 0 + 1 = 7", "2,984"):
        assert piece in out, piece


def test_summary_of_a_model_with_a_lazy_transposed_local_layer(tmp_path, capsys):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    assert main(["summary", f"{path}:decoder", "--input", "4x5x5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    first = data["layers"][0]
    assert first["type"] == "LocallyConnectedTranspose2d" and first["output_shape"] == [1, 2, 10, 10]
    assert data["complete"] is True
    assert data["total"]["params"] == 25 * 2 * 4 * 16 + 2 * 100
    assert data["total"]["macs"] == 4 * 25 * 2 * 16
