"""Low-rank local layers: exact conversions to local and dense, and any local layer as a low-rank one."""

import re

import pytest
import torch

import layerlab
from layerlab.convert import (
    convert_model,
    dense_bias,
    dense_matrix,
    local_to_dense,
    local_to_lowrank,
    lowrank_to_local,
)
from layerlab.errors import ArgumentError
from layerlab.functional.reference import local_conv_reference

# (ndim, C_in, C_out, in_size, kernel, rank, stride, padding, groups, bias, combining, normalize)
CONFIGS = [
    (1, 2, 4, (9,), 3, 3, 2, 1, 2, True, "factorized", "softmax"),
    (2, 4, 6, (7, 6), 3, 3, (2, 1), (1, 2), 2, True, "factorized", "softmax"),
    (2, 3, 2, (6, 5), 2, 2, 1, "same", 1, "shared", "full", "l2"),
    (3, 2, 2, (4, 4, 3), 2, 2, 1, 0, 1, False, "factorized", None),
]


def _layer(ndim, c_in, c_out, in_size, k, rank, s, p, g, bias, combining, normalize):
    torch.manual_seed(0)
    layer = (layerlab.LowRankLocallyConnected1d, layerlab.LowRankLocallyConnected2d,
             layerlab.LowRankLocallyConnected3d)[ndim - 1](
        c_in, c_out, k, rank, stride=s, padding=p, groups=g, bias=bias, input_size=in_size, combining=combining,
        normalize=normalize, dtype=torch.float64)
    with torch.no_grad():
        for name, param in layer.named_parameters():
            if name.startswith("combining"):
                param.normal_()
    return layer, torch.randn(3, c_in, *in_size, dtype=torch.float64)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_lowrank_to_local_gives_the_same_outputs(config):
    layer, x = _layer(*config)
    local = lowrank_to_local(layer)
    assert type(local).__name__ == f"LocallyConnected{config[0]}d"
    torch.testing.assert_close(local(x), layer(x), rtol=1e-12, atol=1e-12)
    # the materialised weight is the layout of Contract 3: the naive local loop agrees too
    torch.testing.assert_close(
        local_conv_reference(local._pad(x), local.weight, local.bias, local.stride, local._op_padding, 1, local.groups),
        layer(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_dense_matrix_and_local_to_dense(config):
    layer, x = _layer(*config)
    shape = tuple(x.shape[1:])
    matrix, bias = dense_matrix(layer, shape), dense_bias(layer, shape)
    torch.testing.assert_close(x.flatten(1) @ matrix.T + bias, layer(x).flatten(1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(local_to_dense(layer)(x.flatten(1)), layer(x).flatten(1), rtol=1e-12, atol=1e-12)
    sparse = dense_matrix(layer, shape, sparse=True)
    torch.testing.assert_close(sparse.to_dense(), matrix, rtol=0, atol=0)


@pytest.mark.parametrize("bias", [True, "shared", False])
@pytest.mark.parametrize("ndim", [1, 2])
def test_any_local_layer_is_a_lowrank_layer_of_rank_positions(ndim, bias):
    torch.manual_seed(1)
    size = (9, 7)[:ndim] if ndim == 2 else (11,)
    local = (layerlab.LocallyConnected1d, layerlab.LocallyConnected2d)[ndim - 1](
        4, 6, 3, stride=2, padding=1, groups=2, bias=bias, input_size=size, dtype=torch.float64)
    lowrank = local_to_lowrank(local)
    positions = local.weight.shape[:ndim].numel()
    assert lowrank.rank == positions and lowrank.combining == "full" and lowrank.normalize is None
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    torch.testing.assert_close(lowrank(x), local(x), rtol=1e-12, atol=1e-12)
    # and back: the round trip gives the local weights again
    again = lowrank_to_local(lowrank)
    torch.testing.assert_close(again.weight, local.weight, rtol=0, atol=0)
    assert (again.bias is None) == (local.bias is None)


def test_convert_model_to_local_and_dense():
    torch.manual_seed(2)
    model = torch.nn.Sequential(layerlab.LowRankLocallyConnected2d(2, 3, 3, rank=2, padding=1, input_size=(5, 5)),
                                torch.nn.ReLU()).double()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    for to in ("local", "dense"):
        converted = convert_model(model, to, (2, 5, 5))
        torch.testing.assert_close(converted(x), model(x), rtol=1e-12, atol=1e-12)
    assert isinstance(convert_model(model, "local", (2, 5, 5))[0], layerlab.LocallyConnected2d)


def test_wrong_layer_is_named():
    with pytest.raises(ArgumentError, match=re.escape(
            "lowrank_to_local: expected a LowRankLocallyConnected1d/2d/3d layer (torch.nn or layerlab). Received: "
            "Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1))")):
        lowrank_to_local(torch.nn.Conv2d(1, 2, 3))
    with pytest.raises(ArgumentError, match=re.escape(
            "lowrank_to_local: LowRankLocallyConnected2d(1, 2, kernel_size=(3, 3), rank=2) is a lazy layer whose "
            "weight is not materialised yet. Run one forward pass on an input of the right shape first")):
        lowrank_to_local(layerlab.LowRankLocallyConnected2d(1, 2, 3, rank=2))
