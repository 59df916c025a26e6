"""The layer-string parser: torch's positional order (checked against torch modules), the
output-size-first rule, pinned error messages, and fuzzing (every input parses or raises
LayerlabError, quickly)."""

from __future__ import annotations

import ast
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerlab.arith import analyse_stack, parse_layer, parse_shape, parse_stack, specs
from layerlab.arith.parse import LAYER_NAMES, MAX_TEXT_LENGTH, torch_order_note
from layerlab.errors import ArgumentError, LayerlabError, ShapeError


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Linear(10)", specs.DenseSpec(10)),
        ("Dense(10, bias=False)", specs.DenseSpec(10, bias=False)),
        ("Linear(10, in_features=4096)", specs.DenseSpec(10, in_features=4096)),
        ("Conv2d(64, 4, stride=2, padding=1)", specs.ConvSpec(2, 64, 4, stride=2, padding=1)),
        ("Conv2d(128, 4, 2, 1)", specs.ConvSpec(2, 128, 4, stride=2, padding=1)),
        ("Conv1d(8, 3, 1, 'same', 2, 2, False, 'reflect')", specs.ConvSpec(1, 8, 3, stride=1, padding="same", dilation=2, groups=2, bias=False, padding_mode="reflect")),
        ("Conv3d(8, (1, 3, 3), in_channels=4)", specs.ConvSpec(3, 8, (1, 3, 3), in_channels=4)),
        ("Conv2d(8, [3, 5])", specs.ConvSpec(2, 8, (3, 5))),
        ("ConvTranspose2d(64, 4, 2, 1, 1)", specs.ConvTransposeSpec(2, 64, 4, stride=2, padding=1, output_padding=1)),
        ("LocallyConnected2d(8, 3, bias='shared')", specs.LocalSpec(2, 8, 3, bias="shared")),
        ("LocallyConnected1d(8, 3, 2, bias=None)", specs.LocalSpec(1, 8, 3, stride=2, bias=None)),
        ("LocallyConnected2d(8, 3, bias=False)", specs.LocalSpec(2, 8, 3, bias=None)),
        ("LocallyConnected3d(8, 3, bias=True)", specs.LocalSpec(3, 8, 3, bias="location")),
        ("TiledConv1d(8, 3, 2, bias='location')", specs.TiledSpec(1, 8, 3, tile_size=2, bias="location")),
        ("TiledConv2d(8, 3, 2)", specs.TiledSpec(2, 8, 3, tile_size=2)),
        ("MaxPool2d(2)", specs.PoolSpec(2, "max", 2)),
        ("MaxPool1d(3, 2, 1, 1, False, True)", specs.PoolSpec(1, "max", 3, stride=2, padding=1, ceil_mode=True)),
        ("AvgPool3d(2, count_include_pad=False)", specs.PoolSpec(3, "avg", 2, count_include_pad=False)),
        ("AdaptiveAvgPool2d((None, 4))", specs.AdaptivePoolSpec(2, "avg", (None, 4))),
        ("GlobalAvgPool()", specs.global_pool("avg")),
        ("GlobalMaxPool", specs.global_pool("max")),
        ("BatchNorm2d()", specs.NormSpec("batch", ndim=2)),
        ("BatchNorm1d(64, eps=1e-3, momentum=None)", specs.NormSpec("batch", 64, ndim=1)),
        ("InstanceNorm2d()", specs.NormSpec("instance", ndim=2, affine=False, track_running_stats=False)),
        ("LayerNorm(elementwise_affine=False)", specs.NormSpec("layer", affine=False)),
        ("GroupNorm(8)", specs.NormSpec("group", num_groups=8)),
        ("Flatten()", specs.FlattenSpec()),
        ("Flatten(2)", specs.FlattenSpec(2)),
        ("LeakyReLU(0.2)", specs.elementwise("LeakyReLU")),
        ("ReLU(inplace=True)", specs.elementwise("ReLU")),
        ("  Dropout(p=0.5)  ", specs.elementwise("Dropout")),
        ("Identity()", specs.elementwise("Identity")),
        ("Upsample(scale_factor=2)", specs.upsample(scale_factor=2)),
        ("Upsample(size=(8, 8), mode='bilinear')", specs.upsample(size=(8, 8), mode="bilinear")),
        ("Conv2d(+8, 3)", specs.ConvSpec(2, 8, 3)),
    ],
)
def test_parses_to_the_spec(text, expected):
    assert parse_layer(text) == expected


# torch's own constructors take the same positional arguments after the input size: the parsed
# spec must analyse to the same parameter count and output shape as the torch module
TORCH_ORDER = [
    ("Conv2d", "64, 4, 2, 1", (3, 16, 16)),
    ("Conv1d", "6, 3, 2, 1, 2, 3, False", (3, 20)),
    ("ConvTranspose2d", "6, 4, 2, 1, 1, 2, False, 1", (4, 5, 5)),
    ("ConvTranspose1d", "6, 3, 3, 2, 1, 3, True, 2", (3, 7)),
    ("MaxPool2d", "3, 2, 1, 2", (2, 13, 13)),
    ("AvgPool1d", "3, 2, 1, True, False", (2, 10)),
    ("BatchNorm2d", "3, 1e-3, 0.2, False, False", (3, 4, 4)),
    ("GroupNorm", "2, 4, 1e-5, False", (4, 3, 3)),
    ("AdaptiveMaxPool2d", "(2, 3)", (2, 7, 7)),
    ("Flatten", "2", (3, 4, 5)),
]


@pytest.mark.parametrize("name, args, shape", TORCH_ORDER)
def test_positional_order_is_torchs(name, args, shape):
    torch = pytest.importorskip("torch")
    values = ast.literal_eval(f"({args},)")
    channels = () if name in ("MaxPool2d", "AvgPool1d", "AdaptiveMaxPool2d", "Flatten", "GroupNorm") or name.startswith("BatchNorm") else (shape[0],)
    module = getattr(torch.nn, name)(*channels, *values)
    report = parse_layer(f"{name}({args})").analyse(shape)
    assert report.params == sum(p.numel() for p in module.parameters())
    with torch.no_grad():
        assert report.output_shape == tuple(module.eval()(torch.randn(2, *shape)).shape[1:])


def test_stack_rule_output_first_and_pinned_input():
    stack = ["Conv2d(64,3,padding=1)", "MaxPool2d(2)", "Conv2d(64,3,padding=1)", "MaxPool2d(2)", "Flatten()", "Linear(10, in_features=4096)"]
    reports = analyse_stack(parse_stack(stack), parse_shape("3x32x32"))
    assert reports[-1].output_shape == (10,) and reports[-1].params == 40_970
    with pytest.raises(ShapeError, match=r"Linear\(4096 → 10\) expects 4096 input features, gets 16384.*the input is 64×64, not 32×32"):
        analyse_stack(parse_stack(stack), parse_shape("3x64x64"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("Conv3x(3)", r"unknown layer 'Conv3x' in 'Conv3x\(3\)'; did you mean 'Conv3d'"),
        ("Frobnicate(3)", r"unknown layer 'Frobnicate' in 'Frobnicate\(3\)'; known layers: AdaptiveAvgPool1d, "),
        ("Conv2d(64, 4, strde=2)", r"Conv2d has no argument 'strde' \(at column 15 of 'Conv2d\(64, 4, strde=2\)'\); did you mean 'stride'\? Conv2d accepts: in_channels, out_channels"),
        ("Linear(10, 20)", r"Linear takes at most 1 positional argument\(s\) \(out_features\), got 2 in 'Linear\(10, 20\)'; the extra one is at column 12 .*pass the others by keyword; "
                            r"if you meant torch's order \(in_features first\), write 'Linear\(20, in_features=10\)'$"),
        ("Flatten(1, 2, 3)", r"Flatten takes at most 2 positional argument\(s\) \(start_dim, end_dim\), got 3"),
        ("GlobalAvgPool(1)", r"GlobalAvgPool takes at most 0 positional argument\(s\) \(no positional arguments\), got 1"),
        ("Conv2d()", r"Conv2d\(\): Conv2d needs out_channels and kernel_size; positional order is out_channels, kernel_size, stride, .*e.g. Conv2d\(64, 3\)"),
        ("Conv2d(64, 0)", r"Conv2d\(64, 0\): Conv2d: kernel_size must be positive integers. Received: kernel_size=0"),
        ("Conv2d(64, 3, stride=0)", r"Conv2d: stride must be positive integers. Received: stride=0"),
        ("Conv2d(64, 3, bias=1)", r"Conv2d argument bias must be True or False, got 1 at column 20"),
        ("Conv2d(64, 3.5)", r"Conv2d argument kernel_size must be an integer or a non-empty tuple of integers, got 3.5 at column 12"),
        ("Conv2d(64, 3, padding='full')", r"Conv2d argument padding must be an integer, a tuple of integers, 'same' or 'valid', got 'full'"),
        ("Conv2d(64, 3, stride=2, stride=2)", r"Conv2d got argument 'stride' 2 times by keyword in "),
        ("Conv2d(8, 3, stride=1, stride=1, stride=1, stride=1, stride=1)",
         r"Conv2d got argument 'stride' 5 times by keyword in 'Conv2d\(8, 3, stride=1, .*'; give it once"),
        ("Conv2d(64, 3, 2, stride=2)", r"Conv2d got argument 'stride' twice \(positionally and by keyword\)"),
        ("Dropout(1.5)", r"Dropout argument p must be a probability between 0 and 1, got 1.5"),
        ("LocallyConnected2d(8, 3, bias='per-pixel')", r"LocallyConnected2d argument bias must be True or 'location' \(one bias per channel and output position\), 'shared' \(one per channel\), or False/None, got 'per-pixel'"),
        ("Conv2d(10**10**10)", r"only literal arguments are allowed at column 8 of 'Conv2d\(10\*\*10\*\*10\)' \(got BinOp: '10\*\*10\*\*10'\)"),
        ("Conv2d(x, 3)", r"only literal arguments are allowed at column 8 .*\(got Name: 'x'\)"),
        ("Conv2d(*a)", r"\*args are not allowed at column 8"),
        ("Conv2d(**a)", r"\*\*kwargs are not allowed"),
        ("Linear(-(3))", r"Linear: out_features must be a positive integer. Received: out_features=-3"),
        ("Linear(--3)", r"unary - applies only to a number literal at column 8"),
        ("Linear(-'a')", r"unary - applies only to a number literal"),
        ("Linear(1j)", r"unsupported literal '1j' at column 8 of 'Linear\(1j\)' \(complex\)"),
        ("Linear(b'x')", r"unsupported literal .* \(bytes\)"),
        ("Linear(1e999)", r"number literal at column 8 of 'Linear\(1e999\)' is not finite \(inf\)"),
        ("Linear(" + "9" * 30 + ")", r"integer literal at column 8 of .* is too large \(more than 2\*\*62\)"),
        ("Conv2d(8, (3, (3,)))", r"nested tuples are not allowed at column 15"),
        ("Conv2d(8, (1, 2, 3, 4, 5, 6, 7, 8, 9))", r"tuple at column 11 .* has 9 elements, at most 8 are allowed"),
        ("nn.Conv2d(8, 3)", r"layer string 'nn.Conv2d\(8, 3\)' starts with the module prefix 'nn.'; a layer string "
                            r"names the layer alone\. Layer strings start at the output size \(the input size is "
                            r"inferred\): read as a layer string \(output size first\) it is 'Conv2d\(8, 3\)'$"),
        ("torch.nn.Conv2d(1, 32, 3)", r"module prefix 'torch.nn.'; .*: in torch's order \(in_channels first\) it is "
                                      r"'Conv2d\(32, 3, in_channels=1\)'; read as a layer string \(output size first\) "
                                      r"it is 'Conv2d\(1, 32, 3\)'$"),
        ("x.nn.Conv2d(8, 3)", r"layer string 'x.nn.Conv2d\(8, 3\)' calls 'x.nn.Conv2d'; the layer must be a bare name"),
        ("Conv2d(8, 3)(x)", r"calls 'Conv2d\(8, 3\)'; the layer must be a bare name"),
        ("3", r"layer string '3' is not a layer call; expected NAME\(args\), .*\(got Constant\)"),
        ("Conv2d(8, 3", r"cannot parse layer string 'Conv2d\(8, 3' at column 7: '\(' was never closed"),
        ("", r"empty layer string; write a layer like"),
        ("x" * (MAX_TEXT_LENGTH + 1), r"layer string is 1001 characters long, at most 1000 are allowed"),
        ("Conv2d(8, 3)\x00", r"cannot parse layer string"),
        ("__import__('os').system('true')", r"the layer must be a bare name"),
        ("Upsample(scale_factor=2, mode='cubic')", r"Upsample argument mode must be one of 'nearest'"),
    ],
)
def test_errors_are_pinned(text, message):
    with pytest.raises(ArgumentError, match=message):
        parse_layer(text)


def test_non_string_input():
    with pytest.raises(ArgumentError, match=r"a layer string must be a str, got int: 3"):
        parse_layer(3)


def test_stack_errors_name_the_position():
    with pytest.raises(ArgumentError, match=r"layer 2: unknown layer 'Relu' in 'Relu\(\)'; did you mean 'ReLU'"):
        parse_stack(["Conv2d(8, 3)", "Relu()"])
    with pytest.raises(ArgumentError, match=r"parse_stack takes a list of layer strings, got one str 'Linear\(3\)'"):
        parse_stack("Linear(3)")


def test_huge_and_nested_inputs_are_rejected():
    for text in ("9" * 100_000, "Conv2d(" + "(" * 400 + "3" + ")" * 400 + ")", "[" * 999, "Linear(" + "-" * 900 + "1)", "Conv2d(10**10**10**10)"):
        with pytest.raises(ArgumentError):
            parse_layer(text)


# --- fuzzing ---------------------------------------------------------------------------------

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-3, max_value=70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=string.ascii_letters + "-_ '\"\\", max_size=8),
    st.sampled_from(["'same'", "'valid'", "'location'", "'shared'", "'zeros'", "'bilinear'", "'avg'"]),
    st.sampled_from([None, True, False]),
)


def _literal(value) -> str:
    return value if isinstance(value, str) and value.startswith("'") else repr(value)


literals = st.one_of(
    scalars.map(_literal),
    st.lists(scalars.map(_literal), max_size=4).map(lambda xs: "(" + ", ".join(xs) + ("," if len(xs) == 1 else "") + ")"),
    st.lists(scalars.map(_literal), max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.sampled_from(["x", "1 + 2", "-(-1)", "f(1)", "[1, [2]]", "{}", "...", "lambda: 0", "10**10**10", "*a", "'a' 'b'"]),
)
keywords = st.sampled_from([
    "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias", "padding_mode",
    "output_padding", "tile_size", "in_features", "out_features", "num_features", "num_groups", "affine",
    "track_running_stats", "ceil_mode", "count_include_pad", "output_size", "size", "scale_factor", "mode", "p",
    "negative_slope", "start_dim", "end_dim", "normalized_shape", "eps", "momentum", "inplace", "dim", "bogus",
])


@st.composite
def layer_texts(draw) -> str:
    name = draw(st.sampled_from(LAYER_NAMES + ("Conv4d", "relu", "Linear.x")))
    args = draw(st.lists(literals, max_size=5))
    kwargs = draw(st.lists(st.tuples(keywords, literals), max_size=4))
    parts = args + [f"{k}={v}" for k, v in kwargs]
    return f"{name}({', '.join(parts)})"


shapes = st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=4).map(tuple)


def _parse_and_analyse(text: str, shape: tuple[int, ...]) -> None:
    """What `layerlab shape` does: parse, then analyse; only LayerlabError may escape."""
    try:
        spec = parse_layer(text)
    except LayerlabError:
        return
    try:
        spec.analyse(shape)
    except LayerlabError:
        pass


@FUZZ
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text(text):
    try:
        parse_layer(text)
    except LayerlabError:
        pass


@FUZZ
@given(st.text(alphabet="()[],=-+*'\".0123456789eEjx_ Conv2dLinear", max_size=120))
def test_fuzz_punctuation_heavy_text(text):
    try:
        parse_layer(text)
    except LayerlabError:
        pass


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_texts(), shapes)
def test_fuzz_grammar_shaped_layers(text, shape):
    _parse_and_analyse(text, shape)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(layer_texts(), min_size=1, max_size=4), shapes)
def test_fuzz_stacks(texts, shape):
    try:
        analyse_stack(parse_stack(texts), shape)
    except LayerlabError:
        pass


def test_parse_shape_huge_number():
    with pytest.raises(ArgumentError, match=r"shape '9999.*': size 1 has 5000 digits; sizes must be below 10\*\*18"):
        parse_shape("9" * 5000)


@FUZZ
@given(st.one_of(st.text(max_size=60), st.text(alphabet="0123456789x×,() -+", max_size=60),
                 st.integers(0, 6000).map(lambda n: "3x" + "9" * n)))
def test_fuzz_parse_shape(text):
    try:
        shape = parse_shape(text)
    except LayerlabError:
        return
    assert shape and all(isinstance(n, int) and n > 0 for n in shape)


@pytest.mark.parametrize("text, rewrite", [
    ("Conv2d(1, 32, 3)", "Conv2d(32, 3, in_channels=1)"),
    ("Conv2d(1, 32, 3, stride=2)", "Conv2d(32, 3, in_channels=1, stride=2)"),
    ("ConvTranspose2d(100, 512, 4, 1, 0)", "ConvTranspose2d(512, 4, 1, 0, in_channels=100)"),
    ("Linear(784, 10, False)", "Linear(10, in_features=784, bias=False)"),
    ("LocallyConnected2d(3, 8, 3)", "LocallyConnected2d(8, 3, in_channels=3)"),
])
def test_torch_order_note_shows_the_rewritten_string(text, rewrite):
    note = torch_order_note(text)
    assert note.endswith(f"write {rewrite!r}")
    assert note.startswith("Layer strings start at the output size (the input size is inferred)")
    parse_layer(rewrite)  # the rewrite is itself a valid layer string


@pytest.mark.parametrize("text", ["Conv2d(32, 3)" + ")", "Conv2d(32)", "MaxPool2d(2, 2)", "Dense(10)", "Linear(10, 20, True, 4)"])
def test_torch_order_note_is_empty_without_a_valid_torch_reading(text):
    assert torch_order_note(text) == ""
