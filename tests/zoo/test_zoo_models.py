"""Zoo models: shapes, parameter counts against hand formulas, width scaling, layer families."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import layerlab.nn as L
from layerlab.errors import ArgumentError, ShapeError, SizeLimitError
from layerlab.zoo import MODELS, build, count_params, families, width_for_params

FAMILIES = ["logistic", "mlp", "cnn", "lcn", "tiled", "lowrank", "allconv"]
SHAPES_1D_2D = [(1, 16), (2, 12, 12)]

# model -> (input_shape, num_classes, expected output shape per sample)
NAMED = {
    "lenet5": ((1, 32, 32), 10, (10,)),
    "tf_cifar10": ((3, 24, 24), 10, (10,)),
    "tf_cifar10_local": ((3, 24, 24), 10, (10,)),
    "cuda_convnet": ((3, 24, 24), 10, (10,)),
    "dcgan_generator": ((100, 1, 1), 3, (3, 64, 64)),
    "dcgan_discriminator": ((3, 64, 64), 1, (1,)),
    "unet": ((1, 16, 16), 3, (3, 16, 16)),
}


def test_registry_lists_every_model():
    assert set(MODELS) == set(FAMILIES) | set(NAMED)


@pytest.mark.parametrize("shape", SHAPES_1D_2D, ids=["1d", "2d"])
@pytest.mark.parametrize("name", FAMILIES)
def test_families_forward_and_backward(name, shape):
    torch.manual_seed(0)
    model = build(name, shape, 5)
    x = torch.randn(3, *shape)
    out = model(x)
    assert out.shape == (3, 5)
    out.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", list(NAMED))
def test_named_models_forward(name):
    shape, k, out_shape = NAMED[name]
    torch.manual_seed(0)
    model = build(name, shape, k)
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, *out_shape)
    if name == "dcgan_generator":
        assert out.abs().max() <= 1.0  # tanh output


@pytest.mark.parametrize("name", ["lenet5", "tf_cifar10", "cuda_convnet", "unet"])
def test_named_models_also_take_1d_inputs(name):
    assert build(name, (2, 32), 4)(torch.randn(2, 2, 32)).shape[:2] == (2, 4)


def _conv(c_in, c_out, k, ndim=2, bias=True):
    return c_in * c_out * k**ndim + (c_out if bias else 0)


def _dense(n_in, n_out):
    return n_in * n_out + n_out


def test_lenet5_classic_count():
    # C1 6@5x5, C3 16@5x5 on all 6 maps, C5 as 400 -> 120, F6 120 -> 84, output 84 -> 10
    expected = _conv(1, 6, 5) + _conv(6, 16, 5) + _dense(16 * 5 * 5, 120) + _dense(120, 84) + _dense(84, 10)
    assert expected == 61_706
    assert count_params(build("lenet5", (1, 32, 32), 10)) == expected
    # on 28x28 the maps are 24 -> 12 -> 8 -> 4
    mnist = _conv(1, 6, 5) + _conv(6, 16, 5) + _dense(16 * 4 * 4, 120) + _dense(120, 84) + _dense(84, 10)
    assert count_params(build("lenet5", (1, 28, 28), 10)) == mnist == 44_426


def _bn(c):
    return 2 * c


def test_dcgan_counts():
    nz, ngf, ndf, nc = 100, 64, 64, 3
    gen = (nz * 8 * ngf * 16 + _bn(8 * ngf) + 8 * ngf * 4 * ngf * 16 + _bn(4 * ngf)
           + 4 * ngf * 2 * ngf * 16 + _bn(2 * ngf) + 2 * ngf * ngf * 16 + _bn(ngf) + ngf * nc * 16)
    disc = (nc * ndf * 16 + ndf * 2 * ndf * 16 + _bn(2 * ndf) + 2 * ndf * 4 * ndf * 16 + _bn(4 * ndf)
            + 4 * ndf * 8 * ndf * 16 + _bn(8 * ndf) + 8 * ndf * 1 * 16)
    assert (gen, disc) == (3_576_704, 2_765_568)
    assert count_params(build("dcgan_generator", (100, 1, 1), 3)) == gen
    assert count_params(build("dcgan_discriminator", (3, 64, 64), 1)) == disc
    # 32x32 images: one stride-2 layer fewer (32 -> 16 -> 8 -> 4)
    small = (nc * ndf * 16 + ndf * 2 * ndf * 16 + _bn(2 * ndf) + 2 * ndf * 4 * ndf * 16 + _bn(4 * ndf)
             + 4 * ndf * 16)
    assert count_params(build("dcgan_discriminator", (3, 32, 32), 1)) == small


def test_dcgan_generator_layer_sizes():
    sizes = []
    model = build("dcgan_generator", (100, 1, 1), 3)
    for m in model:
        if isinstance(m, nn.ConvTranspose2d):
            m.register_forward_hook(lambda mod, i, o: sizes.append(tuple(o.shape[1:])))
    model(torch.randn(1, 100, 1, 1))
    assert sizes == [(512, 4, 4), (256, 8, 8), (128, 16, 16), (64, 32, 32), (3, 64, 64)]


def test_tf_cifar10_count_and_dense_local_layers():
    # 24 -> pool 12 -> pool 6: local3 sees the flattened 64*6*6 = 2,304 features
    expected = (_conv(3, 64, 5) + _conv(64, 64, 5) + _dense(64 * 6 * 6, 384) + _dense(384, 192)
                + _dense(192, 10))
    model = build("tf_cifar10", (3, 24, 24), 10)
    assert count_params(model) == expected == 1_068_298
    assert sum(isinstance(m, L.Dense) for m in model) == 3
    assert not any(isinstance(m, L.LocallyConnected2d) for m in model)


def test_cuda_convnet_and_tf_local_counts():
    # 24 -> ceil pool 12 -> ceil pool 6; local layers: one filter bank and bias per 6x6 position
    local3 = 36 * 64 * 9 * 32 + 32 * 36
    local4 = 36 * 32 * 9 * 32 + 32 * 36
    expected = _conv(3, 64, 5) + _conv(64, 64, 5) + local3 + local4 + _dense(32 * 36, 10)
    for name in ("cuda_convnet", "tf_cifar10_local"):
        model = build(name, (3, 24, 24), 10)
        assert count_params(model) == expected
        assert sum(isinstance(m, L.LocallyConnected2d) for m in model) == 2


def test_cuda_convnet_pools_like_cuda_convnet():
    # cuda-convnet: outputs = ceil((n - 3) / 2) + 1; on 32x32 that is 16 then 8 (floor would give 15, 7)
    model = build("cuda_convnet", (3, 32, 32), 10)
    local = [m for m in model if isinstance(m, L.LocallyConnected2d)][0]
    assert tuple(local.input_size) == (8, 8)


def test_cnn_and_lcn_counts_by_hand():
    c, h, k = 32, 100, 5
    # (1, 40): conv keeps 40, pool 20, conv keeps 20, pool 10, flatten c*10
    cnn = _conv(1, c, k, 1) + _conv(c, c, k, 1) + _dense(c * 10, h) + _dense(h, 10)
    lcn = (40 * (1 * k * c) + 40 * c) + (20 * (c * k * c) + 20 * c) + _dense(c * 10, h) + _dense(h, 10)
    tiled = (2 * (1 * k * c) + 2 * c) + (2 * (c * k * c) + 2 * c) + _dense(c * 10, h) + _dense(h, 10)
    assert count_params(build("cnn", (1, 40), 10)) == cnn
    assert count_params(build("lcn", (1, 40), 10)) == lcn
    assert count_params(build("tiled", (1, 40), 10)) == tiled
    assert count_params(build("mlp", (1, 40), 10)) == _dense(40, 100) + _dense(100, 100) + _dense(100, 10)
    assert count_params(build("logistic", (3, 8, 8), 7)) == _dense(192, 7)
    # allconv on (1, 40): 5-tap conv, then 3-tap convs; 1x1 head; no dense layer
    allconv = _conv(1, c, 5, 1) + 3 * _conv(c, c, 3, 1) + _conv(c, 10, 1, 1)
    assert count_params(build("allconv", (1, 40), 10)) == allconv


def _shapes(model, x):
    out = []
    hooks = [m.register_forward_hook(lambda mod, i, o: out.append((type(mod).__name__, tuple(o.shape))))
             for m in model]
    model(x)
    for hook in hooks:
        hook.remove()
    return out


@pytest.mark.parametrize("shape", SHAPES_1D_2D, ids=["1d", "2d"])
def test_lcn_and_tiled_have_the_cnn_architecture(shape):
    x = torch.randn(2, *shape)
    cnn, lcn, tiled = (build(n, shape, 10) for n in ("cnn", "lcn", "tiled"))
    kinds = {"Conv1d": "W", "Conv2d": "W", "LocallyConnected1d": "W", "LocallyConnected2d": "W",
             "TiledConv1d": "W", "TiledConv2d": "W"}

    def normalised(model):
        return [(kinds.get(k, k), s) for k, s in _shapes(model, x)]

    assert normalised(cnn) == normalised(lcn) == normalised(tiled)
    assert count_params(cnn) < count_params(tiled) < count_params(lcn)
    assert sum(isinstance(m, (L.Conv1d, L.Conv2d)) for m in cnn) == 2
    assert sum(isinstance(m, (L.LocallyConnected1d, L.LocallyConnected2d)) for m in lcn) == 2
    assert sum(isinstance(m, (L.TiledConv1d, L.TiledConv2d)) for m in tiled) == 2


@pytest.mark.parametrize("shape", SHAPES_1D_2D, ids=["1d", "2d"])
def test_lcn_with_shared_weights_computes_the_cnn(shape):
    # copy every conv filter to every position of the local layer (Contract 3 layout): same function
    torch.manual_seed(0)
    cnn = build("cnn", shape, 10).double()
    lcn = build("lcn", shape, 10).double()
    with torch.no_grad():
        for conv, local in zip(cnn, lcn):
            if isinstance(local, (L.LocallyConnected1d, L.LocallyConnected2d)):
                ndim = conv.weight.dim() - 2
                w = conv.weight.view(1, *conv.weight.shape).movedim(1, -1)  # (1, C_in, *k, C_out)
                local.weight.copy_(w.expand_as(local.weight))
                local.bias.copy_(conv.bias.view(-1, *[1] * ndim).expand_as(local.bias))
            else:
                for p_local, p_conv in zip(local.parameters(), conv.parameters()):
                    p_local.copy_(p_conv)
    x = torch.randn(4, *shape, dtype=torch.float64)
    torch.testing.assert_close(lcn(x), cnn(x), rtol=1e-10, atol=1e-10)


def test_tiled_takes_its_tile_size_as_an_option():
    c, h, k = 32, 100, 5
    dense = _dense(c * 10, h) + _dense(h, 10)
    for tile in (2, 4):
        expected = (tile * (1 * k * c) + tile * c) + (tile * (c * k * c) + tile * c) + dense
        model = build("tiled", (1, 40), 10, tile_size=tile)
        assert count_params(model) == expected
        assert model[0].tile_size == (tile,)


def test_an_option_the_builder_does_not_take_is_refused():
    with pytest.raises(ArgumentError, match=r"zoo model 'cnn' takes no options. Received: rank; leave them out or "
                                            r"pick a model that takes them"):
        build("cnn", (1, 40), 10, rank=4)
    with pytest.raises(ArgumentError, match=r"zoo model 'tiled' takes the options tile_size. Received: rank"):
        build("tiled", (1, 40), 10, rank=4)


def _macs(model, shape):
    import layerlab

    return layerlab.summary(model, shape).total.macs


@pytest.mark.parametrize("shape", [(1, 40), (4, 32), (1, 8, 8), (1, 28, 28)])
@pytest.mark.parametrize("rank", [2, 4, 8])
def test_lowrank_costs_the_cnns_macs(shape, rank):
    target = _macs(build("cnn", shape, 10), shape)
    model = build("lowrank", shape, 10, rank=rank)
    windows = [m for m in model if isinstance(m, (L.LowRankLocallyConnected1d, L.LowRankLocallyConnected2d))]
    assert len(windows) == 2 and all(m.rank == rank for m in windows)
    channels = windows[0].out_channels
    assert abs(_macs(model, shape) / target - 1) < 0.05
    # the closest channel count: one more or one fewer is no closer to the cnn's MACs
    for other in (channels - 1, channels + 1):
        if other >= 1:
            with torch.device("meta"):
                stack = families._lenet_stack("lowrank", shape, 10, 1.0, families._lowrank_layer(rank), other)
            assert abs(stack.macs - target) >= abs(_macs(model, shape) - target)


def _leaf_types(model):
    return {type(m) for m in model.modules() if not list(m.children())}


@pytest.mark.parametrize("name", list(MODELS))
def test_built_from_layerlab_layers(name):
    shape, k, _ = NAMED.get(name, ((1, 12, 12), 10, None))
    allowed_foreign = {nn.LocalResponseNorm}  # no layerlab LRN; documented in classic.py
    with torch.device("meta"):
        model = build(name, shape, k)
    for cls in _leaf_types(model):
        assert cls.__module__.startswith("layerlab.nn") or cls in allowed_foreign, cls


@pytest.mark.parametrize("name", FAMILIES[1:] + list(NAMED))
def test_width_scaling_is_monotonic(name):
    shape, k, _ = NAMED.get(name, ((1, 16), 10, None))
    with torch.device("meta"):  # counts only
        counts = [count_params(build(name, shape, k, width=w)) for w in (0.25, 0.5, 1.0, 1.5)]
    assert counts == sorted(counts) and len(set(counts)) == 4


def test_logistic_ignores_width():
    assert count_params(build("logistic", (1, 40), 10, 0.1)) == count_params(build("logistic", (1, 40), 10, 8))


def test_width_rounds_channel_counts():
    model = build("cnn", (1, 16), 10, width=0.5)
    assert model[0].out_channels == 16 and model[-3].out_features == 50
    assert build("cnn", (1, 16), 10, width=0.001)[0].out_channels == 1  # never zero


@pytest.mark.parametrize("name, target", [("mlp", 50_000), ("cnn", 20_000), ("lcn", 60_000), ("allconv", 5_000)])
def test_width_for_params_matches_the_budget(name, target):
    w = width_for_params(name, (1, 40), 10, target)
    n = count_params(build(name, (1, 40), 10, w))
    # the best achievable: no other channel count is closer (check the neighbouring widths' counts)
    step = [count_params(build(name, (1, 40), 10, w * f)) for f in (0.97, 1.03)]
    assert abs(n - target) <= min(abs(s - target) for s in step)
    assert abs(n - target) / target < 0.05


def test_width_for_params_huge_widths_cost_no_memory():
    # lcn at width 64 on 3x64x64 would have ~10^11 parameters; the solver builds it on the meta device
    w = width_for_params("lcn", (3, 64, 64), 10, 50_000_000)
    with torch.device("meta"):
        assert abs(count_params(build("lcn", (3, 64, 64), 10, w)) - 50_000_000) / 5e7 < 0.05


def test_width_for_params_errors():
    with pytest.raises(ArgumentError, match=r"zoo model 'logistic' has 410 parameters at every width; width "
                                            r"cannot match target=1,000, pick another model"):
        width_for_params("logistic", (1, 40), 10, 1000)
    with pytest.raises(ArgumentError, match=r"zoo model 'mlp' spans [\d,]+ to [\d,]+ parameters for widths "
                                            r"0\.015625 to 64\. Received: target=10; widen min_width/max_width"):
        width_for_params("mlp", (1, 40), 10, 10)
    with pytest.raises(ArgumentError, match=r"target must be a positive int \(a parameter count\)\. "
                                            r"Received: target=2\.5"):
        width_for_params("mlp", (1, 40), 10, 2.5)


@pytest.mark.parametrize(
    "args, message",
    [
        (("resnet", (1, 40), 10), r"unknown zoo model 'resnet'; choose one of logistic, mlp, cnn, lcn, tiled, "
                                  r"lowrank, allconv, lenet5, tf_cifar10, tf_cifar10_local, cuda_convnet, "
                                  r"dcgan_generator, dcgan_discriminator, unet"),
        (("cnn", [1, 0], 10), r"zoo model 'cnn': input_shape must be a tuple of positive ints, \(C, L\) or "
                              r"\(C, H, W\) per sample without the batch dim\. Received: input_shape=\[1, 0\]"),
        (("cnn", "1x40", 10), r"input_shape must be a tuple of positive ints.* Received: input_shape='1x40'"),
        (("cnn", (1, 40), 0), r"zoo model 'cnn': num_classes must be a positive int\. Received: num_classes=0"),
        (("cnn", (1, 40), 10, 0.0), r"zoo model 'cnn': width must be a positive finite number \(1\.0 = the "
                                    r"documented size\)\. Received: width=0\.0"),
        (("mlp", (1, 40), 10, math.inf), r"width must be a positive finite number .* Received: width=inf"),
    ],
)
def test_build_argument_errors(args, message):
    with pytest.raises(ArgumentError, match=message):
        build(*args)


@pytest.mark.parametrize(
    "args, message",
    [
        (("cnn", (40,), 10), r"zoo model 'cnn' takes inputs \(C, L\) or \(C, H, W\) per sample\. Received: "
                             r"input_shape=\(40,\); add a channel dim, e.g\. \(1, L\)"),
        (("mlp", (1, 2, 3, 4), 10), None),
        (("allconv", (1, 2, 3, 4), 10), r"zoo model 'allconv' takes inputs \(C, L\) or \(C, H, W\) per sample\. "
                                        r"Received: input_shape=\(1, 2, 3, 4\)$"),
        (("cnn", (1, 3), 10), r"zoo model 'cnn' does not fit input_shape=\(1, 3\): layer 6 \(MaxPool1d\(.*\)\) "
                              r"gets \(32, 1\): "),
        (("dcgan_generator", (100,), 3), r"zoo model 'dcgan_generator' takes a latent vector shaped \(nz, 1, 1\), "
                                         r"as in the DCGAN paper\. Received: input_shape=\(100,\); use e\.g\. "
                                         r"\(100, 1, 1\) and feed torch\.randn\(B, 100, 1, 1\)"),
        (("dcgan_discriminator", (3, 48, 48), 1), r"zoo model 'dcgan_discriminator' takes square images whose "
                                                  r"side is a power of two >= 8 .* Received: input_shape=\(3, 48, 48\)"),
        (("dcgan_discriminator", (3, 64), 1), r"zoo model 'dcgan_discriminator' takes inputs \(C, H, W\) per sample"),
        (("unet", (1, 30, 32), 2), r"zoo model 'unet' pools twice by 2 and concatenates skip connections, so every "
                                   r"spatial size must be divisible by 4\. Received: input_shape=\(1, 30, 32\); "
                                   r"crop or pad the inputs, e\.g\. to \(28, 32\)"),
    ],
)
def test_build_shape_errors(args, message):
    if message is None:  # a flattening MLP takes any number of dims
        assert build(*args)(torch.randn(2, 1, 2, 3, 4)).shape == (2, 10)
        return
    with pytest.raises(ShapeError, match=message):
        build(*args)


def test_unet_is_fully_convolutional():
    model = build("unet", (2, 16), 3).eval()
    assert model(torch.randn(2, 2, 24)).shape == (2, 3, 24)  # another length divisible by 4


def test_huge_model_is_refused_before_allocating(monkeypatch):
    import tracemalloc

    monkeypatch.delenv("LAYERLAB_MAX_BYTES", raising=False)
    tracemalloc.start()
    try:
        with pytest.raises(SizeLimitError, match=r"zoo model 'lcn' with input_shape=\(3, 64, 64\), width=8 has "
                                                 r"1,810,113,130 parameters = 6\.7 GiB, over the limit of 2\.0 GiB; "
                                                 r"nothing was allocated\. Choose a smaller width"):
            build("lcn", (3, 64, 64), 10, width=8)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000


def test_size_limit_follows_the_environment(monkeypatch):
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "100KiB")
    with pytest.raises(SizeLimitError, match=r"zoo model 'cnn' .* has 38,454 parameters = 150\.2 KiB, over the "
                                             r"limit of 100\.0 KiB; .* raise the limit with the environment "
                                             r"variable LAYERLAB_MAX_BYTES"):
        build("cnn", (1, 40), 10)
    with torch.device("meta"):  # nothing to allocate: no limit
        assert count_params(build("cnn", (1, 40), 10)) == 38_454
    # the solver counts on the meta device, so a budget over the limit is still solvable
    assert width_for_params("cnn", (1, 40), 10, 1_000_000) > 1


def test_user_builders_are_called_once_and_unchecked(monkeypatch):
    # a builder a user adds to MODELS may have side effects or be meta-unsafe: no pre-check run
    calls = []

    def builder(input_shape, num_classes, width):
        calls.append(width)
        return nn.Linear(int(torch.tensor(input_shape).prod()), num_classes)  # .prod() value: not on meta

    monkeypatch.setitem(MODELS, "custom", builder)
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "1")
    assert build("custom", (2, 3), 4).in_features == 6
    assert calls == [1.0]
