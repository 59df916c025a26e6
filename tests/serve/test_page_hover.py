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


def _hover_map(page, testid: str, cols: int, i: int, j: int) -> None:
    """Move the real mouse onto position ``(0, i, j)`` of a one-channel canvas map ``cols`` cells
    wide (cells between 1 px lines) and wait for the page."""
    from selenium.webdriver.common.action_chains import ActionChains  # selenium: optional, see conftest

    canvas = page.driver.find_element("css selector", f'[data-testid="{testid}"]')
    ActionChains(page.driver, duration=0).move_to_element(page.driver.find_element("id", "kind")).perform()
    page.js("arguments[0].scrollIntoView({block: 'center'})", canvas)
    width, height, step = page.js("const r = arguments[0].getBoundingClientRect();"
                                  "return [r.width, r.height, (arguments[0].width - 1) / arguments[1]]", canvas, cols)
    ActionChains(page.driver, duration=0).move_to_element_with_offset(
        canvas, round(1 + (j + 0.5) * step - width / 2), round(1 + (i + 0.5) * step - height / 2)).perform()
    page.wait_ready()


def _lit_on_map(page, testid: str, rows: int, cols: int, rgb: tuple[int, int, int]) -> set[str]:
    """Positions ``0,i,j`` of a one-channel canvas map whose cell centre has the colour ``rgb``."""
    return set(page.js(
        "const [canvas, rows, cols, rgb] = arguments; const step = (canvas.width - 1) / cols;"
        "const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data; const lit = [];"
        "for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {"
        "  const x = Math.floor(1 + (j + 0.5) * step), y = Math.floor(1 + (i + 0.5) * step), k = 4 * (y * canvas.width + x);"
        "  if (data[k] === rgb[0] && data[k + 1] === rgb[1] && data[k + 2] === rgb[2]) lit.push(`0,${i},${j}`); }"
        "return lit;", page.driver.find_element("css selector", f'[data-testid="{testid}"]'), rows, cols, list(rgb)))


def test_a_map_too_large_for_cells_is_painted_and_hovers_like_cells(page):
    """An 81×61 output (more than 64×64 positions) is a canvas: hovering one of its positions lights
    the input window, and hovering an input cell paints the outputs it feeds in the lit colour."""
    in_shape, out_shape = (1, 40, 30), (1, 81, 61)
    page.open("1x40x30", ["ConvTranspose2d(1, 3, stride=2)"])
    assert not page.cells("out-cell") and len(page.cells("in-cell")) == 40 * 30
    matrix = _matrix(lambda: nn.ConvTranspose2d(1, 1, 3, stride=2), in_shape)
    assert matrix.shape == (81 * 61, 40 * 30)
    for row in _probes(matrix.shape[0]):
        _, i, j = np.unravel_index(row, out_shape)
        _hover_map(page, "out-map", 61, int(i), int(j))
        window = {_pos(col, in_shape) for col in np.flatnonzero(matrix[row])}
        assert page.active("in-cell") == window, f"output (0,{i},{j})"
    lit_out = tuple(int(page.js("return getComputedStyle(document.documentElement).getPropertyValue('--lit-out')")
                        .strip()[k:k + 2], 16) for k in (1, 3, 5))
    for col in _probes(matrix.shape[1]):
        page.hover("in-cell", _pos(col, in_shape))
        fed = {_pos(row, out_shape) for row in np.flatnonzero(matrix[:, col])}
        assert _lit_on_map(page, "out-map", 81, 61, lit_out) == fed, f"input {_pos(col, in_shape)}"
    page.hover_away()
    assert not _lit_on_map(page, "out-map", 81, 61, lit_out)
