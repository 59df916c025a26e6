"""What a reader of each picture sees: axis labels, tick units, colour bars, error bars and seed notes."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
from torch import nn

from layerlab.experiments.compare import CompareResult, RunRecord
from layerlab.viz.compare import (
    accuracy_vs_params_figure,
    learning_curves_figure,
    shuffled_vs_original_figure,
)
from layerlab.viz.coverage import coverage_map, draw_coverage
from layerlab.viz.family import draw_family, family_pictures
from layerlab.viz.figure import new_figure
from layerlab.viz.filters import draw_filters, filter_grid
from layerlab.viz.matrix import draw_matrix, full_matrix_picture, matrix_picture
from layerlab.viz.receptive import draw_receptive, receptive_map


def _ticks(axis) -> np.ndarray:
    """The major tick positions inside the visible range."""
    low, high = sorted(axis.get_view_interval())
    ticks = np.asarray(axis.get_majorticklocs())
    return ticks[(ticks >= low) & (ticks <= high)]


def _colorbar_labels(figure) -> list[str]:
    return [ax.get_ylabel() for ax in figure.axes if ax.get_label() == "<colorbar>"]


def test_aggregated_panel_ticks_count_matrix_entries_and_has_a_labelled_colorbar():
    picture = matrix_picture(nn.Conv2d(2, 4, 3, padding="same"), (2, 10, 10), max_pixels=64)  # 400 x 200 matrix
    assert picture.mode == "aggregate" and picture.rgba.shape[:2] == (58, 50)
    figure = new_figure(6, 6)
    ax = figure.subplots()
    draw_matrix(picture, ax)
    figure.canvas.draw()
    assert ax.get_ylim() == (400, 0) and ax.get_xlim() == (0, 200)  # feature units, not pixels
    left, right, bottom, top = ax.images[0].get_extent()
    assert (left, top) == (0, 0) and right >= 200 and bottom >= 400  # the image covers the whole matrix
    assert _ticks(ax.yaxis).max() >= 300 and _ticks(ax.xaxis).max() >= 150
    assert [label.get_text() for label in ax.get_yticklabels()][-1] in ("400", "350")
    labels = _colorbar_labels(figure)
    assert labels == ["share of the block's entries\nthat are connections"]
    bar = next(a for a in figure.axes if a.get_label() == "<colorbar>")
    assert bar.get_ylim() == pytest.approx((0, picture.share_max)) and 0 < picture.share_max < 1


def test_exact_and_cropped_panels_have_integer_ticks_and_no_colorbar():
    for out_features in (1, 4):
        figure = new_figure(4, 3)
        ax = figure.subplots()
        draw_matrix(full_matrix_picture(out_features, 9), ax)
        figure.canvas.draw()
        for axis in (ax.xaxis, ax.yaxis):
            ticks = _ticks(axis)
            assert len(ticks) and (ticks == ticks.round()).all(), ticks
        assert list(_ticks(ax.yaxis)) == list(range(out_features))
        assert _colorbar_labels(figure) == []


def test_no_panel_of_the_family_paints_ties_where_there_are_none():
    family = family_pictures(nn.Conv2d(1, 2, 3, padding="same"), (1, 8, 8), max_pixels=64, crop_pixels=24)
    conv, local, dense = family.rows[1]  # the cropped row: one pixel per entry
    for untied in (local, dense):
        drawn = untied.rgba[untied.rgba[..., 3] > 0]
        assert len(np.unique(drawn, axis=0)) == 1, untied.title
        assert "none tied" in untied.caption and "same colour = tied" not in untied.caption
    assert conv.colors == 9 and "same colour = tied" in conv.caption
    figure = new_figure(12, 8)
    draw_family(family, figure)
    assert len(_colorbar_labels(figure)) == 3  # one per aggregated panel


def test_receptive_panels_have_axis_labels_integer_colorbars_and_fit_in_the_figure():
    stack = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2))
    figure = new_figure(8, 3.5)
    axes = figure.subplots(1, 2)
    draw_receptive(receptive_map(stack, (1, 16, 16)), axes)
    figure.canvas.draw()
    left, right = axes
    assert left.get_xlabel().startswith("input column (width)") and left.get_ylabel() == "input row (height)"
    assert right.get_xlabel().startswith("output of '2' column (width)")
    assert right.get_ylabel() == "output of '2' row (height)"
    assert _colorbar_labels(figure) == ["input channels in the field", "output channels reached"]
    renderer = figure.canvas.get_renderer()
    page = figure.bbox
    for bar in (a for a in figure.axes if a.get_label() == "<colorbar>"):
        ticks = _ticks(bar.yaxis)
        assert (ticks == ticks.round()).all(), ticks
        box = bar.get_tightbbox(renderer)  # the bar, its tick labels and its label
        assert page.x0 <= box.x0 and box.x1 <= page.x1, (box, page)  # not cut at the figure's edge


def test_coverage_and_filters_are_labelled():
    figure = new_figure(8, 7)
    ax = figure.subplots()
    draw_coverage(coverage_map(3, 2), ax)
    figure.canvas.draw()
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("output column (width)", "output row (height)")
    assert _colorbar_labels(figure) == ["kernel taps reaching the output pixel"]
    bar = next(a for a in figure.axes if a.get_label() == "<colorbar>")
    assert (_ticks(bar.yaxis) == _ticks(bar.yaxis).round()).all()
    figure = new_figure(5, 4)
    draw_filters(filter_grid(nn.Conv2d(1, 4, 3)), figure.subplots())
    assert _colorbar_labels(figure) == ["weight value (0 = white)"]


def _result(seeds: int) -> CompareResult:
    """Two models, original and shuffled, ``seeds`` seeds each, two epochs; no training."""
    runs = []
    for m, model in enumerate(("mlp", "cnn")):
        for permuted in (False, True):
            for seed in range(seeds):
                accuracy = 0.5 + 0.1 * m - 0.05 * permuted + 0.02 * seed
                runs.append(RunRecord(model, permuted, seed, params=1000 * (m + 1) ** 3, test_accuracy=accuracy,
                                      train_seconds=1.0,
                                      history=[{"test_accuracy": accuracy - 0.1}, {"test_accuracy": accuracy}]))
    args = {"models": ["mlp", "cnn"], "seeds": list(range(seeds)), "permute_pixels": True}
    return CompareResult({"name": "toy"}, args, runs, None)


def _error_bars(ax) -> list[ErrorbarContainer]:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer) and c.has_yerr]


@pytest.mark.parametrize("draw", [accuracy_vs_params_figure, shuffled_vs_original_figure])
def test_one_seed_has_no_error_bars_and_says_so(draw):
    ax = draw(_result(1)).axes[0]
    assert _error_bars(ax) == []
    assert ax.get_title() == ax.get_title().split(",")[0] + ", 1 seed"
    assert ax.get_legend().get_title().get_text() == "1 seed"


@pytest.mark.parametrize("draw, bars", [(accuracy_vs_params_figure, 4), (shuffled_vs_original_figure, 2)])
def test_several_seeds_have_error_bars_labelled_mean_and_std(draw, bars):
    ax = draw(_result(3)).axes[0]
    assert len(_error_bars(ax)) == bars
    assert ax.get_title().endswith(", mean ± std over 3 seeds")
    assert ax.get_legend().get_title().get_text() == "mean ± std over 3 seeds"


def test_learning_curves_say_whether_they_are_one_seed_or_a_mean():
    assert learning_curves_figure(_result(1)).axes[0].get_legend().get_title().get_text() == "1 seed"
    ax = learning_curves_figure(_result(2)).axes[0]
    assert ax.get_legend().get_title().get_text() == "mean over 2 seeds" and ax.get_title().endswith("2 seeds")


def test_accuracy_axis_is_labelled_with_the_models_parameter_counts():
    ax = accuracy_vs_params_figure(_result(1)).axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["1,000", "8,000"]


def test_a_one_dimensional_field_is_a_strip_filling_its_panel():
    stack = nn.Sequential(nn.Conv1d(1, 4, 5), nn.ReLU(), nn.Conv1d(4, 4, 3, stride=2))
    figure = new_figure(12, 5)
    axes = figure.subplots(1, 2)
    draw_receptive(receptive_map(stack, (1, 40)), axes)
    for ax in axes:
        assert ax.get_aspect() == "auto" and list(ax.get_yticks()) == [] and ax.get_ylabel() == ""
    assert axes[0].get_xlabel().startswith("input position")
