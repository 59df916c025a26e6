"""LocallyConnectedTranspose1d/2d/3d: against the float64 scatter loop, ConvTranspose, the matching
LocallyConnected layer (its matrix, transposed), gradcheck, lazy size, state_dict, compile, errors."""

import math
import random
import re

import pytest
import torch
from torch.autograd.functional import jacobian

import layerlab
from layerlab.arith.specs import LocalTransposeSpec
from layerlab.errors import ArgumentError, ShapeError, SizeLimitError
from layerlab.functional.reference import local_conv_transpose_reference

TRANSPOSE = {1: layerlab.LocallyConnectedTranspose1d, 2: layerlab.LocallyConnectedTranspose2d,
             3: layerlab.LocallyConnectedTranspose3d}
LOCAL = {1: layerlab.LocallyConnected1d, 2: layerlab.LocallyConnected2d, 3: layerlab.LocallyConnected3d}

# (ndim, C_in, C_out, in_size, kernel, stride, padding, output_padding, dilation, groups, bias)
CONFIGS = [
    (1, 2, 4, (5,), 3, 2, 1, 1, 1, 2, True),
    (1, 3, 3, (4,), 4, 1, 2, 1, 2, 3, "shared"),  # output_padding ≥ stride (dilation 2)
    (2, 4, 6, (3, 4), (3, 2), (2, 1), (1, 0), (1, 0), (1, 2), 2, True),
    (2, 3, 2, (3, 3), 3, 2, 0, 0, 1, 1, False),
    (3, 2, 2, (2, 3, 2), (2, 3, 2), (1, 2, 1), (0, 1, 1), (0, 1, 0), (1, 1, 2), 1, True),
]


def _build(config, **kwargs):
    ndim, c_in, c_out, size, k, s, p, op, d, g, bias = config
    return TRANSPOSE[ndim](c_in, c_out, k, s, p, op, d, g, bias, input_size=size, dtype=torch.float64, **kwargs)


@pytest.mark.parametrize("config", CONFIGS)
def test_forward_matches_loop_reference_and_spec(config):
    torch.manual_seed(0)
    layer = _build(config)
    x = torch.randn(3, config[1], *config[3], dtype=torch.float64)
    out = layer(x)
    ref = local_conv_transpose_reference(x, layer.weight, layer.bias, layer.stride, layer.padding,
                                         layer.output_padding, layer.dilation, layer.groups)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    assert tuple(out.shape[2:]) == layer.output_size
    report = layer.layer_spec().analyse((config[1], *config[3]))
    assert report.output_shape == tuple(out.shape[1:])
    assert report.params == sum(p.numel() for p in layer.parameters())


@pytest.mark.parametrize("config", CONFIGS)
def test_matrix_is_the_transpose_of_the_matching_local_layers(config):
    """With one weight tensor, the Jacobian of the transposed layer is the transposed Jacobian of
    ``LocallyConnected(C_out → C_in)`` over the output grid (both measured by autograd, not by the
    conversions' index arithmetic)."""
    ndim, c_in, c_out, size, k, s, p, op, d, g, _ = config
    torch.manual_seed(1)
    layer = _build(config[:-1] + (False,))
    local = LOCAL[ndim](c_out, c_in, k, s, p, d, g, bias=False, input_size=layer.output_size, dtype=torch.float64)
    assert local.output_size == tuple(size) or any(o >= st for o, st in zip(layer.output_padding, layer.stride))
    if local.weight.shape != layer.weight.shape:
        # output_padding ≥ stride: the local layer has extra output positions; its first ones are ours
        with torch.no_grad():
            local.weight.zero_()
            local.weight[tuple(slice(0, n) for n in size)] = layer.weight
    else:
        local.weight = layer.weight
    x = torch.zeros(1, c_in, *size, dtype=torch.float64)
    y = torch.zeros(1, c_out, *layer.output_size, dtype=torch.float64)
    m_transpose = jacobian(lambda t: layer(t).flatten(), x).reshape(y.numel(), x.numel())
    m_local = jacobian(lambda t: local(t)[(...,) + tuple(slice(0, n) for n in size)].flatten(), y)
    torch.testing.assert_close(m_transpose, m_local.reshape(x.numel(), y.numel()).T, rtol=0, atol=0)
    assert m_transpose.count_nonzero() > 0


@pytest.mark.parametrize("groups", [1, 2])
def test_one_filter_bank_everywhere_is_exactly_conv_transpose(groups):
    torch.manual_seed(2)
    conv = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=groups,
                                    dilation=(1, 2), dtype=torch.float64)
    layer = layerlab.LocallyConnectedTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, dilation=(1, 2),
                                                 groups=groups, bias="shared", input_size=(3, 4), dtype=torch.float64)
    bank = conv.weight.detach().view(groups, 4 // groups, 6 // groups, 3, 3).movedim(1, -1)
    with torch.no_grad():
        layer.weight.copy_(bank.expand_as(layer.weight))
        layer.bias.copy_(conv.bias)
    x = torch.randn(2, 4, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-12, atol=1e-12)


def test_location_bias_is_per_channel_and_output_position():
    layer = layerlab.LocallyConnectedTranspose2d(2, 3, 2, stride=2, input_size=(2, 3))
    assert layer.bias.shape == (3, 4, 6)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.arange(72.0).view(3, 4, 6))
    torch.testing.assert_close(layer(torch.randn(5, 2, 2, 3)), torch.arange(72.0).view(3, 4, 6).expand(5, 3, 4, 6))


@pytest.mark.parametrize("bias", [True, "shared"])
def test_gradcheck_input_weight_bias(bias):
    torch.manual_seed(3)
    layer = layerlab.LocallyConnectedTranspose2d(2, 2, (2, 3), stride=(2, 1), padding=(0, 1), output_padding=(1, 0),
                                                 bias=bias, input_size=(2, 3), dtype=torch.float64)
    x = torch.randn(2, 2, 2, 3, dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        return torch.func.functional_call(layer, {"weight": w, "bias": b}, (x,))

    params = (x, layer.weight, layer.bias)
    assert torch.autograd.gradcheck(f, params)
    assert torch.autograd.gradgradcheck(f, params)


def test_lazy_input_size_is_inferred_at_the_first_call():
    layer = layerlab.LocallyConnectedTranspose2d(3, 2, 3, stride=2)
    assert layer.has_uninitialized_params() and layer.output_size is None
    assert repr(layer) == ("LocallyConnectedTranspose2d(3, 2, kernel_size=(3, 3), stride=(2, 2), input_size=?, "
                           "output_size=?)")
    out = layer(torch.randn(4, 3, 5, 6))
    assert out.shape == (4, 2, 11, 13)
    assert layer.input_size == (5, 6) and layer.output_size == (11, 13)
    assert layer.weight.shape == (5, 6, 1, 2, 3, 3, 3) and layer.bias.shape == (2, 11, 13)
    assert type(layer) is layerlab.LocallyConnectedTranspose2d
    with pytest.raises(ShapeError, match=r"^LocallyConnectedTranspose2d\(3, 2, kernel_size=\(3, 3\), stride=\(2, 2\), "
                       r"input_size=\(5, 6\)\) was built for 5×6 inputs, got 6×6: a transposed local layer has one "
                       r"filter per input position; build a new layer or resize the input$"):
        layer(torch.randn(1, 3, 6, 6))


def test_unbatched_input_matches_batched():
    torch.manual_seed(4)
    layer = layerlab.LocallyConnectedTranspose1d(2, 3, 3, stride=2, input_size=4)
    x = torch.randn(2, 4)
    torch.testing.assert_close(layer(x), layer(x.unsqueeze(0)).squeeze(0))


def test_state_dict_round_trip_and_lazy_load():
    torch.manual_seed(5)
    src = layerlab.LocallyConnectedTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1, input_size=(3, 4))
    x = torch.randn(2, 2, 3, 4)
    state = src.state_dict()
    assert set(state) == {"weight", "bias"}
    same = layerlab.LocallyConnectedTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1, input_size=(3, 4))
    same.load_state_dict(state)
    torch.testing.assert_close(same(x), src(x))
    lazy = layerlab.LocallyConnectedTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1)
    lazy.load_state_dict(state)
    assert lazy.output_size == (6, 8) and lazy.input_size is None
    torch.testing.assert_close(lazy(x), src(x))
    assert lazy.input_size == (3, 4)
    with pytest.raises(ShapeError, match=r"LocallyConnectedTranspose2d\(2, 4, kernel_size=\(3, 3\), stride=\(2, 2\), "
                       r"padding=\(1, 1\), output_padding=\(1, 1\)\) holds weights for input size 3×4, got a 4×4 "
                       r"input: a transposed local layer has one filter per input position"):
        other = layerlab.LocallyConnectedTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1)
        other.load_state_dict(state)
        other(torch.randn(1, 2, 4, 4))


@pytest.mark.parametrize("ndim", [2, 3])
def test_channels_last_input(ndim):
    torch.manual_seed(6)
    config = CONFIGS[2] if ndim == 2 else CONFIGS[4]
    layer = _build(config)
    fmt = torch.channels_last if ndim == 2 else torch.channels_last_3d
    x = torch.randn(2, config[1], *config[3], dtype=torch.float64)
    out = layer(x.to(memory_format=fmt))
    assert out.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(out, layer(x), rtol=1e-12, atol=1e-12)


def test_torch_compile_gives_the_same_outputs_and_gradients():
    torch.manual_seed(7)
    layer = layerlab.LocallyConnectedTranspose2d(2, 3, 3, stride=2, padding=1, input_size=(3, 3))
    x = torch.randn(2, 2, 3, 3, requires_grad=True)
    compiled = torch.compile(layer)
    out, ref = compiled(x), layer(x)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    for got, want in zip(torch.autograd.grad(out, (x, layer.weight), g), torch.autograd.grad(ref, (x, layer.weight), g)):
        torch.testing.assert_close(got, want)


def test_default_init_is_torch_conv_transpose_default():
    torch.manual_seed(8)
    layer = layerlab.LocallyConnectedTranspose2d(8, 16, 3, groups=2, input_size=(20, 20))
    bound = 1 / math.sqrt(16 // 2 * 9)  # torch's ConvTranspose: fan_in from its weight's dim 1 = C_out/groups
    w = layer.weight.detach()
    assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound
    assert abs(w.std().item() - bound / math.sqrt(3)) < 0.01 * bound
    assert layer.bias.abs().max() <= bound
    assert layerlab.init.fans(layer) == (16 // 2 * 9, 8 // 2 * 9)


def test_repr_and_spec():
    layer = layerlab.LocallyConnectedTranspose2d(3, 8, 4, stride=2, padding=1, output_padding=1, bias="shared",
                                                 input_size=(5, 5))
    assert repr(layer) == ("LocallyConnectedTranspose2d(3, 8, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1), "
                           "output_padding=(1, 1), bias='shared', input_size=(5, 5), output_size=(11, 11))")
    spec = layer.layer_spec()
    assert type(spec) is LocalTransposeSpec and spec.bias == "shared" and spec.output_padding == (1, 1)
    assert layerlab.analysis.spec_of(layer) == spec


SPEC_CHECKED = [
    dict(kernel_size=0),
    dict(kernel_size=3, stride=(1, 0)),
    dict(kernel_size=(3, 3, 3)),
    dict(kernel_size=3, dilation=0),
    dict(kernel_size=3, groups=2),
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=3, padding=-1),
    dict(kernel_size=3, stride=2, output_padding=2),
]


@pytest.mark.parametrize("kwargs", SPEC_CHECKED, ids=repr)
def test_arguments_are_checked_by_the_spec(kwargs):
    """One wording per mistake: the module's message is its arith spec's."""
    with pytest.raises(ArgumentError) as by_spec:
        LocalTransposeSpec(2, 4, in_channels=3, **kwargs)
    with pytest.raises(ArgumentError) as by_module:
        layerlab.LocallyConnectedTranspose2d(3, 4, **kwargs)
    assert str(by_module.value) == str(by_spec.value)


def test_impossible_arguments():
    with pytest.raises(ArgumentError, match=r"^LocallyConnectedTranspose2d: in_channels must be a positive integer. "
                       r"Received: in_channels=None$"):
        layerlab.LocallyConnectedTranspose2d(None, 4, 3)
    with pytest.raises(ArgumentError, match=r"LocallyConnectedTranspose2d: bias must be True \(one per output channel "
                       r"and location\), 'shared' \(one per output channel\) or False/None. Received: bias='location'"):
        layerlab.LocallyConnectedTranspose2d(3, 4, 3, bias="location")
    with pytest.raises(ShapeError, match=r"LocallyConnectedTranspose2d\(3, 4, kernel_size=\(1, 1\), padding=\(1, 1\), "
                       r"input_size=\(1, 1\)\) cannot take its input_size: LocallyConnectedTranspose2d\(3 → 4, "
                       r"kernel_size=1, padding=1\): H: the output size would be"):
        layerlab.LocallyConnectedTranspose2d(3, 4, 1, padding=1, input_size=1)


def test_wrong_rank_and_channels():
    layer = layerlab.LocallyConnectedTranspose2d(3, 4, 3, input_size=(4, 4))
    with pytest.raises(ShapeError, match=r"LocallyConnectedTranspose2d\(3, 4, kernel_size=\(3, 3\), input_size=\(4, 4\)\) "
                       r"expects a 4-d input \(B, C_in, H, W\) or a 3-d unbatched input \(C_in, H, W\), got a 2-d input"):
        layer(torch.randn(2, 48))
    lazy = layerlab.LocallyConnectedTranspose2d(3, 4, 3)
    with pytest.raises(ShapeError, match=r"expects 3 input channels, got 5"):
        lazy(torch.randn(2, 5, 4, 4))
    assert lazy.has_uninitialized_params()


def _random_config(rng):
    ndim = rng.choice([1, 2, 3])
    groups = rng.choice([1, 2])
    c_in, c_out = groups * rng.randint(1, 2), groups * rng.randint(1, 2)
    k = tuple(rng.randint(1, 3) for _ in range(ndim))
    d = tuple(rng.randint(1, 3) for _ in range(ndim))
    s = tuple(rng.randint(1, 3) for _ in range(ndim))
    op = tuple(rng.randint(0, max(ss, dd) - 1) for ss, dd in zip(s, d))
    size = tuple(rng.randint(1, 4 if ndim < 3 else 2) for _ in range(ndim))
    # padding at most what keeps the output non-empty
    p = tuple(min(rng.randint(0, 2), ((n - 1) * ss + dd * (kk - 1) + o) // 2)
              for n, ss, dd, kk, o in zip(size, s, d, k, op))
    return ndim, c_in, c_out, size, k, s, p, op, d, groups, rng.choice([True, "shared", False])


@pytest.mark.parametrize("seed", range(16))
def test_random_configurations_match_loop_reference(seed):
    config = _random_config(random.Random(seed))
    torch.manual_seed(seed)
    layer = _build(config)
    x = torch.randn(2, config[1], *config[3], dtype=torch.float64)
    ref = local_conv_transpose_reference(x, layer.weight, layer.bias, layer.stride, layer.padding,
                                         layer.output_padding, layer.dilation, layer.groups)
    torch.testing.assert_close(layer(x), ref, rtol=1e-10, atol=1e-10)


def test_parameters_over_the_memory_limit_are_refused_before_allocating(monkeypatch):
    monkeypatch.delenv("LAYERLAB_MAX_BYTES", raising=False)
    with pytest.raises(SizeLimitError, match=re.escape(
            "LocallyConnectedTranspose2d(3, 8, kernel_size=(3, 3), input_size=(100000, 100000)): its parameters would "
            "allocate ")):
        layerlab.LocallyConnectedTranspose2d(3, 8, 3, input_size=(10**5, 10**5))
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "80")
    lazy = layerlab.LocallyConnectedTranspose1d(1, 1, 1, dtype=torch.float64)
    with pytest.raises(SizeLimitError, match=re.escape("12 elements × 8 bytes = 96 B")):
        lazy(torch.zeros(1, 1, 6, dtype=torch.float64))
    assert lazy.has_uninitialized_params()
