"""Dense: nn.Linear maths and state_dict, lazy in_features, keyword-only in_features, clear errors."""

import re

import pytest
import torch
from torch import nn

import layerlab
from layerlab.errors import ArgumentError, ShapeError, SizeLimitError


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


def test_wrong_feature_count_explained_per_sample():
    # the wording is arith's (tests/arith/test_errors.py); here: the layer's repr and the batch dim left out
    layer = layerlab.Dense(10, in_features=784)
    with pytest.raises(ShapeError, match=re.escape(
            "Dense(10, in_features=784, bias=True) expects 784 input features in the last dim, gets 28: the input "
            "(2, 1, 28, 28) is not flat. Fix: add Flatten() before it (it gives 1·28·28 = 784 features).")):
        layer(torch.randn(2, 1, 28, 28))
    with pytest.raises(ShapeError, match=re.escape(
            "Dense(10, in_features=784, bias=True) expects 784 input features, gets 3136: 3136 = 784·2², as if the "
            "feature maps were 2× larger per side. Fix: set in_features=3136 (or None to infer it).")):
        layer(torch.randn(2, 3136))
    with pytest.raises(ShapeError, match=re.escape("expects 784 input features, gets 100. Fix: set in_features=100")):
        layer(torch.randn(100))  # unbatched


def test_zero_dim_input():
    layer = layerlab.Dense(2, in_features=3)
    with pytest.raises(ShapeError, match=r"Dense\(2, in_features=3, bias=True\) expects an input of shape \(\*, 3\), got a 0-d tensor: give it at least one dim"):
        layer(torch.tensor(1.0))
    with pytest.raises(ShapeError, match=r"Dense\(2, in_features=\?, bias=True\) expects an input of shape \(\*, in_features\), got a 0-d tensor: give it at least one dim"):
        layerlab.Dense(2)(torch.tensor(1.0))


def test_parameters_over_the_memory_limit_are_refused_before_allocating(monkeypatch):
    monkeypatch.delenv("LAYERLAB_MAX_BYTES", raising=False)
    with pytest.raises(SizeLimitError, match=re.escape(
            "Dense(10, in_features=1000000000000, bias=True): its parameters would allocate 10,000,000,000,010 "
            "elements × 4 bytes = 36.4 TiB, over the limit of 2.0 GiB; nothing was allocated. Use fewer features "
            "(pool or stride before this layer), or raise the limit")):
        layerlab.Dense(10, in_features=10**12)
    lazy = layerlab.Dense(10**9, dtype=torch.float64)
    with pytest.raises(SizeLimitError, match=re.escape(
            "Dense(1000000000, in_features=8, bias=True): its parameters would allocate 9,000,000,000 elements × 8 "
            "bytes")):
        lazy(torch.randn(2, 8, dtype=torch.float64))
    assert lazy.has_uninitialized_params()  # nothing was materialised
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "400")  # 10·9 + 10 = 100 float32 parameters fit exactly
    assert layerlab.Dense(10, in_features=9).weight.shape == (10, 9)
    with pytest.raises(SizeLimitError, match="101 elements"):
        layerlab.Dense(1, in_features=100)
    with torch.device("meta"):  # shapes only: no memory, nothing to refuse
        assert layerlab.Dense(10, in_features=10**12).weight.is_meta


def test_arguments_checked_by_the_spec():
    with pytest.raises(ArgumentError, match=re.escape("Linear: out_features must be a positive integer. Received: out_features=0")):
        layerlab.Dense(0)
    with pytest.raises(ArgumentError, match=re.escape("Linear: bias must be True or False. Received: bias='yes'")):
        layerlab.Dense(3, bias="yes")
