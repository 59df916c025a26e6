"""layerlab.init: fans right for local/tiled layers (not from the storage shape: Keras 2's bug)."""

import math

import pytest
import torch
from torch import nn

import layerlab
from layerlab.errors import ArgumentError
from layerlab.init import fans, kaiming_normal_, kaiming_uniform_, xavier_normal_, xavier_uniform_


def test_fans_match_the_matching_conv_and_dense():
    local = layerlab.LocallyConnected2d(8, 16, 3, groups=2, input_size=(12, 12))
    tiled = layerlab.TiledConv2d(8, 16, 3, 2, groups=2)
    conv = nn.Conv2d(8, 16, 3, groups=2)
    assert fans(local) == fans(tiled) == (4 * 9, 8 * 9)
    # torch counts a grouped conv's fan_out as C_out·∏k (it ignores groups); one input unit really
    # reaches C_out/groups·∏k outputs, which is what the local fans use. Without groups they agree.
    assert fans(conv) == (4 * 9, 16 * 9)
    assert fans(layerlab.LocallyConnected2d(8, 16, 3, input_size=(5, 5))) == fans(nn.Conv2d(8, 16, 3)) == (72, 144)
    assert fans(layerlab.Dense(7, in_features=5)) == (5, 7)
    assert fans(nn.ConvTranspose2d(4, 6, 3)) == nn.init._calculate_fan_in_and_fan_out(nn.ConvTranspose2d(4, 6, 3).weight)
    assert fans(local.weight, layout="local") == (36, 72)
    # the storage-shape rule torch's nn.init would apply to the local weight is very different
    assert nn.init._calculate_fan_in_and_fan_out(local.weight) != (36, 72)



LOWRANK_CASES = [  # (low-rank class, local class, C_in, C_out, kernel_size, groups, rank, input_size)
    (layerlab.LowRankLocallyConnected1d, layerlab.LocallyConnected1d, 6, 4, 5, 1, 3, (12,)),
    (layerlab.LowRankLocallyConnected1d, layerlab.LocallyConnected1d, 6, 4, 5, 2, 3, (12,)),
    (layerlab.LowRankLocallyConnected2d, layerlab.LocallyConnected2d, 3, 8, 3, 1, 2, (8, 8)),
    (layerlab.LowRankLocallyConnected2d, layerlab.LocallyConnected2d, 6, 12, (3, 2), 3, 4, (7, 9)),
]


@pytest.mark.parametrize("lowrank_cls, local_cls, c_in, c_out, k, groups, rank, size", LOWRANK_CASES)
def test_lowrank_fans_are_the_matching_local_layers(lowrank_cls, local_cls, c_in, c_out, k, groups, rank, size):
    lowrank = lowrank_cls(c_in, c_out, k, rank=rank, groups=groups, input_size=size)
    local = local_cls(c_in, c_out, k, groups=groups, input_size=size)  # fans read from its own weight
    taps = math.prod(lowrank.kernel_size)
    assert fans(lowrank) == fans(local) == (c_in // groups * taps, c_out // groups * taps)
    # the storage-shape rule on the (R, C_out, C_in/groups, *k) weight counts C_out into fan_in
    assert nn.init._calculate_fan_in_and_fan_out(lowrank.weight)[0] == c_out * c_in // groups * taps


@pytest.mark.parametrize("normalize, alpha", [("softmax", 1 / 4), ("l2", 1 / 2), (None, 1 / 2)])
def test_lowrank_bases_get_the_conv_distribution_and_the_mix_scales_it(normalize, alpha):
    torch.manual_seed(0)
    rank = 4
    lowrank = layerlab.LowRankLocallyConnected2d(16, 32, 3, rank=rank, normalize=normalize, input_size=(6, 6))
    assert kaiming_normal_(lowrank, nonlinearity="relu") is lowrank
    std = math.sqrt(2 / 144)  # fan_in = 16·3·3, as the conv
    assert lowrank.weight.std().item() == pytest.approx(std, rel=0.02)  # 18,432 samples
    # constant starting logits: α_r = 1/R (softmax) or 1/√R ("l2", None), so the mixed kernel
    # Σ_r α_r·weight[r] has the variance std²·Σ_r α_r² = std²/R or std²
    mix = lowrank.combining_weights()[2, 3]
    assert torch.allclose(mix, torch.full((rank,), alpha))
    mixed = torch.einsum("r,r...->...", mix, lowrank.weight.detach())
    assert mixed.std().item() == pytest.approx(std * math.sqrt(rank) * alpha, rel=0.05)  # 4,608 samples

INITS = [
    (xavier_uniform_, nn.init.xavier_uniform_, {}),
    (xavier_normal_, nn.init.xavier_normal_, {}),
    (kaiming_uniform_, nn.init.kaiming_uniform_, dict(nonlinearity="relu")),
    (kaiming_normal_, nn.init.kaiming_normal_, dict(mode="fan_out", nonlinearity="relu")),
]


@pytest.mark.parametrize("ours, torchs, kwargs", INITS, ids=[i[0].__name__ for i in INITS])
def test_local_weight_std_equals_torchs_conv_std(ours, torchs, kwargs):
    torch.manual_seed(0)
    local = layerlab.LocallyConnected2d(16, 32, 3, input_size=(12, 12))  # 10·10·16·9·32 = 460,800 weights
    conv = nn.Conv2d(16, 32, 3)
    ours(local, **kwargs)
    torchs(conv.weight, **kwargs)
    got, want = local.weight.std().item(), conv.weight.std().item()
    # conv has 4,608 samples: its std estimate is within ~2% (4 sigma); the expected value is exact
    fan_in, fan_out = 144, 288
    fan = fan_out if kwargs.get("mode") == "fan_out" else fan_in
    exact = {
        "xavier_uniform_": math.sqrt(2 / (fan_in + fan_out)),
        "xavier_normal_": math.sqrt(2 / (fan_in + fan_out)),
        "kaiming_uniform_": math.sqrt(2 / fan),
        "kaiming_normal_": math.sqrt(2 / fan),
    }[ours.__name__]
    assert got == pytest.approx(exact, rel=0.01)
    assert want == pytest.approx(exact, rel=0.05)
    # the naive storage-shape fans (Keras 2's bug) would give a clearly different std
    naive_in, naive_out = nn.init._calculate_fan_in_and_fan_out(local.weight)
    naive = {
        "xavier_uniform_": math.sqrt(2 / (naive_in + naive_out)),
        "xavier_normal_": math.sqrt(2 / (naive_in + naive_out)),
        "kaiming_uniform_": math.sqrt(2 / (naive_out if kwargs.get("mode") == "fan_out" else naive_in)),
        "kaiming_normal_": math.sqrt(2 / (naive_out if kwargs.get("mode") == "fan_out" else naive_in)),
    }[ours.__name__]
    assert got / naive > 2


def test_tensor_with_layout_and_returns_what_it_was_given():
    w = torch.empty(4, 4, 1, 3, 3, 3, 8)
    assert xavier_uniform_(w, layout="local") is w
    bound = math.sqrt(6 / (27 + 72))
    assert w.abs().max() <= bound
    dense = torch.empty(10, 20)
    kaiming_uniform_(dense, layout="dense")
    assert dense.abs().max() <= math.sqrt(6 / 20)
    layer = layerlab.Dense(3, in_features=4)
    bias = layer.bias.detach().clone()
    assert xavier_normal_(layer) is layer
    assert torch.equal(layer.bias, bias)  # bias left alone, as torch.nn.init


def test_errors():
    with pytest.raises(ArgumentError, match=r"layerlab.init: a bare weight of shape \(3, 4\) needs its layout: pass layout='dense', 'conv', 'local' or 'tiled'"):
        xavier_uniform_(torch.empty(3, 4))
    with pytest.raises(ArgumentError, match=r"layerlab.init: layout must be one of 'dense', 'conv', 'local', 'tiled'. Received: layout='sparse'"):
        fans(torch.empty(3, 4), layout="sparse")
    with pytest.raises(ArgumentError, match=r"layerlab.init: ReLU\(\) has no weight tensor to initialise"):
        fans(layerlab.ReLU())
    with pytest.raises(ArgumentError, match=r"layerlab.init: Dense\(3, in_features=\?, bias=True\) has no weight yet \(lazy layer\): call it once on an input"):
        kaiming_normal_(layerlab.Dense(3))
    with pytest.raises(ArgumentError, match=r"layerlab.init: a 'local'/'tiled' weight must have shape .* Received: weight of shape \(3, 4\)"):
        fans(torch.empty(3, 4), layout="local")
    with pytest.raises(ArgumentError, match=r"layerlab.init: a 'conv' weight needs at least 2 dims .* Received: weight of shape \(3,\)"):
        fans(torch.empty(3), layout="conv")
    with pytest.raises(ArgumentError, match=r"layerlab.init: mode must be 'fan_in' or 'fan_out'. Received: mode='fan_avg'"):
        kaiming_uniform_(torch.empty(3, 4), mode="fan_avg", layout="dense")
    with pytest.raises(ArgumentError, match=r"layerlab.init: expected a module or a weight tensor. Received: list"):
        fans([1, 2])
