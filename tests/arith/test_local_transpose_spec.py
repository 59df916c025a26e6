"""``LocalTransposeSpec``: its arithmetic against counts measured on torch modules, its checks
against its siblings', and the layer-string parser's entry for it."""

from __future__ import annotations

import ast
from math import prod

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import layerlab.nn as lnn
from layerlab.arith import ConvTransposeSpec, LocalTransposeSpec, parse_layer, receptive_field
from layerlab.arith.parse import torch_order_note
from layerlab.errors import ArgumentError, LayerlabError, ShapeError

# ndim, c_in, c_out, size, kernel, stride, padding, output_padding, dilation, groups
CONFIGS = [
    (1, 3, 5, (7,), 4, 2, 1, 0, 1, 1),
    (1, 4, 4, (5,), 3, 3, 2, 1, 2, 2),
    (1, 2, 2, (4,), 3, 1, 2, 1, 2, 1),  # output_padding ≥ stride, allowed by dilation
    (2, 4, 6, (4, 5), (4, 3), (2, 1), (1, 0), (1, 0), 1, 2),
    (2, 3, 2, (3, 3), 3, 2, 0, 1, 1, 1),
    (3, 4, 2, (3, 3, 2), 3, 2, 1, 1, 1, 2),
]
IDS = [f"{c[0]}d-s{c[5]}-p{c[6]}-op{c[7]}-d{c[8]}-g{c[9]}" for c in CONFIGS]
BIASES = {"location": True, "shared": "shared", None: False}  # spec bias -> the module's torch-like argument


def spec_of(config, bias="location"):
    ndim, c_in, c_out, _, kernel, stride, padding, output_padding, dilation, groups = config
    return LocalTransposeSpec(ndim, c_out, kernel, c_in, stride, padding, output_padding, dilation, groups, bias)


def module_of(config, bias="location"):
    ndim, c_in, c_out, size, kernel, stride, padding, output_padding, dilation, groups = config
    return getattr(lnn, f"LocallyConnectedTranspose{ndim}d")(
        c_in, c_out, kernel, stride, padding, output_padding, dilation, groups, BIASES[bias], input_size=size)


@pytest.mark.parametrize("bias", ["location", "shared", None])
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_shape_and_params_match_the_module(config, bias):
    shape = (config[1], *config[3])
    report = spec_of(config, bias).analyse(shape)
    module = module_of(config, bias)
    assert report.kind == f"LocallyConnectedTranspose{config[0]}d"
    assert report.params == sum(p.numel() for p in module.parameters())
    with torch.no_grad():
        assert report.output_shape == tuple(module(torch.zeros(1, *shape)).shape[1:])
    assert report.activation_elements == prod(report.output_shape)
    assert report.other_ops == ({"bias_add": prod(report.output_shape)} if bias else {})


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_macs_are_the_matching_conv_transposes_and_count_every_product(config):
    """MACs = torch's FlopCounterMode on the ConvTranspose of the same shape / 2, and, independently,
    the products the layer computes: with ones as input and weight, its output sums to the products
    that land inside the output (``macs_effective``); without padding, that is every product."""
    ndim, c_in, c_out, size, kernel, stride, padding, output_padding, dilation, groups = config
    shape = (c_in, *size)
    report = spec_of(config).analyse(shape)
    conv = getattr(torch.nn, f"ConvTranspose{ndim}d")(c_in, c_out, kernel, stride, padding, output_padding,
                                                       groups, True, dilation)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        conv(torch.zeros(1, *shape))
    assert report.macs == counter.get_total_flops() // 2
    for crop in (padding, 0):
        counted = module_of(config[:6] + (crop,) + config[7:], bias=None).double()
        report = spec_of(config[:6] + (crop,) + config[7:]).analyse(shape)
        with torch.no_grad():
            counted.weight.fill_(1.0)
            products = int(counted(torch.ones(1, *shape, dtype=torch.float64)).sum().item())
        assert report.macs_effective == products
        if crop in (0, (0,) * ndim):
            assert report.macs == products


def test_params_count_one_filter_bank_per_input_position():
    report = LocalTransposeSpec(2, 8, 3, stride=2, bias="shared").analyse((4, 3, 3))
    assert report.output_shape == (8, 7, 7)
    assert report.params == 3 * 3 * 4 * 8 * 9 + 8
    assert report.params - 8 == 9 * (ConvTransposeSpec(2, 8, 3, 4, stride=2, bias=False).analyse((4, 3, 3)).params)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_formulas_windows_and_receptive_field_are_the_conv_transposes(config):
    ndim, c_in, c_out, size, kernel, stride, padding, output_padding, dilation, groups = config
    shape = (c_in, *size)
    local = spec_of(config).analyse(shape)
    conv = ConvTransposeSpec(ndim, c_out, kernel, c_in, stride, padding, output_padding, dilation, groups).analyse(shape)
    assert local.formulas == conv.formulas and local.window == conv.window and local.warnings == conv.warnings
    assert all(w.transposed for w in local.window)
    (local_field,), (conv_field,) = receptive_field([local], shape), receptive_field([conv], shape)
    assert local_field.dims == conv_field.dims and local_field.kind == f"LocallyConnectedTranspose{ndim}d"


def test_describe():
    spec = LocalTransposeSpec(2, 8, 4, stride=2, padding=1, output_padding=1, bias="shared")
    assert spec.describe() == ("LocallyConnectedTranspose2d(? → 8, kernel_size=4, stride=2, padding=1, "
                               "output_padding=1, bias='shared')")


# the same mistakes, one wording: the transposed local spec's messages are ConvTransposeSpec's (and
# the local bias check LocalSpec's), with its own name
MISTAKES = [
    dict(kernel_size=0),
    dict(kernel_size=3, stride=(1, 0)),
    dict(kernel_size=3, dilation=0),
    dict(kernel_size=3, groups=3),
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=3, padding=-1),
    dict(kernel_size=3, stride=2, output_padding=2),
    dict(kernel_size=3, output_padding=(1, 0)),
]


@pytest.mark.parametrize("kwargs", MISTAKES, ids=repr)
def test_argument_checks_are_the_conv_transposes(kwargs):
    with pytest.raises(ArgumentError) as conv:
        ConvTransposeSpec(2, 8, in_channels=4, **kwargs)
    with pytest.raises(ArgumentError) as local:
        LocalTransposeSpec(2, 8, in_channels=4, **kwargs)
    assert str(local.value) == str(conv.value).replace("ConvTranspose2d", "LocallyConnectedTranspose2d")


def test_errors_are_pinned():
    with pytest.raises(ArgumentError, match=r"^LocallyConnectedTranspose2d: output_padding must be smaller than stride "
                       r"or dilation \(as torch\). Received: output_padding=2, stride=2, dilation=1$"):
        LocalTransposeSpec(2, 8, 3, stride=2, output_padding=2)
    with pytest.raises(ArgumentError, match=r"^LocallyConnectedTranspose2d: bias must be one of 'location', 'shared', "
                       r"None. Received: bias=True$"):
        LocalTransposeSpec(2, 8, 3, bias=True)
    with pytest.raises(ShapeError, match=r"^LocallyConnectedTranspose1d\(\? → 8, kernel_size=1, stride=2, padding=1\): "
                       r"L: the output size would be \(1 − 1\)·2 − 2·1 \+ 1·\(1−1\) \+ 0 \+ 1 = -1 < 1: padding 1 "
                       r"crops more than the full output \(1 \+ 0\). Fix: less padding or a larger input.$"):
        LocalTransposeSpec(1, 8, 1, stride=2, padding=1).analyse((3, 1))
    with pytest.raises(ShapeError, match=r"expects 4 input channels, gets 3"):
        LocalTransposeSpec(2, 8, 3, in_channels=4).analyse((3, 5, 5))


@pytest.mark.parametrize("text, expected", [
    ("LocallyConnectedTranspose2d(8, 3, stride=2)", LocalTransposeSpec(2, 8, 3, stride=2)),
    ("LocallyConnectedTranspose1d(8, 3, 2, 1, 1, bias='shared')",
     LocalTransposeSpec(1, 8, 3, stride=2, padding=1, output_padding=1, bias="shared")),
    ("LocallyConnectedTranspose3d(4, 2, bias=False, in_channels=2)", LocalTransposeSpec(3, 4, 2, 2, bias=None)),
])
def test_parses_to_the_spec(text, expected):
    assert parse_layer(text) == expected


@pytest.mark.parametrize("args, shape", [("6, 3, 2, 1, 1, 1, 2, 'shared'", (4, 3, 4)),
                                         ("3, (2, 3), (2, 1), (1, 0), (1, 0), (1, 2), 1, False", (2, 3, 3))])
def test_positional_order_is_the_modules(args, shape):
    """After the inferred in_channels, the positional order of the module's constructor."""
    values = ast.literal_eval(f"({args},)")
    module = lnn.LocallyConnectedTranspose2d(shape[0], *values, input_size=shape[1:])
    report = parse_layer(f"LocallyConnectedTranspose2d({args})").analyse(shape)
    assert report.params == sum(p.numel() for p in module.parameters())
    with torch.no_grad():
        assert report.output_shape == tuple(module(torch.zeros(1, *shape)).shape[1:])


def test_torch_order_note_rewrites_the_input_first_reading():
    note = torch_order_note("LocallyConnectedTranspose2d(3, 8, 3)")
    assert note.endswith("write 'LocallyConnectedTranspose2d(8, 3, in_channels=3)'")


def test_parse_errors_name_the_layer():
    with pytest.raises(LayerlabError, match=r"LocallyConnectedTranspose2d.*padding"):
        parse_layer("LocallyConnectedTranspose2d(8, 3, padding='same')")
