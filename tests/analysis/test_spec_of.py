"""spec_of(): torch modules mapped to arith specs agree with the real module (params, output shape)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import layerlab
from layerlab.analysis import spec_of, summary
from layerlab.arith import specs

CASES = [
    (nn.Linear(12, 5), (12,)),
    (nn.Linear(12, 5, bias=False), (12,)),
    (nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2), (4, 11)),
    (nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)), (3, 9, 8)),
    (nn.Conv2d(3, 4, 3, padding="same", padding_mode="reflect"), (3, 7, 7)),
    (nn.Conv3d(2, 2, 2, bias=False), (2, 4, 4, 4)),
    (nn.ConvTranspose1d(4, 2, 3, stride=2, output_padding=1), (4, 5)),
    (nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2, dilation=2), (4, 5, 5)),
    (nn.ConvTranspose3d(2, 2, 2, stride=2), (2, 3, 3, 3)),
    (nn.MaxPool1d(3, stride=2, padding=1, dilation=1, ceil_mode=True), (2, 10)),
    (nn.MaxPool2d(3, stride=2, dilation=2), (2, 11, 11)),
    (nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (2, 10, 10)),
    (nn.AvgPool3d(2), (1, 4, 4, 5)),
    (nn.AdaptiveAvgPool2d((3, None)), (2, 7, 5)),
    (nn.AdaptiveMaxPool1d(4), (2, 9)),
    (nn.BatchNorm2d(3), (3, 4, 4)),
    (nn.BatchNorm1d(5, affine=False), (5,)),
    (nn.InstanceNorm2d(3, affine=True, track_running_stats=True), (3, 4, 4)),
    (nn.LayerNorm(6), (4, 6)),
    (nn.GroupNorm(2, 4), (4, 3, 3)),
    (nn.Flatten(), (2, 3, 4)),
    (nn.Flatten(2, 3), (2, 3, 4)),
    (nn.PReLU(3), (3, 4)),
    (nn.ReLU6(), (3,)),
    (nn.Softmax(dim=-1), (3, 2)),
    (nn.Dropout2d(), (2, 3, 3)),
    (nn.Identity(), (5,)),
    (nn.LocalResponseNorm(3), (4, 5, 5)),
    (nn.Upsample(scale_factor=2), (2, 3, 3)),
    (nn.Upsample(size=(5, 7, 9), mode="trilinear"), (1, 2, 3, 4)),
    (nn.Upsample(scale_factor=3, mode="linear"), (1, 4)),
]


@pytest.mark.parametrize("module, shape", CASES, ids=[f"{type(m).__name__}-{i}" for i, (m, _) in enumerate(CASES)])
def test_spec_matches_the_module(module, shape):
    report = spec_of(module).analyse(shape)
    assert report.params == sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert report.buffers == sum(b.numel() for b in module.buffers())
    with torch.no_grad():
        out = module.eval()(torch.randn(2, *shape))
    assert report.output_shape == tuple(out.shape[1:])


@pytest.mark.parametrize(
    "module, spec_type, field",
    [
        (nn.LazyLinear(7), specs.DenseSpec, "in_features"),
        (nn.LazyConv2d(7, 3), specs.ConvSpec, "in_channels"),
        (nn.LazyConvTranspose1d(7, 3), specs.ConvTransposeSpec, "in_channels"),
        (nn.LazyBatchNorm2d(), specs.NormSpec, "num_features"),
        (nn.LazyInstanceNorm1d(), specs.NormSpec, "num_features"),
    ],
)
def test_lazy_modules_infer_their_input(module, spec_type, field):
    spec = spec_of(module)
    assert isinstance(spec, spec_type) and getattr(spec, field) is None


def test_layerlab_modules_describe_themselves():
    local = layerlab.LocallyConnected2d(3, 8, 3, stride=2, bias="shared")
    spec = spec_of(local)
    assert isinstance(spec, specs.LocalSpec)
    # 4·4 positions · (3·9) · 8 weights + 8 shared biases
    assert spec.analyse((3, 9, 9)).params == 4 * 4 * 27 * 8 + 8


@pytest.mark.parametrize("module", [nn.Sequential(nn.ReLU()), nn.MultiheadAttention(4, 2), nn.LSTM(3, 3), nn.Bilinear(2, 2, 2)])
def test_unknown_modules_return_none(module):
    assert spec_of(module) is None


def test_summary_of_layerlab_locally_connected():
    model = nn.Sequential(
        layerlab.LocallyConnected2d(3, 8, 3, padding=1),  # lazy: input_size from the first input
        layerlab.ReLU(),
        layerlab.LocallyConnected2d(8, 4, 3, stride=2, bias=None),
        layerlab.Flatten(),
        layerlab.Dense(10),
    )
    s = summary(model, (3, 10, 10))
    assert s.complete
    # 10·10 positions · (3·9) · 8 + 8·10·10 location biases; 4·4 · (8·9) · 4, no bias; 64·10 + 10
    assert [row.params for row in s.layers] == [21_600 + 800, 0, 4_608, 0, 650]
    # same MACs as the conv of the same shape
    assert s.layers[0].macs == 8 * 100 * 27 and s.layers[2].macs == 4 * 16 * 72
    model(torch.randn(1, 3, 10, 10))  # materialise the lazy parameters, then compare
    assert s.total.params == sum(p.numel() for p in model.parameters())
