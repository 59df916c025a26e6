"""LowRankLocallyConnected1d/2d/3d: loop reference, rank 1 = Conv, rank = positions = any local
layer, gradcheck, torch.compile, state_dict, channels_last, lazy size, errors."""

import math
import re

import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.arith.specs import LowRankLocalSpec
from layerlab.errors import ArgumentError, ShapeError, SizeLimitError
from layerlab.functional import combining_weights, lowrank_local_conv
from layerlab.functional.reference import (
    conv_reference,
    lowrank_local_conv_reference,
)

LOWRANK = {1: layerlab.LowRankLocallyConnected1d, 2: layerlab.LowRankLocallyConnected2d,
           3: layerlab.LowRankLocallyConnected3d}

# (ndim, C_in, C_out, in_size, kernel, rank, stride, padding, dilation, groups, bias, combining, normalize)
CONFIGS = [
    (1, 2, 4, (9,), 3, 3, 2, 1, 1, 2, True, "factorized", "softmax"),
    (2, 4, 6, (7, 6), (3, 2), 3, (2, 1), (1, 2), (2, 1), 2, True, "factorized", "softmax"),
    (2, 3, 2, (6, 5), 2, 2, (3, 2), 0, 1, 1, "shared", "full", "l2"),
    (2, 2, 3, (5, 5), 3, 4, 1, "same", 1, 1, False, "full", None),
    (3, 2, 2, (4, 5, 4), (2, 3, 2), 2, (1, 2, 1), (0, 1, 1), (1, 1, 2), 1, True, "factorized", None),
]


def _randomize(layer):
    """Random combining logits (the default init makes every position the same)."""
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("combining"):
                p.normal_()
    return layer


def _reference(layer, x):
    return lowrank_local_conv_reference(
        layer._pad(x), layer.weight, layer.combining_weights(), layer.bias, layer.stride,
        layer._op_padding, layer.dilation, layer.groups,
    )


@pytest.mark.parametrize("ndim, c_in, c_out, in_size, k, rank, s, p, d, g, bias, combining, normalize", CONFIGS)
def test_forward_matches_loop_reference(ndim, c_in, c_out, in_size, k, rank, s, p, d, g, bias, combining, normalize):
    torch.manual_seed(0)
    layer = _randomize(LOWRANK[ndim](c_in, c_out, k, rank, s, p, d, g, bias, input_size=in_size,
                                     combining=combining, normalize=normalize, dtype=torch.float64))
    x = torch.randn(2, c_in, *in_size, dtype=torch.float64)
    out = layer(x)
    torch.testing.assert_close(out, _reference(layer, x), rtol=1e-10, atol=1e-10)
    assert layer.layer_spec().analyse((c_in, *in_size)).output_shape == tuple(out.shape[1:])


def test_combining_weights_factorized_softmax_by_hand():
    torch.manual_seed(1)
    rows, cols = torch.randn(3, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    alpha = combining_weights([rows, cols], "softmax")
    i, j = 2, 1
    logits = rows[i] + cols[j]
    expected = torch.exp(logits) / torch.exp(logits).sum()
    torch.testing.assert_close(alpha[i, j], expected, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(combining_weights([rows, cols], "l2")[i, j], logits / logits.norm(), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(combining_weights([rows, cols], None)[i, j], logits, rtol=0, atol=0)


@pytest.mark.parametrize("normalize", ["softmax", "l2", None])
def test_rank_one_with_constant_combining_weights_is_the_conv(normalize):
    torch.manual_seed(2)
    layer = LOWRANK[2](4, 6, 3, rank=1, stride=2, padding=1, groups=2, input_size=(9, 8),
                       normalize=normalize, dtype=torch.float64)
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    conv = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=torch.float64)
    scale = layer.combining_weights()[0, 0, 0]  # softmax: 1; l2, None: 1/√1 = 1
    assert torch.all(layer.combining_weights() == scale)
    with torch.no_grad():
        conv.weight.copy_(scale * layer.weight[0])
        conv.bias.copy_(scale * layer.bias[0])
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(layer(x), conv_reference(x, conv.weight, conv.bias, 2, 1, 1, 2), rtol=1e-12, atol=1e-12)


def test_rank_one_softmax_stays_a_conv_whatever_the_logits():
    torch.manual_seed(3)
    layer = _randomize(LOWRANK[2](3, 5, 3, rank=1, padding=1, input_size=(6, 6), dtype=torch.float64))
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    expected = F.conv2d(x, layer.weight[0], layer.bias[0], padding=1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-13, atol=1e-13)


def test_default_init_starts_as_a_conv_with_torch_conv_variance():
    torch.manual_seed(4)
    layer = LOWRANK[2](8, 16, 3, rank=4, groups=2, input_size=(20, 20))
    alpha = layer.combining_weights()
    torch.testing.assert_close(alpha, torch.full_like(alpha, 0.25))
    bound = 1 / math.sqrt(8 // 2 * 9)
    mixed = (alpha[0, 0, :, None, None, None, None] * layer.weight).sum(0).detach()  # the kernel of every position
    # U(-b, b) has std b/√3; the mean of 4 draws from U(-2b, 2b) has the same std
    assert abs(mixed.std().item() - bound / math.sqrt(3)) < 0.1 * bound
    for normalize in ("l2", None):
        other = LOWRANK[2](8, 16, 3, rank=4, groups=2, input_size=(20, 20), normalize=normalize)
        torch.testing.assert_close(other.combining_weights(), torch.full_like(alpha, 0.5))
        assert other.weight.abs().max() <= bound


@pytest.mark.parametrize("bias", [True, "shared", False])
def test_gradcheck_input_weight_combining_bias(bias):
    torch.manual_seed(5)
    layer = _randomize(LOWRANK[2](2, 2, 2, rank=3, padding=1, groups=2, bias=bias, input_size=(3, 4), dtype=torch.float64))
    names = [n for n, _ in layer.named_parameters()]
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)

    def f(x, *params):
        return torch.func.functional_call(layer, dict(zip(names, params)), (x,))

    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    assert torch.autograd.gradcheck(f, (x, *params))


@pytest.mark.parametrize("ndim, combining", [(1, "factorized"), (2, "full"), (3, "factorized")])
def test_gradcheck_other_dims_and_combining(ndim, combining):
    torch.manual_seed(6)
    size = (4, 3, 3)[:ndim]
    layer = _randomize(LOWRANK[ndim](2, 2, 2, rank=2, padding=1, padding_mode="reflect", input_size=size,
                                     combining=combining, normalize="l2", dtype=torch.float64))
    names = [n for n, _ in layer.named_parameters()]
    x = torch.randn(1, 2, *size, dtype=torch.float64, requires_grad=True)

    def f(x, *params):
        return torch.func.functional_call(layer, dict(zip(names, params)), (x,))

    assert torch.autograd.gradcheck(f, (x, *[p.detach().clone().requires_grad_() for p in layer.parameters()]))


def test_second_derivatives():
    # the op is torch's conv, a product and a sum: autograd differentiates it to any order
    torch.manual_seed(11)
    layer = _randomize(LOWRANK[2](2, 2, 2, rank=2, padding=1, input_size=(3, 3), dtype=torch.float64))
    names = [n for n, _ in layer.named_parameters()]
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)

    def f(x, *params):
        return torch.func.functional_call(layer, dict(zip(names, params)), (x,))

    assert torch.autograd.gradgradcheck(f, (x, *[p.detach().clone().requires_grad_() for p in layer.parameters()]))


def test_torch_func_jacobian_matches_autograd():
    torch.manual_seed(12)
    layer = _randomize(LOWRANK[1](2, 3, 3, rank=2, input_size=6, dtype=torch.float64))
    x = torch.randn(2, 6, dtype=torch.float64)  # unbatched
    jac = torch.func.jacrev(layer)(x)
    torch.testing.assert_close(jac, torch.autograd.functional.jacobian(layer, x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.func.vmap(layer)(x[None].expand(3, 2, 6)), layer(x)[None].expand(3, 3, 4))


def test_lazy_input_size_and_state_dict_round_trip():
    torch.manual_seed(7)
    src = _randomize(LOWRANK[2](2, 4, 3, rank=3, stride=2, padding=1, input_size=(7, 7)))
    x = torch.randn(2, 2, 7, 7)
    state = src.state_dict()
    assert set(state) == {"weight", "bias", "combining_h", "combining_w"}
    assert state["combining_h"].shape == (4, 3) and state["weight"].shape == (3, 4, 2, 3, 3)
    same = LOWRANK[2](2, 4, 3, rank=3, stride=2, padding=1, input_size=(7, 7))
    same.load_state_dict(state)
    torch.testing.assert_close(same(x), src(x))
    lazy = LOWRANK[2](2, 4, 3, rank=3, stride=2, padding=1)
    assert lazy.output_size is None
    lazy.load_state_dict(state)
    assert lazy.output_size == (4, 4) and lazy.input_size is None
    torch.testing.assert_close(lazy(x), src(x))
    assert lazy.input_size == (7, 7)
    fresh = LOWRANK[2](2, 4, 3, rank=3, stride=2, padding=1, combining="full")
    assert fresh(x).shape == (2, 4, 4, 4) and fresh.input_size == (7, 7) and fresh.combining_hw.shape == (4, 4, 3)


def test_loaded_lazy_layer_rejects_an_input_of_another_size():
    src = LOWRANK[2](2, 4, 3, rank=2, input_size=(7, 7))
    lazy = LOWRANK[2](2, 4, 3, rank=2)
    lazy.load_state_dict(src.state_dict())
    with pytest.raises(ShapeError, match=re.escape(
            "LowRankLocallyConnected2d(2, 4, kernel_size=(3, 3), rank=2) holds combining weights for output size "
            "5×5, but a 8×8 input gives 6×6: feed inputs of the size the weights were trained on")):
        lazy(torch.randn(1, 2, 8, 8))
    with pytest.raises(ShapeError, match=re.escape(
            "LowRankLocallyConnected2d(2, 4, kernel_size=(3, 3), rank=2, input_size=(7, 7)) was built for 7×7 "
            "inputs, got 8×8: it has combining weights per position; build a new layer or resize the input")):
        src(torch.randn(1, 2, 8, 8))


def test_torch_compile_gives_the_same_outputs():
    torch.manual_seed(8)
    layer = _randomize(LOWRANK[2](2, 3, 3, rank=2, padding=1, input_size=(5, 5)))
    x = torch.randn(2, 2, 5, 5)
    compiled = torch.compile(layer)
    torch.testing.assert_close(compiled(x), layer(x))


def test_channels_last_and_unbatched_inputs():
    torch.manual_seed(9)
    layer = _randomize(LOWRANK[2](4, 6, 3, rank=3, padding=1, groups=2, input_size=(6, 7), dtype=torch.float64))
    x = torch.randn(2, 4, 6, 7, dtype=torch.float64)
    expected = _reference(layer, x)
    torch.testing.assert_close(layer(x.to(memory_format=torch.channels_last)), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(layer(x[1]), expected[1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtypes(dtype):
    torch.manual_seed(10)
    layer = _randomize(LOWRANK[2](3, 4, 3, rank=2, padding=1, input_size=(6, 6), dtype=dtype))
    x = torch.randn(2, 3, 6, 6, dtype=dtype)
    out = layer(x)
    assert out.dtype == dtype
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(out.double(), _reference(layer, x), rtol=tol, atol=tol)


def test_repr_and_spec():
    layer = LOWRANK[2](3, 8, 3, rank=4, padding="same", bias="shared", combining="full", normalize=None,
                       input_size=(10, 10))
    assert repr(layer) == ("LowRankLocallyConnected2d(3, 8, kernel_size=(3, 3), rank=4, padding='same', "
                           "bias='shared', combining='full', normalize=None, input_size=(10, 10))")
    assert layer.layer_spec() == LowRankLocalSpec(2, 8, 3, rank=4, in_channels=3, padding="same", bias="shared",
                                                  combining="full", normalize=None)


@pytest.mark.parametrize("kwargs", [
    dict(rank=0), dict(rank=2.0), dict(rank=2, combining="rows"), dict(rank=2, normalize="norm"),
    dict(rank=2, groups=2), dict(rank=2, padding="same", stride=2),
], ids=repr)
def test_arguments_are_checked_by_the_spec(kwargs):
    # one wording per mistake: the module's message is its arith spec's (pinned in tests/arith)
    with pytest.raises(ArgumentError) as by_spec:
        LowRankLocalSpec(2, 4, 3, in_channels=3, **kwargs)
    with pytest.raises(ArgumentError) as by_module:
        LOWRANK[2](3, 4, 3, **kwargs)
    assert str(by_module.value) == str(by_spec.value)


def test_bias_argument_is_torch_style():
    with pytest.raises(ArgumentError, match=re.escape(
            "LowRankLocallyConnected2d: bias must be True (one per output channel and location), 'shared' (one per "
            "output channel) or False/None. Received: bias='location'")):
        LOWRANK[2](3, 4, 3, rank=2, bias="location")


def test_wrong_channels_message():
    layer = LOWRANK[2](3, 4, 3, rank=2)
    with pytest.raises(ShapeError, match=re.escape(
            "LowRankLocallyConnected2d(3, 4, kernel_size=(3, 3), rank=2) expects 3 input channels, got 2 from an "
            "input of shape (1, 2, 8, 8)")):
        layer(torch.randn(1, 2, 8, 8))


def test_functional_op_checks_the_combining_size():
    with pytest.raises(ShapeError, match=re.escape(
            "lowrank_local_conv: the combining weights are for output size (4, 6), but the input (2, 3, 7, 6) "
            "gives (5, 4): build them for this input size")):
        lowrank_local_conv(torch.randn(2, 3, 7, 6), torch.randn(2, 5, 3, 3, 3), torch.rand(4, 6, 2))


def test_functional_op_checks_its_shapes_and_normalisation():
    with pytest.raises(ShapeError, match=re.escape(
            "lowrank_local_conv: expected a (B, C_in, *in_size) input with 1-3 spatial dims, a (R, C_out, "
            "C_in // groups, *kernel_size) weight and (*out_size, R) combining weights. Received: input of shape "
            "(2, 3, 7, 6), weight of shape (2, 5, 3, 3, 3), combining of shape (5, 4, 3)")):
        lowrank_local_conv(torch.randn(2, 3, 7, 6), torch.randn(2, 5, 3, 3, 3), torch.rand(5, 4, 3))
    with pytest.raises(ArgumentError, match=re.escape(
            "combining_weights: normalize must be one of 'softmax', 'l2', None. Received: normalize='sum'")):
        combining_weights(torch.zeros(3, 2), "sum")


def test_parameters_over_the_memory_limit_are_refused_before_allocating(monkeypatch):
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "400")  # 100 float32
    # 2·1·1·1 weights + 2 biases + combining 2·(L_out = 48) = 100
    assert LOWRANK[1](1, 1, 1, rank=2, input_size=48).weight.numel() == 2
    with pytest.raises(SizeLimitError, match=re.escape("102 elements × 4 bytes = 408 B")):
        LOWRANK[1](1, 1, 1, rank=2, input_size=49)
    lazy = LOWRANK[1](1, 1, 1, rank=2)
    with pytest.raises(SizeLimitError, match=re.escape("102 elements × 4 bytes = 408 B")):
        lazy(torch.randn(1, 1, 49))
