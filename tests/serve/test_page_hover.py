"""Hovering a grid cell lights exactly the cells it is connected to, checked against the window
computed independently: the non-zeros of ``layerlab.convert.dense_matrix`` of the same layer built
with torch (all weights 1, so no entry cancels).

Hover an output cell: the lit input cells are the non-zero columns of its row. Hover an input
cell: the lit output cells are the non-zero rows of its column. Max pooling has no matrix; its
window is that of a depthwise convolution with the same kernel, stride, padding and dilation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import layerlab.nn as lnn
from layerlab.convert import dense_matrix

# (input shape, layer string, the same layer built with torch); at most 4 channels, so the page
# draws every cell
CASES = {
    "conv": ("2x7x6", "Conv2d(3, 3, padding=1)", lambda: nn.Conv2d(2, 3, 3, padding=1)),
    "conv-groups": ("4x5x5", "Conv2d(2, 3, groups=2)", lambda: nn.Conv2d(4, 2, 3, groups=2)),
    "dilated": ("1x9x9", "Conv2d(2, 3, dilation=2, padding=1)", lambda: nn.Conv2d(1, 2, 3, dilation=2, padding=1)),
    "strided": ("1x9x8", "Conv2d(1, (3, 2), stride=(2, 3))", lambda: nn.Conv2d(1, 1, (3, 2), stride=(2, 3))),
    "local": ("2x6x6", "LocallyConnected2d(2, 3, stride=2, padding=1)",
              lambda: lnn.LocallyConnected2d(2, 2, 3, stride=2, padding=1, input_size=(6, 6))),
    "local-1d": ("3x10", "LocallyConnected1d(2, 4, dilation=2)",
                 lambda: lnn.LocallyConnected1d(3, 2, 4, dilation=2, input_size=10)),
    "local-transposed": ("2x3x4", "LocallyConnectedTranspose2d(2, 3, stride=2, output_padding=1)",
                         lambda: lnn.LocallyConnectedTranspose2d(2, 2, 3, stride=2, output_padding=1,
                                                                 input_size=(3, 4))),
    "low-rank": ("2x6x5", "LowRankLocallyConnected2d(2, 3, rank=2, stride=2, padding=1)",
                 lambda: lnn.LowRankLocallyConnected2d(2, 2, 3, 2, stride=2, padding=1, input_size=(6, 5))),
    "tiled": ("1x6x6", "TiledConv2d(2, 2, tile_size=2)", lambda: lnn.TiledConv2d(1, 2, 2, tile_size=2)),
    "transposed": ("1x4x4", "ConvTranspose2d(1, 3, stride=2, padding=1, output_padding=1)",
                   lambda: nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1, output_padding=1)),
    "transposed-1d": ("2x5", "ConvTranspose1d(2, 4, stride=3, dilation=2)",
                      lambda: nn.ConvTranspose1d(2, 2, 4, stride=3, dilation=2)),
    "avgpool": ("2x7x7", "AvgPool2d(3, stride=2, padding=1)", lambda: nn.AvgPool2d(3, stride=2, padding=1)),
    "maxpool": ("2x8x8", "MaxPool2d(2, stride=2, dilation=2)", lambda: nn.Conv2d(2, 2, 2, stride=2, dilation=2, groups=2)),
    "maxpool-1d": ("1x12", "MaxPool1d(3, stride=2, padding=1)", lambda: nn.Conv1d(1, 1, 3, stride=2, padding=1)),
    "dense": ("6", "Dense(4)", lambda: nn.Linear(6, 4)),
}


def _matrix(build, input_shape: tuple[int, ...]) -> np.ndarray:
    """The dense-equivalent matrix with every weight 1: non-zero exactly where a connection is."""
    layer = build()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.fill_(1.0)
    return dense_matrix(layer.eval(), input_shape).numpy()


def _pos(flat: int, shape: tuple[int, ...]) -> str:
    return ",".join(map(str, np.unravel_index(flat, shape)))


def _probes(n: int) -> list[int]:
    """The first, the middle and the last cell."""
    return sorted({0, n // 2, n - 1})


@pytest.mark.parametrize("case", CASES)
def test_hovering_a_cell_lights_exactly_its_connections(page, case):
    input_text, layer, build = CASES[case]
    input_shape = tuple(int(n) for n in input_text.split("x"))
    page.open(input_text, [layer])
    out_cells, in_cells = page.cells("out-cell"), page.cells("in-cell")
    out_shape = tuple(int(n) for n in page.text("output-shape").split("×"))
    matrix = _matrix(build, input_shape)
    assert matrix.shape == (len(out_cells), len(in_cells)), "every cell is drawn"
    for row in _probes(matrix.shape[0]):
        page.hover("out-cell", _pos(row, out_shape))
        window = {_pos(col, input_shape) for col in np.flatnonzero(matrix[row])}
        assert page.active("in-cell") == window, f"output {_pos(row, out_shape)}"
        assert not page.active("out-cell")
    for col in _probes(matrix.shape[1]):
        page.hover("in-cell", _pos(col, input_shape))
        fed = {_pos(row, out_shape) for row in np.flatnonzero(matrix[:, col])}
        assert page.active("out-cell") == fed, f"input {_pos(col, input_shape)}"
        assert not page.active("in-cell")


def test_leaving_the_grids_clears_the_lit_cells(page):
    page.open("1x6x6", ["Conv2d(1, 3)"])
    page.hover("out-cell", "0,1,1")
    assert len(page.active("in-cell")) == 9
    page.hover_away()
    assert not page.active("in-cell") and not page.active("out-cell")


def test_a_changed_layer_never_leaves_the_old_window_lit(page):
    page.open("1x6x6", ["Conv2d(1, 3)"])
    page.hover("out-cell", "0,1,1")
    assert page.active("in-cell") == {f"0,{i},{j}" for i in (1, 2, 3) for j in (1, 2, 3)}
    page.set_control("arg-kernel_size", "2")
    assert page.text("output-shape") == "1×5×5"
    # the mouse still rests on output (0,1,1): nothing is lit, or its new 2×2 window
    assert page.active("in-cell") in (set(), {f"0,{i},{j}" for i in (1, 2) for j in (1, 2)})
