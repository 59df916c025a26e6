"""Matrix pictures at pixel level: one colour per weight (ties share it), blanks exactly where the
layer has no connection (checked against the autograd Jacobian), aggregation and cropping said."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import layerlab.nn as lnn
from layerlab.errors import ArgumentError, SizeLimitError
from layerlab.viz.family import draw_family, family_pictures
from layerlab.viz.figure import new_figure, save_figure
from layerlab.viz.matrix import draw_matrix, full_matrix_picture, matrix_picture

F64 = torch.float64


def _jacobian(layer, shape):
    x = torch.randn(torch.Size(shape).numel(), dtype=F64)
    return torch.autograd.functional.jacobian(lambda v: layer(v.view(1, *shape)).flatten(), x).numpy()


def _colours(rgba):
    opaque = rgba[rgba[..., 3] == 255]
    return {tuple(c) for c in opaque}


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Conv2d(1, 1, 3, bias=False), (1, 6, 6)),
    (lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1), (2, 5, 5)),  # 54 weights: hashed palette
    (lambda: nn.Conv1d(4, 4, 3, groups=2, dilation=2, padding=2), (4, 7)),
])
def test_conv_picture_has_one_colour_per_weight_and_blanks_at_zeros(make, shape):
    torch.manual_seed(0)
    conv = make().to(F64)
    picture = matrix_picture(conv, shape)
    jac = _jacobian(conv, shape)
    assert picture.mode == "exact" and picture.rgba.shape == (*jac.shape, 4)
    assert len(_colours(picture.rgba)) == conv.weight.numel() == picture.colors
    np.testing.assert_array_equal(picture.rgba[..., 3] == 0, jac == 0)
    # same colour <=> same weight: every colour covers entries of one single value
    by_colour = {}
    for (r, c), alpha in np.ndenumerate(picture.rgba[..., 3]):
        if alpha:
            by_colour.setdefault(tuple(picture.rgba[r, c]), set()).add(float(jac[r, c]))
    assert all(len(values) == 1 for values in by_colour.values())
    assert len({next(iter(v)) for v in by_colour.values()}) == conv.weight.numel()
    assert picture.title == f"{type(conv).__name__}: {conv.weight.numel():,} weights"


def test_local_and_dense_pictures_have_no_ties():
    torch.manual_seed(0)
    local = lnn.LocallyConnected2d(1, 2, 3, padding=1, input_size=(4, 4)).to(F64)
    picture = matrix_picture(local, (1, 4, 4))
    jac = _jacobian(local, (1, 4, 4))
    np.testing.assert_array_equal(picture.rgba[..., 3] == 0, jac == 0)
    assert picture.distinct_weights == int((jac != 0).sum())  # every connection its own weight ...
    assert len(_colours(picture.rgba)) == picture.colors == 1 and "none tied" in picture.caption  # ... one colour
    dense = full_matrix_picture(4, 9)
    assert dense.rgba.shape == (4, 9, 4) and dense.distinct_weights == 36 and (dense.rgba[..., 3] == 255).all()
    assert dense.colors == 1
    assert len(_colours(dense.rgba)) == 1 and "same colour = tied" not in dense.caption
    linear = matrix_picture(nn.Linear(9, 4), (9,))
    np.testing.assert_array_equal(linear.rgba, dense.rgba)


def test_the_drawn_image_is_the_computed_one_without_smoothing(tmp_path):
    picture = matrix_picture(nn.Conv2d(1, 1, 3), (1, 6, 6))
    figure = new_figure(4, 3)
    ax = figure.subplots()
    draw_matrix(picture, ax)
    image = ax.get_images()[0]
    assert image.get_interpolation() == "nearest"
    np.testing.assert_array_equal(np.asarray(image.get_array()), picture.rgba)
    paths = save_figure(figure, tmp_path / "pics", "conv", svg=True)
    assert [p.name for p in paths] == ["conv.png", "conv.svg"] and all(p.stat().st_size > 0 for p in paths)
    assert "<svg" in paths[1].read_text()[:500]


def test_aggregated_picture_blanks_exactly_empty_blocks_and_says_so():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 1, 3, bias=False).to(F64)
    picture = matrix_picture(conv, (1, 12, 12), max_pixels=32)  # 100 x 144 matrix
    assert picture.mode == "aggregate" and picture.block == (4, 5)
    assert picture.caption.startswith("aggregated: each pixel = 4×5 entries of the 100×144 matrix")
    jac = _jacobian(conv, (1, 12, 12)) != 0
    padded = np.zeros((100, 145), dtype=bool)
    padded[:, :144] = jac
    blocks = padded.reshape(25, 4, 29, 5).any(axis=(1, 3))
    np.testing.assert_array_equal(picture.rgba[..., 3] > 0, blocks)


def test_cropped_picture_is_the_corner_of_the_exact_one():
    conv = nn.Conv2d(2, 2, 3)
    exact = matrix_picture(conv, (2, 6, 6), mode="exact")
    crop = matrix_picture(conv, (2, 6, 6), mode="crop", max_pixels=10)
    assert crop.caption.startswith("cropped: rows 0–9 of 32, columns 0–9 of 72")
    np.testing.assert_array_equal(crop.rgba[..., 3], exact.rgba[:10, :10, 3])
    # colours are re-numbered in the crop, but ties are kept: equal colours <=> equal colours
    a = crop.rgba.reshape(-1, 4)
    b = exact.rgba[:10, :10].reshape(-1, 4)
    same_a = (a[:, None] == a[None]).all(-1)
    same_b = (b[:, None] == b[None]).all(-1)
    np.testing.assert_array_equal(same_a, same_b)


def test_huge_exact_picture_is_refused_instantly():
    conv = nn.Conv2d(64, 64, 3, padding=1)
    with pytest.raises(SizeLimitError, match=r"matrix picture of Conv2d .* would allocate .*Use mode='aggregate'"):
        matrix_picture(conv, (64, 224, 224), mode="exact")
    with pytest.raises(SizeLimitError, match=r"matrix picture of Dense \(1,000,000×1,000,000\)"):
        full_matrix_picture(10**6, 10**6, mode="exact")


def test_bad_picture_arguments():
    with pytest.raises(ArgumentError, match=r"mode must be one of \('auto', 'exact', 'aggregate', 'crop'\). "
                       r"Received: mode='big'"):
        matrix_picture(nn.Conv1d(1, 1, 1), (1, 3), mode="big")
    with pytest.raises(ArgumentError, match=r"max_pixels must be a positive integer. Received: max_pixels=0"):
        matrix_picture(nn.Conv1d(1, 1, 1), (1, 3), max_pixels=0)
    with pytest.raises(ArgumentError, match=r"ReLU\(\) is not a linear layer"):
        matrix_picture(nn.ReLU(), (1, 3))


def test_family_small_exact_and_large_aggregated_and_cropped():
    family = family_pictures(nn.Conv2d(1, 1, 3, bias=False), (1, 6, 6))
    assert family.weights == {"conv": 9, "local": 16 * 9, "dense": 16 * 36}
    assert [p.mode for row in family.rows for p in row] == ["exact"] * 3
    conv, local, dense = family.rows[0]
    np.testing.assert_array_equal(conv.rgba[..., 3], local.rgba[..., 3])  # same zeros
    assert (conv.distinct_weights, local.distinct_weights, dense.distinct_weights) == (9, 144, 576)  # different ties
    assert (conv.colors, local.colors, dense.colors) == (9, 1, 1)  # colour only where weights are tied
    big = family_pictures(nn.Conv2d(2, 4, 3, padding="same"), (2, 10, 10), max_pixels=64, crop_pixels=16)
    assert big.weights == {"conv": 72, "local": 7200, "dense": 400 * 200}
    assert [[p.mode for p in row] for row in big.rows] == [["aggregate"] * 3, ["crop"] * 3]
    assert big.rows[1][0].rgba.shape == (16, 16, 4)
    figure = new_figure(9, 6)
    draw_family(big, figure)
    assert "conv ⊂ local ⊂ dense: 2×10×10 → 4×10×10" in figure.get_suptitle()
    assert [ax.get_title() for ax in figure.axes[:3]] == ["Conv: 72 weights", "Local: 7,200 weights",
                                                          "Dense: 80,000 weights"]


def test_rendered_pixels_have_one_colour_per_weight_plus_blank():
    """Render with Agg at 4 device pixels per matrix entry and read the canvas back."""
    torch.manual_seed(0)
    picture = matrix_picture(nn.Conv2d(1, 1, 3, bias=False), (1, 6, 6))  # 16 x 36 entries
    figure = new_figure(36 * 4 / 100, 16 * 4 / 100)
    figure.set_layout_engine(None)
    figure.set_dpi(100)
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.imshow(picture.rgba, interpolation="nearest", aspect="auto")
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3]
    assert pixels.shape == (64, 144, 3)
    blocks = pixels.reshape(16, 4, 36, 4, 3)
    assert (blocks == blocks[:, :1, :, :1]).all()  # every entry is a uniform 4x4 square: no smoothing
    cells = blocks[:, 0, :, 0]  # (16, 36, 3)
    colours = {tuple(c) for c in cells.reshape(-1, 3)}
    assert len(colours) == 9 + 1  # nine weights + the white of the structural zeros
    np.testing.assert_array_equal(cells[picture.rgba[..., 3] > 0], picture.rgba[picture.rgba[..., 3] > 0][:, :3])
    assert (cells[picture.rgba[..., 3] == 0] == 255).all()
