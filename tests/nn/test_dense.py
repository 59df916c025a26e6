"""Dense: nn.Linear maths and state_dict, lazy in_features, keyword-only in_features, clear errors."""

import pytest
import torch
from torch import nn

import layerlab
from layerlab.errors import ShapeError


def test_lazy_in_features_inferred_and_class_kept():
    layer = layerlab.Dense(10)
    assert repr(layer) == "Dense(10, in_features=?, bias=True)"
    assert layer.layer_spec().in_features is None
    out = layer(torch.randn(4, 784))
    assert out.shape == (4, 10)
    assert type(layer) is layerlab.Dense and layer.in_features == 784
    assert layer.weight.shape == (10, 784) and layer.bias.shape == (10,)
    assert repr(layer) == "Dense(10, in_features=784, bias=True)"
    assert layer.layer_spec().analyse((784,)).params == 7850


def test_in_features_is_keyword_only():
    with pytest.raises(TypeError):
        layerlab.Dense(784, 10)
    assert layerlab.Dense(10, in_features=784).weight.shape == (10, 784)


def test_same_as_linear_and_state_dict_both_ways():
    torch.manual_seed(0)
    ours = layerlab.Dense(3, in_features=5)
    linear = nn.Linear(5, 3)
    linear.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4, 5)  # Linear acts on the last dim of any-rank input
    torch.testing.assert_close(ours(x), linear(x), rtol=0, atol=0)
    lazy = layerlab.Dense(3)
    lazy.load_state_dict(linear.state_dict())  # a not yet called lazy layer takes Linear's weights
    torch.testing.assert_close(lazy(x), linear(x), rtol=0, atol=0)
    assert lazy.in_features == 5
    no_bias = layerlab.Dense(3, bias=False)
    no_bias(x)
    assert no_bias.bias is None and set(no_bias.state_dict()) == {"weight"}


def test_default_init_is_linears():
    torch.manual_seed(1)
    layer = layerlab.Dense(200, in_features=400)
    bound = 400 ** -0.5
    assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.99 * bound


def test_wrong_feature_count_after_flatten_hint():
    layer = layerlab.Dense(10, in_features=784)
    with pytest.raises(ShapeError, match=r"^Dense\(10, in_features=784, bias=True\) expects 784 input features \(the last dim\), got 28 from an input of shape \(2, 1, 28, 28\): the per-sample shape \(1, 28, 28\) has 1·28·28 = 784 elements; put layerlab.Flatten\(\) before this layer$"):
        layer(torch.randn(2, 1, 28, 28))


def test_wrong_feature_count_unflattened_other_size():
    layer = layerlab.Dense(10, in_features=4096)
    with pytest.raises(ShapeError, match=r"expects 4096 input features \(the last dim\), got 16 from an input of shape \(2, 64, 16, 16\): to use every element, put layerlab.Flatten\(\) before this layer: it gives 64·16·16 = 16384 features, so build Dense\(10, in_features=16384\) or leave in_features unset$"):
        layer(torch.randn(2, 64, 16, 16))


def test_wrong_feature_count_flattened_factorisation_hint():
    layer = layerlab.Dense(10, in_features=4096)
    with pytest.raises(ShapeError, match=r"expects 4096 input features \(the last dim\), got 16384 from an input of shape \(2, 16384\): 16384 = 4096·2², as if the feature maps were 2× larger per side; if it was flattened from C×H×W feature maps, 16384 = C·H·W \(check the spatial size after the last pooling\); build Dense\(10, in_features=16384\) or leave in_features unset to infer it$"):
        layer(torch.randn(2, 16384))
    with pytest.raises(ShapeError, match=r"got 100 from an input of shape \(2, 100\): if it was flattened"):
        layer(torch.randn(2, 100))


def test_zero_dim_input():
    layer = layerlab.Dense(2, in_features=3)
    with pytest.raises(ShapeError, match=r"Dense\(2, in_features=3, bias=True\) expects an input of shape \(\*, 3\), got a 0-d tensor: give it at least one dim"):
        layer(torch.tensor(1.0))
    with pytest.raises(ShapeError, match=r"Dense\(2, in_features=\?, bias=True\) expects an input of shape \(\*, in_features\), got a 0-d tensor: give it at least one dim"):
        layerlab.Dense(2)(torch.tensor(1.0))
