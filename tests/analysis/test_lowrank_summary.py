"""summary() and spec_of() of LowRankLocallyConnected layers, lazy and built for a size."""

from __future__ import annotations

import torch
from torch import nn

import layerlab
from layerlab.analysis import spec_of, summary
from layerlab.arith import specs


def test_spec_of_uses_layer_spec():
    layer = layerlab.LowRankLocallyConnected2d(3, 8, 3, rank=4, stride=2, bias="shared", combining="full")
    spec = spec_of(layer)
    assert isinstance(spec, specs.LowRankLocalSpec) and spec.rank == 4 and spec.combining == "full"


def test_summary_counts_equal_the_materialised_model():
    model = nn.Sequential(
        layerlab.LowRankLocallyConnected2d(3, 8, 3, rank=4, padding=1),  # lazy: input_size from the first input
        layerlab.ReLU(),
        layerlab.LowRankLocallyConnected2d(8, 4, 3, rank=2, stride=2, bias=None, combining="full", input_size=10),
        layerlab.Flatten(),
        layerlab.Dense(10),
    )
    s = summary(model, (3, 10, 10))
    assert s.complete
    # 4·8·27 basis + 4·(10 + 10) combining + 4·8 biases; 2·4·72 + 2·4·4 combining; 64·10 + 10
    assert [row.params for row in s.layers] == [864 + 80 + 32, 0, 576 + 32, 0, 650]
    # the conv with R·C_out outputs; the mix counted apart
    assert s.layers[0].macs == 4 * 8 * 100 * 27 and s.layers[0].other_ops["combine"] == 4 * 8 * 100
    model(torch.randn(1, 3, 10, 10))  # materialise the lazy combining weights, then compare
    assert s.total.params == sum(p.numel() for p in model.parameters())
