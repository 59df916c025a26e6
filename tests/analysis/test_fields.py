"""Receptive fields through graphs, checked against the gradient support of the real model.

The support: in float64, with every weight and bias positive and a positive input (so that nothing
cancels and every ReLU passes), backprop a one-hot at one output unit and take the rows and columns
of the input where the gradient is non-zero. The summary's field of that unit is
``[c − (r − 1)/2, c + (r − 1)/2]`` with ``c = start + o·jump``, clipped to the input.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerlab.analysis import spec_of, summary
from layerlab.arith import receptive_field
from layerlab.zoo import build


def positive(model: nn.Module) -> nn.Module:
    model = model.double().eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=generator, dtype=p.dtype) * 0.5 + 0.1)
    return model


def gradient_support(model: nn.Module, shape: tuple[int, ...], unit: tuple[int, ...]) -> list[tuple[int, int]]:
    """``(first, last)`` input index per spatial dim where d output[0, 0, *unit] / d input != 0."""
    x = (torch.rand(1, *shape, dtype=torch.float64) + 0.5).requires_grad_()
    model(x)[(0, 0, *unit)].backward()
    support = x.grad[0].abs().sum(0) > 0
    spans = []
    for dim in range(support.dim()):
        other = tuple(d for d in range(support.dim()) if d != dim)
        hit = torch.nonzero(support.any(dim=other) if other else support).flatten()
        spans.append((int(hit.min()), int(hit.max())))
    return spans


def field_span(rf: dict, unit: tuple[int, ...], shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """The exact field of output ``unit`` per dim (``units[o mod P] + (o div P)·P·jump``), clipped to
    the input; where the period is 1 it is also the recursion's ``start + o·jump ± (size − 1)/2``."""
    spans = []
    for size, jump, start, period, units, o, n in zip(rf["size"], rf["jump"], rf["start"], rf["period"], rf["units"],
                                                      unit, shape[1:]):
        q, u = divmod(o, period)
        first, last = (end + q * round(period * jump) for end in units[u])
        if period == 1:
            centre = start + o * jump
            assert (first, last) == (centre - (size - 1) / 2, centre + (size - 1) / 2)
        spans.append((max(0, first), min(n - 1, last)))
    return spans


def check(model: nn.Module, shape: tuple[int, ...], units: list[tuple[int, ...]]) -> dict:
    rf = summary(model, shape).layers[-1].receptive_field
    assert rf is not None and not rf["global"]
    model = positive(model)
    for unit in units:
        assert gradient_support(model, shape, unit) == field_span(rf, unit, shape), unit
    return rf


def test_unet_with_concatenated_skips():
    model = build("unet", (1, 64, 64), 2)
    model.pool = nn.AvgPool2d(2)  # max pooling sends the gradient to one tap; the window is the same
    rf = check(model, (1, 64, 64), [(32, 32), (0, 0), (12, 40), (63, 63)])
    assert rf["size"] == [44, 44] and rf["jump"] == [1, 1]
    # pooling by 2 then upsampling by 2 centres output 2m's deep path at 2m + 0.5, the skip at 2m
    assert rf["aligned"] == [False, False]


class ResidualBlock(nn.Module):
    """ResNet's downsampling block: 3×3 stride 2 → 3×3, plus a strided 1×1 shortcut."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.conv1 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.shortcut = nn.Sequential(nn.Conv2d(4, 8, 1, stride=2), nn.BatchNorm2d(8))
        self.head = nn.Conv2d(8, 2, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return self.head(F.relu(y + self.shortcut(x)))


def test_residual_block_with_a_strided_shortcut():
    rf = check(ResidualBlock(), (1, 24, 24), [(5, 6), (0, 0), (11, 11)])
    # main path 3 → 5 (stride 2) → 9 → 13; shortcut 3 → 3 → 7: the main path's, both centred at 2·o
    assert rf["size"] == [13, 13] and rf["jump"] == [2, 2] and rf["start"] == [0, 0] and rf["aligned"] == [True, True]


class Decoder(nn.Module):
    """Nearest upsampling as a module, bilinear as a functional op, convolutions between."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)
        self.conv3 = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x):
        y = self.conv2(self.up(torch.relu(self.conv1(x))))
        return self.conv3(F.interpolate(y, scale_factor=2, mode="bilinear"))


def test_upsampling_decoder_has_fractional_jumps():
    rf = check(Decoder(), (1, 12, 12), [(20, 20), (24, 16)])
    assert rf["jump"] == [0.25, 0.25]
    # the row of the functional interpolation has the field of its output: 3 → 3 (nearest ×2, jump
    # 1/2) → 4 (3×3) → 4.5 (bilinear ×2 reads 2 inputs 1/2 apart)
    [row] = [row for row in summary(Decoder(), (1, 12, 12)).layers if row.op == "interpolate"]
    assert row.receptive_field["size"] == [4.5, 4.5] and row.receptive_field["jump"] == [0.25, 0.25]


class Pools(nn.Module):
    """A pooled path and a strided-conv path added, then functional average pooling with padding."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.down = nn.Conv2d(3, 3, 2, stride=2)
        self.pool = nn.AvgPool2d(2)
        self.out = nn.Conv2d(3, 1, 1)

    def forward(self, x):
        y = self.conv(x)
        z = self.pool(y) + self.down(y)
        return self.out(F.avg_pool2d(z, 3, stride=2, padding=1, count_include_pad=True))


def test_pooling_and_strided_paths():
    rf = check(Pools(), (1, 30, 30), [(3, 4), (0, 6)])
    # conv 3 → pool 2 / conv 2 stride 2: 4, jump 2, both centred at 1.5 → avg pool 3 stride 2: 8
    assert rf["size"] == [8, 8] and rf["jump"] == [4, 4] and rf["start"] == [1.5, 1.5] and rf["aligned"] == [True, True]


class Misaligned(nn.Module):
    """A 2-tap conv's first outputs added to a crop that drops the first two positions: output o sees
    o, o + 1 on one path and o + 2 on the other, centres 0.5 and 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 2)
        self.mix = nn.Conv1d(1, 1, 1)

    def forward(self, x):
        return self.mix(self.conv(x)[:, :, :-1] + x[:, :, 2:])


def test_misaligned_paths_are_flagged_and_unioned():
    rf = check(Misaligned(), (1, 16), [(5,), (0,), (13,)])
    assert rf["size"] == [3] and rf["start"] == [1] and rf["aligned"] == [False]
    aligned = summary(nn.Sequential(nn.Conv1d(1, 1, 3, padding=1)), (1, 16)).layers[-1].receptive_field
    assert aligned["aligned"] == [True]


@pytest.mark.parametrize("layers, shape", [
    ([nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
      nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(), nn.Linear(120, 84)], (1, 32, 32)),
    ([nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.GroupNorm(2, 8), nn.Conv2d(8, 8, 3, groups=4, dilation=2),
      nn.AvgPool2d(2, ceil_mode=True), nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, output_padding=1),
      nn.MaxPool2d(3, stride=2, padding=1), nn.Upsample(scale_factor=2, mode="bilinear"), nn.ZeroPad2d((1, 1, 0, 2)),
      nn.PixelUnshuffle(2)], (3, 16, 16)),
    ([nn.Conv1d(2, 4, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.ConvTranspose1d(4, 2, 5, stride=3)], (2, 32)),
])
def test_single_path_fields_are_arith_chain_fields(layers, shape):
    """A chain gives the fields of arith's layer-by-layer recursion, row by row."""
    reports, current = [], shape
    for layer in layers:
        reports.append(spec_of(layer).analyse(current))
        current = reports[-1].output_shape
    expected = [{k: v for k, v in f.as_dict().items() if k != "warnings"} for f in receptive_field(reports, shape)]
    assert [row.receptive_field for row in summary(nn.Sequential(*layers), shape).layers] == expected


def test_functional_ops_between_modules_are_followed():
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)
            self.head = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            y = F.max_pool2d(F.pad(self.conv(x), (1, 1, 1, 1)), 2)
            return self.head(y[:, :, 1:, ::2])

    rf = summary(Functional(), (1, 16, 16)).layers[-1].receptive_field
    # conv: 3, start 1; pad 1: start 0; max pool 2: size 4, jump 2, start 0.5; slice rows 1: (start
    # 2.5), columns step 2: jump 4
    assert rf["size"] == [4, 4] and rf["jump"] == [2, 4] and rf["start"] == [2.5, 0.5]


def test_global_field_survives_functional_ops_and_spatial_cat_is_untracked():
    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.weight = nn.Parameter(torch.randn(3, 2 * 6 * 6))
            self.act = nn.Tanh()
            self.side = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            halves = torch.cat([x[:, :, :, :4], x[:, :, :, 4:]], dim=2)  # (B, 1, 16, 4): rows stacked
            warped = F.grid_sample(x, torch.zeros(x.shape[0], 8, 8, 2, device=x.device), align_corners=False)
            return self.act(F.linear(self.conv(x).flatten(1), self.weight) * 2), self.side(halves), self.side(warped)

    rows = [row for row in summary(Head(), (1, 8, 8)).layers if row.name in ("act", "side") and row.op is None]
    assert rows[0].name == "act" and rows[0].receptive_field["global"] is True  # `* 2` after linear keeps it global
    # a concatenation along a spatial dim, and a sampling grid (positions given by data): not followed
    assert [(row.name, row.receptive_field) for row in rows[1:]] == [("side", None), ("side", None)]


def test_reshape_to_tokens_is_untracked_until_a_global_layer():
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patch = nn.Conv2d(1, 4, 4, stride=4)
            self.norm = nn.LayerNorm(4)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            tokens = self.norm(self.patch(x).flatten(2).transpose(1, 2))
            return self.head(tokens.mean(1))

    fields = {row.name: row.receptive_field for row in summary(Tokens(), (1, 8, 8)).layers}
    assert fields["patch"]["size"] == [4, 4]
    assert fields["norm"] is None  # tokens: the spatial layout is gone, not guessed
    assert fields["head"]["global"] is True
