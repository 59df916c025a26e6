"""The four output formats show the same numbers; columns, aliases and depth folding."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import torch
from torch import nn

from layerlab.analysis import summary
from layerlab.analysis.formats import COLUMNS, parse_columns
from layerlab.cli.main import main
from layerlab.errors import ArgumentError


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x):
        return torch.relu(self.norm(self.conv(x))) + x


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU())
        self.blocks = nn.Sequential(Block(), Block())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


NUMBERS = ("params", "trainable", "buffers", "macs", "flops")


def _number(cell: str) -> int | None:
    cell = cell.strip().strip("*").replace(",", "")
    return None if cell in ("", "?") else int(cell)


def _from_table(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("│").split("│")] for line in text.splitlines() if line.startswith("│")]


def _from_markdown(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| Layer")]


def test_every_format_shows_the_same_numbers():
    s = summary(Net(), (3, 16, 16), batch_size=2)
    columns = ",".join(NUMBERS)
    expected = [[row.params, row.trainable_params, row.buffers, row.macs, None if row.macs is None else 2 * row.macs]
                for row in s.layers]
    total = [s.total.params, s.total.trainable_params, s.total.buffers, s.total.macs, s.total.flops]
    # table (rows only; its totals are in the footer), markdown and csv (rows + a total line)
    table = [[_number(c) for c in cells[1:]] for cells in _from_table(s.render("table", columns))]
    markdown = [[_number(c) for c in cells[1:]] for cells in _from_markdown(s.render("markdown", columns))]
    lines = list(csv.reader(io.StringIO(s.render("csv", columns))))
    assert lines[0] == ["name", "type", *NUMBERS]
    sheet = [[_number(c) for c in cells[2:]] for cells in lines[1:]]
    document = json.loads(s.render("json", columns))
    from_json = [[r["params"], r["trainable_params"], r["buffers"], r["macs"], r["flops"]] for r in document["layers"]]
    json_total = [document["total"][k] for k in ("params", "trainable_params", "buffers", "macs", "flops")]
    assert table == from_json == expected
    assert markdown == sheet == [*expected, total]
    assert json_total == total
    footer = s.render("table")
    assert f"Total params: {s.total.params:,}" in footer and f"MACs: {s.total.macs:,}" in footer
    assert f"Total params: {s.total.params:,}" in s.render("markdown")


def test_every_column_renders_in_every_text_format():
    s = summary(Net(), (3, 16, 16))
    columns = ",".join(COLUMNS)
    header = next(csv.reader(io.StringIO(s.to_csv(columns))))
    assert header == ["name", "type", *COLUMNS]
    first = next(line for line in s.to_markdown(columns).splitlines() if line.startswith("| stem.0"))
    assert first == "| stem.0 (Conv2d) | (1, 3, 16, 16) | (1, 4, 8, 8) | 112 | 112 | 0 | 6,912 | 13,824 | 3×3 | 2×2 | 0×0 | yes |"
    assert "stem.0,Conv2d,1x3x16x16,1x4x8x8,112,112,0,6912,13824,3x3,2x2,0x0,yes" in s.to_csv(columns)


def test_columns_aliases_and_order():
    assert parse_columns(None) == ("input", "output", "params", "macs", "rf")
    assert parse_columns("shape,num_params,mult_adds,params") == ("input", "output", "params", "macs")
    assert parse_columns(["output_size", "rf"]) == ("output", "rf")


@pytest.mark.parametrize("columns, message", [
    ("shape,weights", r"summary columns: unknown column 'weights'; choose from input, output, params, .*"
                      r"Received: columns='shape,weights'"),
    ([], r"summary columns: name at least one column, e.g. 'shape,params,macs'. Received: columns=\[\]"),
])
def test_columns_errors(columns, message):
    with pytest.raises(ArgumentError, match=message):
        parse_columns(columns)


def test_render_refuses_an_unknown_format_and_column():
    s = summary(nn.Sequential(nn.Linear(3, 2)), (3,))
    with pytest.raises(ArgumentError, match=r"summary: format must be one of table, json, markdown, csv. Received: format='yaml'"):
        s.render("yaml")
    with pytest.raises(ArgumentError, match=r"unknown column 'weights'"):
        s.render("json", "weights")


@pytest.mark.parametrize("depth", [0, 1, 2, None])
def test_depth_folds_rows_and_keeps_totals(depth):
    full = summary(Net(), (3, 16, 16))
    s = summary(Net(), (3, 16, 16), depth=depth)
    assert s.total == full.total
    assert sum(r.params for r in s.layers) == full.total.params
    assert sum(r.macs for r in s.layers) == full.total.macs
    assert all(r.depth <= (depth if depth is not None else 99) for r in s.layers)


def test_depth_zero_is_one_row_for_the_model():
    s = summary(Net(), (3, 16, 16), depth=0)
    [row] = s.layers
    assert (row.name, row.type, row.depth) == ("Net", "Net", 0)
    assert (row.input_shape, row.output_shape) == ((1, 3, 16, 16), (1, 5))
    assert row.params == s.total.params and row.receptive_field["global"] is True


def test_depth_two_folds_the_blocks():
    s = summary(Net(), (3, 16, 16), depth=2)
    names = [row.name for row in s.layers]
    assert names == ["stem.0", "stem.1", "blocks.0", "blocks.1", "head.0", "head.1", "head.2"]
    block = s.layers[2]
    assert block.type == "Block" and block.params == 4 * 4 * 9 + 4 + 8 and block.buffers == 9


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text("import torch.nn as nn\n\ndef build():\n    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), "
                    "nn.Flatten(), nn.Linear(72, 3))\n")
    return path


def test_cli_formats_and_json_alias(model_file, capsys):
    target = f"{model_file}:build"
    assert main(["summary", target, "--input", "1x8x8", "--json"]) == 0
    alias = capsys.readouterr().out
    assert main(["summary", target, "--input", "1x8x8", "--format", "json"]) == 0
    assert capsys.readouterr().out == alias
    assert main(["summary", target, "--input", "1x8x8", "--format", "csv", "--columns", "shape,params"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["name,type,input,output,params", "0,Conv2d,1x1x8x8,1x2x6x6,20"]
    assert main(["summary", target, "--input", "1x8x8", "--format", "markdown", "--depth", "0"]) == 0
    assert "| Sequential (Sequential) | (1, 1, 8, 8) | (1, 3) | 239 | 864 | global |" in capsys.readouterr().out
    assert main(["summary", target, "--input", "1x8x8", "--columns", "rf,params"]) == 0
    assert re.search(r"Layer \(type\)\s+┃\s+RF ┃\s+Params ┃", capsys.readouterr().out)


def test_cli_bad_column_exits_2(model_file, capsys):
    assert main(["summary", f"{model_file}:build", "--input", "1x8x8", "--columns", "weights"]) == 2
    assert "unknown column 'weights'" in capsys.readouterr().err
