"""convert_model on nested models (identical outputs and gradients, the original untouched, named
errors), and the projections local_to_conv / dense_to_local with their reported loss."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import layerlab.nn as lnn
from layerlab.convert import (conv_to_local, convert_model, dense_matrix, dense_to_local, local_to_conv,
                              local_to_dense)
from layerlab.errors import ArgumentError, ShapeError, SizeLimitError

F64 = torch.float64
TOL = dict(rtol=0, atol=1e-10)


class Block(nn.Module):
    """Custom module without own parameters: residual over a ModuleList and a ModuleDict."""

    def __init__(self, shared: nn.Module):
        super().__init__()
        self.conv = lnn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")
        self.branch = nn.ModuleList([nn.Conv2d(4, 4, 1), nn.ReLU()])
        self.heads = nn.ModuleDict({"t": nn.ConvTranspose2d(4, 4, 2, stride=2), "down": shared})

    def forward(self, x):
        y = x + self.branch[1](self.branch[0](self.conv(x)))
        return self.heads["down"](self.heads["t"](y))


def _model(with_transpose=True):
    torch.manual_seed(0)
    shared = nn.Conv2d(4, 4, 2, stride=2)  # registered twice, called once
    block = Block(shared)
    if not with_transpose:
        block.heads["t"] = nn.Upsample(scale_factor=2)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(), block,
                          nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 2 * 2, 5))
    block.alias = shared  # the same module under a second name
    model[1].running_mean.normal_()
    return model.to(F64).eval()


def _out_and_grad(model, x):
    x = x.clone().requires_grad_(True)
    y = model(x)
    (y * torch.linspace(-1, 1, y.numel(), dtype=F64).view_as(y)).sum().backward()
    return y.detach(), x.grad


@pytest.mark.parametrize("to", ["local", "dense"])
def test_convert_model_is_exact_and_leaves_the_original(to):
    model = _model(with_transpose=(to == "dense"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted = convert_model(model, to=to, input_shape=(3, 8, 8))
    x = torch.randn(2, 3, 8, 8, dtype=F64)
    y, gx = _out_and_grad(converted, x)
    y_ref, gx_ref = _out_and_grad(model, x)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(gx, gx_ref, **TOL)
    for name, module in converted.named_modules():
        assert not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)), f"{name} still a conv"
    assert converted[3].alias is converted[3].heads["down"]  # shared module stays shared
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model[0], nn.Conv2d)
    if to == "dense":
        flatten, dense, unflatten = converted[0]
        assert isinstance(dense, lnn.Dense) and dense.weight.shape == (4 * 4 * 4, 3 * 8 * 8)
    else:
        assert isinstance(converted[0], lnn.LocallyConnected2d) and converted[0].input_size == (8, 8)


def test_convert_model_of_a_single_layer_and_tiled():
    torch.manual_seed(0)
    tiled = lnn.TiledConv1d(2, 3, 3, tile_size=2, padding=1).to(F64)
    local = convert_model(tiled, to="local", input_shape=(2, 7))
    x = torch.randn(4, 2, 7, dtype=F64)
    torch.testing.assert_close(local(x), tiled(x), **TOL)
    dense = convert_model(nn.Sequential(local), to="dense", input_shape=(2, 7))
    torch.testing.assert_close(dense(x), tiled(x), **TOL)


class OwnConv(nn.Module):
    """A custom leaf that convolves with its own parameter: convert_model cannot see inside."""

    def __init__(self):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(2, 2, 3, 3))

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.kernel, padding=1)


def test_convert_model_errors_are_named():
    with pytest.raises(ArgumentError, match=r"OwnConv at '1' \(OwnConv\(\)\) has its own parameters and is "
                       r"not a torch.nn or layerlab layer"):
        convert_model(nn.Sequential(nn.Conv2d(2, 2, 1), OwnConv()), to="local", input_shape=(2, 5, 5))
    with pytest.raises(ArgumentError, match=r"to must be 'local' or 'dense'. Received: to='sparse'"):
        convert_model(nn.Sequential(nn.Conv2d(2, 2, 1)), to="sparse", input_shape=(2, 3, 3))
    with pytest.raises(ArgumentError, match=r"parameter '0.weight' is lazy \(not materialised yet\)"):
        convert_model(nn.Sequential(nn.LazyConv2d(2, 1)), to="local", input_shape=(2, 3, 3))
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)
            self.spare = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(ArgumentError, match=r"Conv2d at 'spare' was not called by forward"):
        convert_model(Unused(), to="dense", input_shape=(2, 3, 3))

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.conv(x).sum() + self.conv(x[..., :2, :2]).sum()

    with pytest.raises(ArgumentError, match=r"Conv2d at 'conv' is called on inputs of different shapes "
                       r"\[\(2, 2, 2\), \(2, 3, 3\)\]"):
        convert_model(Twice(), to="local", input_shape=(2, 3, 3))
    with pytest.raises(ShapeError, match=r"the model's forward failed on an input of per-sample shape \(3, 3, 3\)"):
        convert_model(nn.Sequential(nn.Conv2d(2, 2, 1)), to="local", input_shape=(3, 3, 3))


def test_convert_model_to_dense_refuses_huge_models_before_allocating():
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1))
    n = 3 * 32 * 32 * 64 * 32 * 32 + (64 * 32 * 32) ** 2
    with pytest.raises(SizeLimitError, match=rf"convert_model\(to='dense'\) on input \(3, 32, 32\) would allocate "
                       rf"{n:,} elements × 4 bytes.*Convert to 'local' instead"):
        convert_model(model, to="dense", input_shape=(3, 32, 32))


def test_local_to_conv_of_converted_conv_is_lossless():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2).to(F64)
    back, loss = local_to_conv(conv_to_local(conv, (7, 6)))
    assert loss == 0.0
    torch.testing.assert_close(back.weight, conv.weight, rtol=0, atol=1e-15)
    torch.testing.assert_close(back.bias, conv.bias, rtol=0, atol=0)
    assert isinstance(back, lnn.Conv2d) and back.groups == 2


def test_local_to_conv_of_float32_copies_is_exactly_lossless():
    conv = nn.Conv2d(3, 5, 3, padding=1)  # float32: 30 equal filters average back exactly
    back, loss = local_to_conv(conv_to_local(conv, (6, 5)))
    assert loss == 0.0 and back.weight.dtype == torch.float32
    assert torch.equal(back.weight, conv.weight) and torch.equal(back.bias, conv.bias)


def test_local_to_conv_is_the_mean_filter_with_the_dropped_norm():
    torch.manual_seed(0)
    local = lnn.LocallyConnected2d(2, 3, 2, input_size=(4, 3)).to(F64)  # location bias (3, 3, 2)
    conv, loss = local_to_conv(local)
    positions = list(itertools.product(range(3), range(2)))
    # naive reference: mean over positions of each position's filter in torch's conv layout
    filters = []
    for p in positions:
        f = torch.empty(3, 2, 2, 2, dtype=F64)
        for o, c in itertools.product(range(3), range(2)):
            f[o, c] = local.weight[p][0, c, :, :, o]
        filters.append(f)
    mean = sum(filters) / len(filters)
    torch.testing.assert_close(conv.weight, mean, **TOL)
    torch.testing.assert_close(conv.bias, local.bias.mean(dim=(1, 2)), **TOL)
    dropped = sum((f - mean).square().sum() for f in filters) + (local.bias - conv.bias[:, None, None]).square().sum()
    total = local.weight.square().sum() + local.bias.square().sum()
    assert loss == pytest.approx(float((dropped / total).sqrt()), rel=1e-12)
    assert 0 < loss < 1


def test_dense_to_local_round_trip_and_dropped_norm():
    torch.manual_seed(0)
    local = lnn.LocallyConnected2d(2, 3, 3, padding=1, input_size=(4, 5)).to(F64)
    dense = local_to_dense(local)
    back, loss = dense_to_local(dense, local)
    assert loss == 0.0
    # taps on zero padding connect nothing: compare the dense-equivalent matrices and biases
    torch.testing.assert_close(dense_matrix(back, (2, 4, 5)), dense.weight, rtol=0, atol=0)
    torch.testing.assert_close(back.bias, local.bias, rtol=0, atol=0)
    # a dense layer with weights outside the windows: they are dropped and reported
    noisy = nn.Linear(2 * 4 * 5, 3 * 4 * 5).to(F64)
    projected, loss = dense_to_local(noisy, nn.Conv2d(2, 3, 3, padding=1), input_size=(4, 5))
    kept = dense_matrix(projected, (2, 4, 5))
    ones = lnn.LocallyConnected2d(2, 3, 3, padding=1, input_size=(4, 5), bias=False).to(F64)
    with torch.no_grad():
        ones.weight.fill_(1.0)
    mask = torch.autograd.functional.jacobian(lambda v: ones(v.view(1, 2, 4, 5)).flatten(),
                                              torch.zeros(40, dtype=F64)) != 0
    torch.testing.assert_close(kept, noisy.weight * mask, rtol=0, atol=0)
    dropped = (noisy.weight * ~mask).square().sum()
    total = noisy.weight.square().sum() + noisy.bias.square().sum()
    assert loss == pytest.approx(float((dropped / total).sqrt()), rel=1e-12)


def test_projection_errors_are_named():
    local = lnn.LocallyConnected1d(2, 2, 3, input_size=(6,))
    with pytest.raises(ArgumentError, match=r"local_to_conv: expected a LocallyConnected1d/2d/3d layer"):
        local_to_conv(nn.Conv1d(2, 2, 3))
    with pytest.raises(ArgumentError, match=r"like=Conv1d.* is a conv, which works on any size; pass input_size"):
        dense_to_local(nn.Linear(12, 8), nn.Conv1d(2, 2, 3))
    with pytest.raises(ShapeError, match=r"has weight shape \(8, 11\), but .* needs \[out_features, in_features\] "
                       r"= \[8, 12\]"):
        dense_to_local(nn.Linear(11, 8), local)
    with pytest.raises(ArgumentError, match=r"pads with padding_mode='circular', where several taps read the same"):
        dense_to_local(nn.Linear(12, 12), nn.Conv1d(2, 2, 3, padding=1, padding_mode="circular"), input_size=6)
    with pytest.raises(ArgumentError, match=r"dense_to_local: expected a materialised Dense or torch.nn.Linear"):
        dense_to_local(nn.ReLU(), local)
