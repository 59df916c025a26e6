"""Layers that subclass torch's: same outputs and state_dicts as torch, layer_spec, clear errors."""

import re

import pytest
import torch
from torch import nn

import layerlab
from layerlab.errors import ShapeError, SizeLimitError

# (layerlab class, torch class, args, kwargs, input shape)
PAIRS = [
    (layerlab.Conv1d, nn.Conv1d, (2, 4, 3), dict(stride=2, padding=1), (3, 2, 9)),
    (layerlab.Conv2d, nn.Conv2d, (4, 6, 3), dict(padding="same", groups=2, padding_mode="reflect"), (3, 4, 7, 6)),
    (layerlab.Conv3d, nn.Conv3d, (2, 3, 2), dict(dilation=2, bias=False), (2, 2, 5, 5, 6)),
    (layerlab.ConvTranspose1d, nn.ConvTranspose1d, (4, 2, 4), dict(stride=2, padding=1), (3, 4, 6)),
    (layerlab.ConvTranspose2d, nn.ConvTranspose2d, (4, 2, 3), dict(stride=2, output_padding=1, groups=2), (3, 4, 5, 5)),
    (layerlab.ConvTranspose3d, nn.ConvTranspose3d, (2, 1, 2), dict(stride=2), (2, 2, 3, 3, 3)),
    (layerlab.MaxPool1d, nn.MaxPool1d, (3,), dict(stride=2, ceil_mode=True), (2, 3, 10)),
    (layerlab.MaxPool2d, nn.MaxPool2d, (3,), dict(stride=2, padding=1, dilation=1), (2, 3, 9, 9)),
    (layerlab.MaxPool3d, nn.MaxPool3d, (2,), {}, (2, 2, 4, 4, 4)),
    (layerlab.AvgPool1d, nn.AvgPool1d, (2,), {}, (2, 3, 9)),
    (layerlab.AvgPool2d, nn.AvgPool2d, (3,), dict(stride=2, padding=1, count_include_pad=False), (2, 3, 8, 8)),
    (layerlab.AvgPool3d, nn.AvgPool3d, (2,), {}, (2, 2, 4, 4, 4)),
    (layerlab.BatchNorm1d, nn.BatchNorm1d, (5,), {}, (4, 5)),
    (layerlab.BatchNorm2d, nn.BatchNorm2d, (3,), dict(momentum=0.2), (4, 3, 5, 5)),
    (layerlab.BatchNorm3d, nn.BatchNorm3d, (2,), dict(affine=False), (4, 2, 3, 3, 3)),
    (layerlab.LayerNorm, nn.LayerNorm, ((4, 5),), {}, (2, 3, 4, 5)),
    (layerlab.GroupNorm, nn.GroupNorm, (2, 6), {}, (2, 6, 4, 4)),
    (layerlab.Flatten, nn.Flatten, (), {}, (2, 3, 4, 5)),
    (layerlab.ReLU, nn.ReLU, (), {}, (2, 7)),
    (layerlab.LeakyReLU, nn.LeakyReLU, (0.2,), {}, (2, 7)),
    (layerlab.ELU, nn.ELU, (), {}, (2, 7)),
    (layerlab.GELU, nn.GELU, (), {}, (2, 7)),
    (layerlab.SiLU, nn.SiLU, (), {}, (2, 7)),
    (layerlab.Tanh, nn.Tanh, (), {}, (2, 7)),
    (layerlab.Sigmoid, nn.Sigmoid, (), {}, (2, 7)),
    (layerlab.Softmax, nn.Softmax, (), dict(dim=1), (2, 7)),
    (layerlab.LogSoftmax, nn.LogSoftmax, (), dict(dim=1), (2, 7)),
    (layerlab.Dropout, nn.Dropout, (0.5,), {}, (2, 7)),
    (layerlab.Identity, nn.Identity, (), {}, (2, 7)),
]


@pytest.mark.parametrize("ours, theirs, args, kwargs, shape", PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_same_as_torch_and_state_dict_both_ways(ours, theirs, args, kwargs, shape):
    torch.manual_seed(0)
    a, b = ours(*args, **kwargs), theirs(*args, **kwargs)
    assert isinstance(a, theirs)
    b.load_state_dict(a.state_dict())
    a.load_state_dict(b.state_dict())
    x = torch.randn(*shape)
    torch.manual_seed(1)
    out_a = a(x)
    torch.manual_seed(1)  # dropout draws the same mask
    torch.testing.assert_close(out_a, b(x), rtol=0, atol=0)
    if hasattr(a, "running_mean") and a.running_mean is not None:
        torch.testing.assert_close(a.running_mean, b.running_mean)
    # the arith description agrees with the real output shape (per sample)
    report = a.layer_spec().analyse(tuple(shape[1:]))
    assert report.output_shape == tuple(out_a.shape[1:])
    assert report.params == sum(p.numel() for p in a.parameters())


@pytest.mark.parametrize("ours, pooled", [(layerlab.GlobalAvgPool, nn.AdaptiveAvgPool2d), (layerlab.GlobalMaxPool, nn.AdaptiveMaxPool2d)])
def test_global_pools_match_adaptive_pool_then_flatten(ours, pooled):
    torch.manual_seed(2)
    x = torch.randn(3, 5, 6, 7)
    layer = ours()
    out = layer(x)
    torch.testing.assert_close(out, nn.Sequential(pooled(1), nn.Flatten())(x))
    assert out.shape == (3, 5)
    spec = layer.layer_spec()
    assert spec.ndim == 2 and spec.flatten_output
    assert spec.analyse((5, 6, 7)).output_shape == (5,)
    assert layer(torch.randn(2, 4, 9)).shape == (2, 4) and layer.layer_spec().ndim == 1
    assert layer(torch.randn(2, 4, 3, 3, 3)).shape == (2, 4)


def test_global_pool_errors():
    with pytest.raises(ShapeError, match=r"GlobalAvgPool\(\) expects an input \(B, C, \*spatial\) with 1 to 3 spatial dims, got a 2-d input of shape \(8, 64\): it pools feature maps; a \(B, features\) input has nothing to pool, drop this layer"):
        layerlab.GlobalAvgPool()(torch.randn(8, 64))
    with pytest.raises(ShapeError, match=r"GlobalMaxPool\(\) expects .* got a 6-d input of shape \(1, 2, 3, 3, 3, 3\): it pools feature maps; merge dims first, e.g. x.flatten\(2\)"):
        layerlab.GlobalMaxPool()(torch.randn(1, 2, 3, 3, 3, 3))


def test_unbatched_conv_and_transposed_output_size_still_work():
    conv = layerlab.Conv2d(3, 4, 3)
    assert conv(torch.randn(3, 8, 8)).shape == (4, 6, 6)
    up = layerlab.ConvTranspose2d(4, 2, 3, stride=2)
    assert up(torch.randn(1, 4, 5, 5), output_size=(12, 12)).shape == (1, 2, 12, 12)


ERRORS = [
    (layerlab.Conv2d(3, 8, 3), (2, 4, 8, 8),
     r"^Conv2d\(3, 8, kernel_size=\(3, 3\), stride=\(1, 1\)\) expects 3 input channels \(dim 1 of the input\), got 4 from an input of shape \(2, 4, 8, 8\): set in_channels=4 to match the previous layer, or feed it 3-channel inputs$"),
    (layerlab.Conv2d(3, 8, 3), (4, 8, 8),
     r"expects 3 input channels \(dim 0 of the input\), got 4 from an input of shape \(4, 8, 8\)"),
    (layerlab.Conv2d(1, 8, 3), (2, 784),
     r"^Conv2d\(1, 8, kernel_size=\(3, 3\), stride=\(1, 1\)\) expects a 4-d input \(B, C_in, H, W\) or a 3-d unbatched input \(C_in, H, W\), got a 2-d input of shape \(2, 784\): reshape it to \(B, C_in, H, W\), e.g. x.view\(B, 1, H, W\) for one channel$"),
    (layerlab.Conv1d(1, 8, 3), (2, 1, 8, 8),
     r"Conv1d\(1, 8, kernel_size=\(3,\), stride=\(1,\)\) expects a 3-d input \(B, C_in, L\) or a 2-d unbatched input \(C_in, L\), got a 4-d input of shape \(2, 1, 8, 8\): reshape it, e.g. x.view\(B, C_in, L\), or use a 2d layer"),
    (layerlab.Conv2d(3, 8, 5), (2, 3, 3, 3),
     r"^Conv2d\(3, 8, kernel_size=\(5, 5\), stride=\(1, 1\)\) cannot take an input of shape \(2, 3, 3, 3\): "),
    (layerlab.ConvTranspose2d(16, 8, 4), (2, 8, 4, 4),
     r"ConvTranspose2d\(16, 8, kernel_size=\(4, 4\), stride=\(1, 1\)\) expects 16 input channels \(dim 1 of the input\), got 8"),
    (layerlab.MaxPool2d(2), (2, 64),
     r"^MaxPool2d\(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False\) expects a 4-d input \(B, C, H, W\) or a 3-d unbatched input \(C, H, W\), got a 2-d input of shape \(2, 64\)"),
    (layerlab.MaxPool2d(3), (2, 6, 2, 2),
     r"^MaxPool2d\(kernel_size=3, stride=3, padding=0, dilation=1, ceil_mode=False\) cannot take an input of shape \(2, 6, 2, 2\): "),
    (layerlab.AvgPool1d(2), (2, 3, 4, 4),
     r"AvgPool1d\(kernel_size=\(2,\), stride=\(2,\), padding=\(0,\)\) expects a 3-d input \(B, C, L\) or a 2-d unbatched input \(C, L\), got a 4-d input"),
    (layerlab.BatchNorm2d(3), (2, 3, 8),
     r"^BatchNorm2d\(3, .*?\) expects a 4-d \(B, C, H, W\) input, got a 3-d input of shape \(2, 3, 8\): use BatchNorm1d for \(B, C\) or \(B, C, L\), BatchNorm2d for \(B, C, H, W\), BatchNorm3d for \(B, C, D, H, W\)$"),
    (layerlab.BatchNorm1d(4), (2, 6, 4),
     r"^BatchNorm1d\(4, .*\) expects 4 input channels \(dim 1 of the input\), got 6 from an input of shape \(2, 6, 4\): set num_features=6 to match the previous layer"),
    (layerlab.BatchNorm1d(4), (2, 4, 3, 3),
     r"BatchNorm1d\(4, .*\) expects a 2-d \(B, C\) or 3-d \(B, C, L\) input, got a 4-d input"),
    (layerlab.LayerNorm(5), (2, 3, 4),
     r"^LayerNorm\(\(5,\), .*?\) expects the last 1 dim\(s\) of the input to be \(5\), got \(4\) from an input of shape \(2, 3, 4\): set normalized_shape=\(4,\) or move the normalised dims last"),
    (layerlab.GroupNorm(2, 4), (2, 6, 4),
     r"^GroupNorm\(2, 4, .*?\) expects 4 input channels \(dim 1 of the input\), got 6 from an input of shape \(2, 6, 4\): set num_channels=6"),
    (layerlab.GroupNorm(2, 4), (4,),
     r"GroupNorm\(2, 4, .*?\) expects an input \(B, C, \*\) with C = 4, got a 1-d input of shape \(4\): add the batch dim"),
    (layerlab.Flatten(), (3,),
     r"^Flatten\(start_dim=1, end_dim=-1\): start_dim=1 is out of range for a 1-d input of shape \(3\) \(valid: -1..0\): the input has fewer dims than expected"),
]


@pytest.mark.parametrize("layer, shape, message", ERRORS, ids=[f"{type(e[0]).__name__}-{len(e[1])}d" for e in ERRORS])
def test_shape_errors_name_the_layer(layer, shape, message):
    with pytest.raises(ShapeError, match=message):
        layer(torch.randn(*shape))


def test_errors_the_diagnosis_cannot_explain_are_torchs():
    conv = layerlab.Conv2d(3, 4, 3)
    with pytest.raises(RuntimeError, match="Input type|expected scalar type|same dtype"):
        conv(torch.randn(1, 3, 8, 8, dtype=torch.float64))


def test_the_error_wrapping_does_not_break_torch_compile_graphs():
    import torch._dynamo

    model = nn.Sequential(
        layerlab.Conv2d(3, 8, 3, padding=1), layerlab.BatchNorm2d(8), layerlab.ReLU(), layerlab.MaxPool2d(2),
        layerlab.LayerNorm(4), layerlab.Flatten(), layerlab.Dense(10, in_features=128),
    )
    x = torch.randn(2, 3, 8, 8)
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0


@pytest.mark.parametrize("ours, theirs, args, kwargs, shape", PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_same_initialisation_and_random_stream_as_torch(ours, theirs, args, kwargs, shape):
    # the parameter estimate builds the layer on the meta device first: it must draw no random numbers
    torch.manual_seed(0)
    a, after_a = ours(*args, **kwargs), torch.rand(2)
    torch.manual_seed(0)
    b, after_b = theirs(*args, **kwargs), torch.rand(2)
    assert list(a.state_dict()) == list(b.state_dict())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert torch.equal(after_a, after_b)


@pytest.mark.parametrize("build, message", [
    (lambda: layerlab.Conv2d(10**6, 10**6, 3),
     "Conv2d(in_channels=1000000, out_channels=1000000, kernel_size=3): its parameters would allocate "
     "9,000,001,000,000 elements × 4 bytes = 32.7 TiB, over the limit of 2.0 GiB; nothing was allocated. Use fewer "
     "channels or a smaller kernel, or raise the limit"),
    (lambda: layerlab.ConvTranspose1d(10**5, 10**5, 10**3, 1, 0, 0, 1, False, 1, "zeros", None, torch.float64),
     "ConvTranspose1d(in_channels=100000, out_channels=100000, kernel_size=1000, stride=1, padding=0, output_padding=0, "
     "groups=1, bias=False, dilation=1, padding_mode='zeros'): its parameters would allocate 10,000,000,000,000 "
     "elements × 8 bytes"),
    (lambda: layerlab.BatchNorm1d(10**12),
     "BatchNorm1d(num_features=1000000000000): its parameters and buffers would allocate 4,000,000,000,001 elements "
     "× 4 bytes = 14.6 TiB, over the limit of 2.0 GiB; nothing was allocated. Use fewer features, or raise the limit"),
    (lambda: layerlab.LayerNorm((10**6, 10**6)),
     "LayerNorm(normalized_shape=(1000000, 1000000)): its parameters would allocate 2,000,000,000,000 elements"),
    (lambda: layerlab.GroupNorm(1, 10**11, dtype=torch.float16),
     "GroupNorm(num_groups=1, num_channels=100000000000): its parameters would allocate 200,000,000,000 elements × 2 "
     "bytes"),
], ids=["Conv2d", "ConvTranspose1d positional", "BatchNorm1d", "LayerNorm", "GroupNorm"])
def test_parameters_over_the_memory_limit_are_refused_before_allocating(build, message, monkeypatch):
    monkeypatch.delenv("LAYERLAB_MAX_BYTES", raising=False)
    with pytest.raises(SizeLimitError, match=re.escape(message)):
        build()


def test_memory_limit_boundary_and_meta_device(monkeypatch):
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "40")
    assert layerlab.Conv1d(1, 5, 1).weight.shape == (5, 1, 1)  # 5 weights + 5 biases: 40 bytes, the limit
    with pytest.raises(SizeLimitError, match="11 elements × 4 bytes = 44 B"):
        layerlab.Conv1d(1, 1, 10)  # 10 weights + 1 bias
    with torch.device("meta"):  # shapes only: no memory, nothing to refuse
        assert layerlab.Conv2d(10**6, 10**6, 3).weight.is_meta
    assert layerlab.BatchNorm2d(10**9, device="meta").running_mean.is_meta


def test_transposed_output_over_the_memory_limit_is_refused_before_running(monkeypatch):
    monkeypatch.delenv("LAYERLAB_MAX_BYTES", raising=False)
    layer = layerlab.ConvTranspose2d(3, 8, 3, stride=10**6)
    with pytest.raises(SizeLimitError, match=re.escape(
            "ConvTranspose2d(3, 8, kernel_size=(3, 3), stride=(1000000, 1000000)) on an input of shape (2, 3, 4, 4): "
            "its output would allocate 144,000,288,000,144 elements × 4 bytes = 523.9 TiB, over the limit of 2.0 GiB; "
            "nothing was allocated. Use a smaller stride or a smaller input, or raise the limit")):
        layer(torch.randn(2, 3, 4, 4))
    with pytest.raises(SizeLimitError, match=re.escape("on an input of shape (3, 4, 4): its output would allocate "
                                                       "72,000,144,000,072 elements")):
        layer(torch.randn(3, 4, 4))  # unbatched
    # exactly at the limit it runs: (2, 1, 5, 5) float32 is 200 bytes; output_size=[6, 6] asks for more
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "200")
    small = layerlab.ConvTranspose2d(1, 1, 3, stride=2, padding=1)
    assert small(torch.randn(2, 1, 3, 3)).shape == (2, 1, 5, 5)
    with pytest.raises(SizeLimitError, match="72 elements × 4 bytes = 288 B"):
        small(torch.randn(2, 1, 3, 3), output_size=[6, 6])
    with pytest.raises(SizeLimitError, match="98 elements"):
        small(torch.randn(2, 1, 4, 4))  # (4 − 1)·2 − 2·1 + 1·(3 − 1) + 0 + 1 = 7: 2·7·7
    assert small(torch.randn(2, 1, 3, 3, device="meta")).is_meta
