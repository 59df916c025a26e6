"""``layerlab explain lowrank2d``: the low-rank local layer's dense-equivalent matrix and counts."""

from __future__ import annotations

import json

import pytest

from layerlab.cli.main import main


@pytest.mark.parametrize("argv, weights, params, name", [
    # basis 2·1·1·9, combining 2·(4 + 4), bias 2·1
    ([], 18, 18 + 16 + 2, "lowrank2d-1x6x6-c1-k3"),
    (["--rank", "3", "--no-bias"], 27, 27 + 24, "lowrank2d-1x6x6-c1-k3-nobias-r3"),
])
def test_lowrank2d_counts_and_files(tmp_path, capsys, argv, weights, params, name):
    assert main(["explain", "lowrank2d", "--input", "1x6x6", "--out-channels", "1", "--kernel", "3", *argv,
                 "--out", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    numbers = doc["numbers"]
    assert numbers["matrix_shape"] == [16, 36] and numbers["structural_nonzeros"] == 16 * 9
    assert numbers["weights"] == weights and numbers["params"] == params
    assert doc["files"] == [str(tmp_path / f"{name}.png"), str(tmp_path / f"{name}.json")]


def test_lowrank2d_bad_rank_is_a_named_error(tmp_path, capsys):
    assert main(["explain", "lowrank2d", "--input", "1x6x6", "--out-channels", "1", "--kernel", "3", "--rank", "0",
                 "--out", str(tmp_path)]) == 2
    assert "rank must be a positive integer. Received: rank=0" in capsys.readouterr().err
