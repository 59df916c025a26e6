"""LocallyConnected1d/2d/3d: against the float64 loop reference, conv, gradcheck, lazy, errors."""

import math

import re

import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.arith.specs import LocalSpec
from layerlab.errors import ArgumentError, ShapeError, SizeLimitError
from layerlab.functional.reference import local_conv_reference

LOCAL = {1: layerlab.LocallyConnected1d, 2: layerlab.LocallyConnected2d, 3: layerlab.LocallyConnected3d}
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}

# (ndim, C_in, C_out, in_size, kernel, stride, padding, dilation, groups, bias, padding_mode)
CONFIGS = [
    (1, 2, 4, (9,), 3, 2, 1, 1, 2, True, "zeros"),
    (1, 3, 3, (8,), 4, 1, "same", 1, 3, "shared", "zeros"),  # even kernel: asymmetric 'same'
    (2, 4, 6, (7, 6), (3, 2), (2, 1), (1, 2), (2, 1), 2, True, "zeros"),
    (2, 3, 2, (6, 5), (2, 3), (3, 2), 0, 1, 1, "shared", "zeros"),  # floor drops rows/cols
    (2, 2, 4, (6, 7), (3, 2), 1, "same", (1, 2), 2, True, "reflect"),
    (2, 2, 2, (5, 5), 3, 2, 1, 1, 1, False, "replicate"),
    (2, 2, 3, (5, 6), 3, 1, (1, 2), 1, 1, True, "circular"),
    (2, 2, 2, (6, 6), 3, 2, "valid", 1, 1, True, "zeros"),
    (3, 2, 2, (4, 5, 4), (2, 3, 2), (1, 2, 1), (0, 1, 1), (1, 1, 2), 1, True, "zeros"),
    (3, 2, 4, (3, 4, 3), 2, 1, "same", 1, 2, "shared", "replicate"),
]


def _reference(layer, x):
    """Pad as torch's conv does, then the naive loop with padding 0."""
    ndim = x.dim() - 2
    if layer.padding == "same":
        pairs = [((d * (k - 1)) // 2, d * (k - 1) - (d * (k - 1)) // 2) for k, d in zip(layer.kernel_size, layer.dilation)]
    elif layer.padding == "valid":
        pairs = [(0, 0)] * ndim
    else:
        pairs = [(p, p) for p in layer.padding]
    x = F.pad(x, [p for pair in reversed(pairs) for p in pair], mode=PAD_MODE[layer.padding_mode])
    return local_conv_reference(x, layer.weight, layer.bias, layer.stride, 0, layer.dilation, layer.groups)


@pytest.mark.parametrize("ndim, c_in, c_out, in_size, k, s, p, d, g, bias, mode", CONFIGS)
def test_forward_matches_loop_reference(ndim, c_in, c_out, in_size, k, s, p, d, g, bias, mode):
    torch.manual_seed(0)
    layer = LOCAL[ndim](c_in, c_out, k, s, p, d, g, bias, mode, input_size=in_size, dtype=torch.float64)
    x = torch.randn(3, c_in, *in_size, dtype=torch.float64)
    out = layer(x)
    torch.testing.assert_close(out, _reference(layer, x), rtol=1e-10, atol=1e-10)
    assert tuple(out.shape[2:]) == layer.output_size
    # the arith spec agrees with the real output shape
    assert layer.layer_spec().analyse((c_in, *in_size)).output_shape == tuple(out.shape[1:])


def test_same_padding_keeps_the_size_and_valid_is_no_padding():
    same = layerlab.LocallyConnected2d(1, 1, (4, 3), padding="same", dilation=(1, 2), input_size=(7, 8))
    valid = layerlab.LocallyConnected2d(1, 1, 3, padding="valid", input_size=(7, 8))
    assert same.output_size == (7, 8)
    assert valid.output_size == (5, 6)


@pytest.mark.parametrize("groups", [1, 2])
def test_all_positions_sharing_one_filter_is_exactly_the_conv(groups):
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(4, 6, 3, stride=(2, 1), padding=1, dilation=(1, 2), groups=groups, dtype=torch.float64)
    local = layerlab.LocallyConnected2d(4, 6, 3, (2, 1), 1, (1, 2), groups, "shared", input_size=(9, 8), dtype=torch.float64)
    bank = conv.weight.view(groups, 6 // groups, 4 // groups, 3, 3).movedim(1, -1)
    with torch.no_grad():
        local.weight.copy_(bank.expand_as(local.weight))
        local.bias.copy_(conv.bias)
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    # equal up to float64 summation order (different but exact arithmetic)
    torch.testing.assert_close(local(x), conv(x), rtol=1e-13, atol=1e-13)


def test_location_bias_is_per_channel_and_position():
    layer = layerlab.LocallyConnected1d(1, 2, 1, input_size=3, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    assert layer.bias.shape == (2, 3)
    assert layer(torch.randn(1, 1, 3, dtype=torch.float64)).tolist() == [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]


@pytest.mark.parametrize("bias", [True, "shared"])
def test_gradcheck_input_weight_bias(bias):
    torch.manual_seed(2)
    layer = layerlab.LocallyConnected2d(4, 2, 2, stride=(1, 2), padding=1, groups=2, bias=bias, input_size=(3, 4), dtype=torch.float64)
    x = torch.randn(2, 4, 3, 4, dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        return torch.func.functional_call(layer, {"weight": w, "bias": b}, (x,))

    w = layer.weight.detach().clone().requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (x, w, b))


@pytest.mark.parametrize("ndim", [1, 3])
def test_gradcheck_1d_3d_with_padding_mode(ndim):
    torch.manual_seed(3)
    size = (5,) if ndim == 1 else (3, 3, 3)
    layer = LOCAL[ndim](2, 2, 2, padding="same", padding_mode="reflect", input_size=size, dtype=torch.float64)
    x = torch.randn(1, 2, *size, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_lazy_input_size_is_inferred_at_the_first_call():
    layer = layerlab.LocallyConnected2d(3, 8, 3)
    assert layer.output_size is None
    assert "input_size=?" in repr(layer)
    out = layer(torch.randn(2, 3, 10, 12))
    assert out.shape == (2, 8, 8, 10)
    assert layer.input_size == (10, 12) and layer.output_size == (8, 10)
    assert type(layer) is layerlab.LocallyConnected2d
    assert layer.weight.shape == (8, 10, 1, 3, 3, 3, 8)
    assert layer.bias.shape == (8, 8, 10)
    with pytest.raises(ShapeError, match=r"LocallyConnected2d\(3, 8, kernel_size=\(3, 3\), input_size=\(10, 12\)\) was built for 10×12 inputs, got 12×10: a local layer has one filter per position; build a new layer or resize the input"):
        layer(torch.randn(2, 3, 12, 10))


def test_lazy_layer_works_with_an_optimizer_after_the_first_call():
    torch.manual_seed(4)
    layer = layerlab.LocallyConnected1d(1, 1, 3, padding=1)
    layer(torch.randn(1, 1, 6))
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    before = layer.weight.detach().clone()
    layer(torch.randn(4, 1, 6)).square().sum().backward()
    optimizer.step()
    assert not torch.equal(before, layer.weight)


def test_wrong_spatial_size_message():
    layer = layerlab.LocallyConnected2d(3, 32, 3, input_size=(32, 32))
    with pytest.raises(ShapeError, match=r"^LocallyConnected2d\(3, 32, kernel_size=\(3, 3\), input_size=\(32, 32\)\) was built for 32×32 inputs, got 28×28: a local layer has one filter per position; build a new layer or resize the input$"):
        layer(torch.randn(1, 3, 28, 28))


def test_unbatched_input_matches_batched():
    torch.manual_seed(5)
    layer = layerlab.LocallyConnected2d(2, 3, 3, padding=1, input_size=(4, 5))
    x = torch.randn(2, 4, 5)
    torch.testing.assert_close(layer(x), layer(x.unsqueeze(0)).squeeze(0))


def test_state_dict_round_trip_and_lazy_load():
    torch.manual_seed(6)
    src = layerlab.LocallyConnected2d(2, 4, 3, stride=2, padding=1, input_size=(7, 7))
    x = torch.randn(2, 2, 7, 7)
    state = src.state_dict()
    assert set(state) == {"weight", "bias"}
    same = layerlab.LocallyConnected2d(2, 4, 3, stride=2, padding=1, input_size=(7, 7))
    same.load_state_dict(state)
    torch.testing.assert_close(same(x), src(x))
    lazy = layerlab.LocallyConnected2d(2, 4, 3, stride=2, padding=1)
    lazy.load_state_dict(state)
    assert lazy.output_size == (4, 4) and lazy.input_size is None
    torch.testing.assert_close(lazy(x), src(x))
    assert lazy.input_size == (7, 7)
    # a lazy layer that was never called saves and loads uninitialised parameters
    empty = layerlab.LocallyConnected2d(2, 4, 3).state_dict()
    other = layerlab.LocallyConnected2d(2, 4, 3)
    other.load_state_dict(empty)
    assert other(x).shape == (2, 4, 5, 5)


def test_loaded_lazy_layer_rejects_an_input_of_another_size():
    src = layerlab.LocallyConnected2d(2, 4, 3, input_size=(7, 7))
    lazy = layerlab.LocallyConnected2d(2, 4, 3)
    lazy.load_state_dict(src.state_dict())
    with pytest.raises(ShapeError, match=r"LocallyConnected2d\(2, 4, kernel_size=\(3, 3\)\) holds weights for output size 5×5, but a 8×8 input gives 6×6: a local layer has one filter per position; feed inputs of the size the weights were trained on"):
        lazy(torch.randn(1, 2, 8, 8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtypes(dtype):
    torch.manual_seed(7)
    layer = layerlab.LocallyConnected2d(3, 4, 3, padding=1, input_size=(6, 6), dtype=dtype)
    x = torch.randn(2, 3, 6, 6, dtype=dtype)
    out = layer(x)
    assert out.dtype == dtype and layer.weight.dtype == dtype
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(out.double(), _reference(layer, x), rtol=tol, atol=tol)
    out.float().sum().backward()
    assert layer.weight.grad.dtype == dtype


def test_torch_compile_gives_the_same_outputs():
    # inductor compiles this case in ~6 s on the 2-core CPU, so the real backend is used
    torch.manual_seed(8)
    layer = layerlab.LocallyConnected2d(2, 3, 3, padding=1, bias="shared", input_size=(5, 5))
    x = torch.randn(2, 2, 5, 5)
    compiled = torch.compile(layer)
    torch.testing.assert_close(compiled(x), layer(x))


def test_default_init_is_torch_conv_default():
    torch.manual_seed(9)
    layer = layerlab.LocallyConnected2d(8, 16, 3, groups=2, input_size=(20, 20))
    bound = 1 / math.sqrt(8 // 2 * 9)
    w = layer.weight.detach()
    assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound
    # U(-b, b) has std b/sqrt(3); 18·18·4·4·9·8 = 186,624 samples
    assert abs(w.std().item() - bound / math.sqrt(3)) < 0.01 * bound
    assert layer.bias.abs().max() <= bound


def test_repr_and_spec():
    layer = layerlab.LocallyConnected2d(3, 32, 3, padding="same", groups=1, bias="shared", padding_mode="reflect", input_size=(32, 32))
    assert repr(layer) == (
        "LocallyConnected2d(3, 32, kernel_size=(3, 3), padding='same', bias='shared', padding_mode='reflect', "
        "input_size=(32, 32), output_size=(32, 32))"
    )
    spec = layer.layer_spec()
    assert type(spec).__name__ == "LocalSpec" and spec.bias == "shared"
    report = spec.analyse((3, 32, 32))
    assert report.params == sum(p.numel() for p in layer.parameters())


SPEC_CHECKED = [
    dict(kernel_size=0),
    dict(kernel_size=3, stride=(1, 0)),
    dict(kernel_size=(3, 3, 3)),
    dict(kernel_size=3, dilation=0),
    dict(kernel_size=3, groups=2),
    dict(kernel_size=3, groups=0),
    dict(kernel_size=3, padding="full"),
    dict(kernel_size=3, padding="same", stride=2),
    dict(kernel_size=3, padding=-1),
]


@pytest.mark.parametrize("kwargs", SPEC_CHECKED, ids=repr)
def test_arguments_are_checked_by_the_spec(kwargs):
    # one wording per mistake: the module's message is its arith spec's (pinned in tests/arith/test_errors.py)
    with pytest.raises(ArgumentError) as by_spec:
        LocalSpec(2, 4, in_channels=3, **kwargs)
    with pytest.raises(ArgumentError) as by_module:
        layerlab.LocallyConnected2d(3, 4, **kwargs)
    assert str(by_module.value) == str(by_spec.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kernel_size=3, padding_mode="mirror"), r"LocallyConnected2d: padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular'. Received: padding_mode='mirror'"),
        (dict(kernel_size=3, bias="location"), r"LocallyConnected2d: bias must be True \(one per output channel and location\), 'shared' \(one per output channel\) or False/None. Received: bias='location'"),
        (dict(kernel_size=3, input_size=(0, 4)), r"LocallyConnected2d: input_size must be positive integers. Received: input_size=\(0, 4\)"),
        (dict(kernel_size=5, input_size=(3, 3)), r"LocallyConnected2d\(3, 4, kernel_size=\(5, 5\), input_size=\(3, 3\)\) cannot take its input_size: LocallyConnected2d\(3 → 4, kernel_size=5\): H: the kernel spans 1·\(5−1\) \+ 1 = 5 but the padded input is only 3 \+ 0 = 3"),
    ],
)
def test_impossible_arguments(kwargs, message):
    error = ShapeError if kwargs.get("input_size") == (3, 3) else ArgumentError
    with pytest.raises(error, match=message):
        layerlab.LocallyConnected2d(3, 4, **kwargs)


def test_in_channels_is_required():
    with pytest.raises(ArgumentError, match=r"^LocallyConnected2d: in_channels must be a positive integer. Received: in_channels=None$"):
        layerlab.LocallyConnected2d(None, 4, 3)


def test_wrong_rank_and_channels():
    layer = layerlab.LocallyConnected2d(3, 4, 3, input_size=(8, 8))
    with pytest.raises(ShapeError, match=r"LocallyConnected2d\(3, 4, kernel_size=\(3, 3\), input_size=\(8, 8\)\) expects a 4-d input \(B, C_in, H, W\) or a 3-d unbatched input \(C_in, H, W\), got a 2-d input of shape \(2, 192\): reshape it, e.g. x.view\(B, 3, H, W\)"):
        layer(torch.randn(2, 192))
    with pytest.raises(ShapeError, match=r"LocallyConnected2d\(3, 4, kernel_size=\(3, 3\), input_size=\(8, 8\)\) expects 3 input channels, got 1 from an input of shape \(2, 1, 8, 8\): set in_channels=1 to match the previous layer, or feed it 3-channel inputs"):
        layer(torch.randn(2, 1, 8, 8))
    lazy = layerlab.LocallyConnected2d(3, 4, 3)
    with pytest.raises(ShapeError, match=r"LocallyConnected2d\(3, 4, kernel_size=\(3, 3\)\) expects 3 input channels, got 5"):
        lazy(torch.randn(2, 5, 8, 8))
    with pytest.raises(ShapeError, match=r"LocallyConnected2d\(3, 4, kernel_size=\(3, 3\)\) cannot take an input of shape \(2, 3, 2, 2\): LocallyConnected2d\(3 → 4, kernel_size=3\): H: the kernel spans"):
        lazy(torch.randn(2, 3, 2, 2))
    assert lazy.has_uninitialized_params()  # the failed calls did not materialise anything


def _random_config(rng):
    """A random valid configuration: 1-3 spatial dims, any stride/padding/dilation/groups/bias."""
    ndim = rng.choice([1, 2, 3])
    groups = rng.choice([1, 2])
    c_in, c_out = groups * rng.randint(1, 2), groups * rng.randint(1, 2)
    k = tuple(rng.randint(1, 3) for _ in range(ndim))
    d = tuple(rng.randint(1, 2) for _ in range(ndim))
    if rng.random() < 0.3:
        s, p = 1, rng.choice(["same", "valid"])
    else:
        s = tuple(rng.randint(1, 3) for _ in range(ndim))
        p = tuple(rng.randint(0, 2) for _ in range(ndim))
    mode = rng.choice(["zeros", "zeros", "reflect", "replicate", "circular"])
    pads = p if isinstance(p, tuple) else (0,) * ndim
    span = tuple(dd * (kk - 1) + 1 for kk, dd in zip(k, d))
    # big enough for the window and for reflect padding (pad < size)
    size = tuple(max(sp, pp + 1, 2) + rng.randint(0, 3) for sp, pp in zip(span, pads))
    if ndim == 3:
        size = tuple(min(n, 5) if n >= sp else n for n, sp in zip(size, span))
    bias = rng.choice([True, "shared", False])
    return ndim, c_in, c_out, size, k, s, p, d, groups, bias, mode


@pytest.mark.parametrize("seed", range(12))
def test_random_configurations_match_loop_reference(seed):
    import random

    rng = random.Random(seed)
    ndim, c_in, c_out, size, k, s, p, d, g, bias, mode = _random_config(rng)
    torch.manual_seed(seed)
    layer = LOCAL[ndim](c_in, c_out, k, s, p, d, g, bias, mode, input_size=size, dtype=torch.float64)
    x = torch.randn(2, c_in, *size, dtype=torch.float64)
    torch.testing.assert_close(layer(x), _reference(layer, x), rtol=1e-10, atol=1e-10)


def test_parameters_over_the_memory_limit_are_refused_before_allocating(monkeypatch):
    monkeypatch.delenv("LAYERLAB_MAX_BYTES", raising=False)
    with pytest.raises(SizeLimitError, match=re.escape(
            "LocallyConnected2d(3, 8, kernel_size=(3, 3), input_size=(100000, 100000)): its parameters would allocate "
            "2,239,910,400,896 elements × 4 bytes = 8.1 TiB, over the limit of 2.0 GiB; nothing was allocated. A local "
            "layer stores one filter bank per output position; use a smaller input or a larger stride, or a conv or "
            "tiled layer, or raise the limit")):
        layerlab.LocallyConnected2d(3, 8, 3, input_size=(10**5, 10**5))
    # weights and biases both count: 10 + 10 float32 parameters are 80 bytes
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "80")
    assert layerlab.LocallyConnected1d(1, 1, 1, input_size=10).weight.numel() == 10
    with pytest.raises(SizeLimitError, match="22 elements × 4 bytes = 88 B, over the limit of 80 B"):
        layerlab.LocallyConnected1d(1, 1, 1, input_size=11)
    lazy = layerlab.LocallyConnected1d(1, 1, 1, dtype=torch.float64)  # the first input decides the size
    with pytest.raises(SizeLimitError, match=re.escape("LocallyConnected1d(1, 1, kernel_size=(1,)): its parameters would "
                                                       "allocate 12 elements × 8 bytes = 96 B")):
        lazy(torch.zeros(1, 1, 6, dtype=torch.float64))
    assert lazy.has_uninitialized_params()  # nothing was materialised
    assert lazy(torch.zeros(1, 1, 5, dtype=torch.float64)).shape == (1, 1, 5)
    with torch.device("meta"):  # shapes only: no memory, nothing to refuse
        assert layerlab.LocallyConnected1d(1, 1, 1, input_size=10**6).weight.is_meta
