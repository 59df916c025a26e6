"""Receptive fields against a gradient reference and the arith formula; coverage against a
transposed conv of ones and naive loops; filter grids against the weights they show."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import layerlab.nn as lnn
from layerlab.arith.elementwise import ALONG_DIM, OPS_PER_ELEMENT, is_pointwise
from layerlab.errors import ArgumentError, ShapeError
from layerlab.viz.coverage import coverage_map, draw_coverage
from layerlab.viz.figure import new_figure
from layerlab.viz.filters import draw_filters, filter_grid
from layerlab.viz.receptive import draw_receptive, receptive_map

F64 = torch.float64


def _positive(model):
    """Positive weights and a strictly monotone activation: no gradient can cancel or vanish."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(0.05, 0.2)  # small: tanh/sigmoid stay far from saturation
    return model.to(F64).eval()


def _gradient_field(model, shape, out_index):
    x = torch.rand(1, *shape, dtype=F64, requires_grad=True)
    model(x)[(0, *out_index)].backward()
    return (x.grad[0] != 0).numpy()


def _gradient_reach(model, shape, in_index):
    jac = torch.autograd.functional.jacobian(lambda v: model(v), torch.rand(1, *shape, dtype=F64))
    return (jac[(0, Ellipsis, 0, *in_index)] != 0).numpy()


STACK = lambda: nn.Sequential(  # noqa: E731
    nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(2, 2, 3, dilation=2),
    nn.BatchNorm2d(2), nn.Conv2d(2, 2, 3, stride=2, padding=1), nn.Sigmoid())


@pytest.mark.parametrize("out_index", [(0, 1, 1), (1, 0, 0), (0, 2, 1)])
def test_receptive_field_equals_gradient_support_and_formula(out_index):
    model = _positive(STACK())
    rmap = receptive_map(model, (1, 20, 20), output_index=out_index, input_index=(0, 10, 3))
    np.testing.assert_array_equal(rmap.field, _gradient_field(model, (1, 20, 20), out_index))
    np.testing.assert_array_equal(rmap.reach, _gradient_reach(model, (1, 20, 20), (0, 10, 3)))
    assert rmap.arith["size"] == [16, 16] and rmap.arith["jump"] == [4, 4]
    if out_index == (0, 1, 1):  # an interior cell: the exact field is the formula's
        assert rmap.size == (16, 16) and rmap.extent == ((1, 16), (1, 16))
    else:  # at the border part of the formula's field lies in the padding
        assert any(s < 16 for s in rmap.size) and all(s <= 16 for s in rmap.size)


def test_max_pool_field_is_its_window_and_contains_the_gradient_support():
    model = _positive(nn.Sequential(nn.Conv1d(1, 1, 3), nn.MaxPool1d(3, stride=2, dilation=2), nn.Conv1d(1, 1, 2)))
    rmap = receptive_map(model, (1, 30), output_index=(0, 4))
    assert rmap.size == (rmap.arith["size"][0],) == (9,)
    assert (rmap.field | _gradient_field(model, (1, 30), (0, 4)) == rmap.field).all()


def test_adaptive_max_pool_field_is_its_window():
    # windows [floor(i·7/3), ceil((i+1)·7/3)): rows of i = 1 are 2..4, columns of i = 2 are 4..6
    rmap = receptive_map(nn.Sequential(nn.AdaptiveMaxPool2d(3)), (1, 7, 7), output_index=(0, 1, 2))
    assert rmap.extent == ((2, 4), (4, 6)) and int(rmap.field.sum()) == 9


def test_field_of_a_named_layer_and_global_after_dense():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    inner = receptive_map(model, (1, 8, 8), layer="0")
    assert inner.output_shape == (2, 6, 6) and inner.size == (3, 3)
    whole = receptive_map(model, (1, 8, 8))
    assert whole.output_shape == (3,) and whole.field.all() and whole.arith["global"] is True
    figure = new_figure(8, 4)
    draw_receptive(inner, figure.subplots(1, 2))
    assert "exact field 3 × 3 (formula: 3 × 3)" in figure.axes[0].get_title()


@pytest.mark.parametrize("name", sorted(name for name in OPS_PER_ELEMENT if is_pointwise(name)))
def test_pointwise_layers_of_the_table_keep_the_field(name):
    conv, shape = (nn.Conv1d, (1, 9)) if name == "Dropout1d" else (nn.Conv2d, (1, 9, 9))
    model = _positive(nn.Sequential(conv(1, 1, 3), getattr(nn, name)(), conv(1, 1, 3)))
    out_index = (0,) + (2,) * (len(shape) - 1)
    rmap = receptive_map(model, shape, output_index=out_index)
    np.testing.assert_array_equal(rmap.field, _gradient_field(model, shape, out_index))
    assert rmap.size == (5,) * (len(shape) - 1)


@pytest.mark.parametrize("name", sorted(ALONG_DIM))
def test_layers_reading_a_whole_dim_are_not_taken_for_pointwise(name):
    with pytest.raises(ArgumentError, match=rf"cannot follow '1' \({name}\(dim=1\)\)"):
        receptive_map(nn.Sequential(nn.Conv1d(1, 2, 3), getattr(nn, name)(dim=1)), (1, 9))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x)


def test_receptive_field_errors_are_named():
    with pytest.raises(ArgumentError, match=r"the model's output is not the output of its last layer"):
        receptive_map(Residual(), (1, 5, 5))
    branch = nn.Sequential(nn.Conv2d(1, 1, 1), Residual())
    with pytest.raises(ArgumentError, match=r"the model's output is not the output of its last layer"):
        receptive_map(branch, (1, 5, 5))
    with pytest.raises(ArgumentError, match=r"no layer named 'nope' on the model's path. Received: layer='nope'"):
        receptive_map(nn.Sequential(nn.Conv2d(1, 1, 1)), (1, 5, 5), layer="nope")
    with pytest.raises(ArgumentError, match=r"output_index must be 3 indices within \(1, 5, 5\). Received: "
                       r"output_index=\(0, 9, 9\)"):
        receptive_map(nn.Sequential(nn.Conv2d(1, 1, 1)), (1, 5, 5), output_index=(0, 9, 9))
    with pytest.raises(ArgumentError, match=r"cannot follow '0' \(Softmax\(dim=1\)\)"):
        receptive_map(nn.Sequential(nn.Softmax(dim=1)), (4,))
    with pytest.raises(ShapeError, match=r"receptive field: Sequential on input \(1, 2, 5, 5\): module '0' \(Conv2d\(.*"
                       r"expects 1 input channels, gets 2"):
        receptive_map(nn.Sequential(nn.Conv2d(1, 1, 1)), (2, 5, 5))


def _naive_coverage(k, s, p, n, op=0, d=1):
    out = F.conv_transpose1d(torch.zeros(1, 1, n), torch.zeros(1, 1, k), stride=s, padding=p, output_padding=op,
                             dilation=d).shape[-1]  # torch's output size
    counts = np.zeros(out, dtype=int)
    for i, t in itertools.product(range(n), range(k)):
        o = i * s - p + t * d
        if 0 <= o < out:
            counts[o] += 1
    return counts


@pytest.mark.parametrize("k, s, p, op, d", [(3, 2, 0, 0, 1), (4, 2, 1, 0, 1), (3, 2, 1, 1, 1), (5, 3, 2, 2, 2)])
def test_coverage_equals_transposed_conv_of_ones_and_naive_loop(k, s, p, op, d):
    cov = coverage_map(k, s, padding=p, output_padding=op, dilation=d, input_size=(6, 7))
    ones = F.conv_transpose2d(torch.ones(1, 1, 6, 7, dtype=F64), torch.ones(1, 1, k, k, dtype=F64), stride=s,
                              padding=p, output_padding=op, dilation=d)[0, 0]
    np.testing.assert_array_equal(cov.counts, ones.numpy().astype(int))
    np.testing.assert_array_equal(cov.counts, np.outer(_naive_coverage(k, s, p, 6, op, d), _naive_coverage(k, s, p, 7, op, d)))


def test_checkerboard_versus_uniform_interior():
    k3 = coverage_map(3, 2)
    k4 = coverage_map(4, 2, padding=1)
    assert k3.interior == (1, 4) and not k3.uniform
    assert k4.interior == (4, 4) and k4.uniform
    assert set(np.unique(k3.counts[2:-2, 2:-2])) == {1, 2, 4}
    figure = new_figure(8, 4)
    axes = figure.subplots(1, 2)
    draw_coverage(k3, axes[0])
    draw_coverage(k4, axes[1])
    assert "interior 1–4 (uneven interior: checkerboard)" in axes[0].get_title()
    assert "interior 4–4 (uniform interior)" in axes[1].get_title()
    np.testing.assert_array_equal(np.asarray(axes[0].get_images()[0].get_array()), k3.counts)
    assert coverage_map(3, 2, ndim=1, input_size=4).counts.tolist() == [1, 1, 2, 1, 2, 1, 2, 1, 1]


def test_coverage_errors():
    with pytest.raises(ArgumentError, match=r"coverage: stride must be positive integers\. Received: stride=0"):
        coverage_map(3, 0)
    with pytest.raises(ArgumentError, match=r"the output size would be \(-1, -1\) for input_size=\(1, 1\)"):
        coverage_map(1, 1, padding=1, input_size=1)


def test_conv_filter_grid_shows_the_weights():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, (2, 3))
    grid = filter_grid(conv)
    assert (grid.rows, grid.cols, grid.tile) == (3, 2, (2, 3))
    w = conv.weight.detach().double().numpy()
    for o, c in itertools.product(range(3), range(2)):
        np.testing.assert_array_equal(grid.image[o * 3: o * 3 + 2, c * 4: c * 4 + 3], w[o, c])
    assert np.isnan(grid.image[2]).all() and np.isnan(grid.image[:, 3]).all()  # gaps
    assert grid.vmax == pytest.approx(np.abs(w).max())


def test_local_filter_grid_is_laid_out_like_the_output_map():
    torch.manual_seed(0)
    local = lnn.LocallyConnected2d(2, 4, 3, groups=2, input_size=(5, 6))  # output 3x4
    grid = filter_grid(local, channel=3)  # group 1, channel 1 of the group
    assert (grid.rows, grid.cols) == (3, 4) and "output channel 3" in grid.caption
    w = local.weight.detach().double().numpy()
    for i, j in itertools.product(range(3), range(4)):
        np.testing.assert_allclose(grid.image[i * 4: i * 4 + 3, j * 4: j * 4 + 3], w[i, j, 1, :, :, :, 1].mean(axis=0))


def test_filter_grid_crop_rgb_and_errors():
    local = lnn.LocallyConnected2d(3, 2, 3, input_size=(12, 12))
    grid = filter_grid(local, max_tiles=4)
    assert grid.cropped and grid.image.shape == (15, 15, 3)
    assert grid.caption.endswith("cropped to the first 4×4 of 10×10 tiles")
    assert np.nanmin(grid.image) >= 0 and np.nanmax(grid.image) <= 1
    figure = new_figure(4, 4)
    draw_filters(grid, figure.subplots())
    with pytest.raises(ArgumentError, match=r"filters: expected a Conv\*d, LocallyConnected\*d or TiledConv\*d layer. "
                       r"Received: ConvTranspose2d"):
        filter_grid(nn.ConvTranspose2d(1, 1, 3))
    with pytest.raises(ArgumentError, match=r"channel must be an output channel in \[0, 2\). Received: channel=5"):
        filter_grid(local, channel=5)
    one_d = filter_grid(nn.Conv1d(1, 5, 4))
    assert (one_d.rows, one_d.cols, one_d.tile) == (2, 3, (1, 4))


class Doubled(nn.Module):
    """Two layers with a functional op in between: not a chain of layers."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(1, 1, 3)
        self.b = nn.Conv1d(1, 1, 3)

    def forward(self, x):
        return self.b(self.a(x) * 2)


class Viewed(nn.Module):
    """Two layers with a same-shape view in between: the same elements, still a chain."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(1, 1, 3)
        self.b = nn.Conv1d(1, 1, 3)

    def forward(self, x):
        y = self.a(x)
        return self.b(y.view(y.shape))


def test_a_view_between_layers_is_followed():
    model = _positive(Viewed())
    rmap = receptive_map(model, (1, 9), output_index=(0, 2))
    np.testing.assert_array_equal(rmap.field, _gradient_field(model, (1, 9), (0, 2)))
    assert rmap.size == (5,)


def test_a_functional_op_between_layers_is_named():
    with pytest.raises(ArgumentError, match=r"receptive field: 'b' \(Conv1d\) does not read the output of 'a': the "
                       r"forward is not a plain chain of layers"):
        receptive_map(Doubled(), (1, 9))


def test_filter_grid_max_tiles_and_save_into_a_file(tmp_path):
    with pytest.raises(ArgumentError, match=r"filters: max_tiles must be a positive integer. Received: max_tiles=0"):
        filter_grid(nn.Conv2d(1, 1, 3), max_tiles=0)
    from layerlab.viz.figure import save_figure

    (tmp_path / "file").write_text("x")
    with pytest.raises(ArgumentError, match=r"output folder '.*file' exists and is not a folder. Received: --out "
                       r"'.*file'; pass a folder path"):
        save_figure(new_figure(1, 1), tmp_path / "file", "x")


def test_a_single_layer_model_is_its_own_chain():
    rmap = receptive_map(nn.Conv1d(1, 1, 3), (1, 9), output_index=(0, 0))
    assert rmap.layer == "<model>" and rmap.size == (3,) and rmap.extent == ((0, 2),)
