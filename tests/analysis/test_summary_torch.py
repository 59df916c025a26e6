"""summary() on plain torch models, checked against the real model: sum(numel), FlopCounterMode and
the real forward's shapes; hand-checked LeNet-5 and DCGAN numbers; unknown modules; JSON."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from layerlab.analysis import summary
from layerlab.errors import ArgumentError, ShapeError
from layerlab.convert import convert_model
from layerlab.nn import Dense
from layerlab.zoo import build


def real_output_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, list[tuple[int, ...]]]:
    """Output shapes of every module call on a real CPU forward (independent of layerlab's trace)."""
    shapes: dict[str, list[tuple[int, ...]]] = {}
    handles = []
    for name, module in model.named_modules():
        def hook(mod, args, out, name=name):
            if isinstance(out, torch.Tensor):
                shapes.setdefault(name, []).append(tuple(out.shape))
        handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model.eval()(x)
    for handle in handles:
        handle.remove()
    return shapes


def flop_counter_macs(model: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


def check_against_real(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 2):
    """Params == sum(numel), MACs == FlopCounterMode / 2, row shapes == the real forward's."""
    s = summary(model, input_shape, batch_size=batch_size)
    x = torch.randn(batch_size, *input_shape)
    assert s.total.params == sum(p.numel() for p in model.parameters())
    assert s.total.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert s.total.buffers == sum(b.numel() for b in model.buffers())
    assert s.total.macs == flop_counter_macs(model, x)
    assert s.total.flops == 2 * s.total.macs
    real = real_output_shapes(model, x)
    seen: dict[str, int] = {}
    for row in s.layers:
        if row.output_shape is None:
            continue
        k = seen.get(row.name, 0)
        seen[row.name] = k + 1
        key = row.name if row.name in real else ""
        assert row.output_shape == real[key][k], row.name
    assert s.output_shapes == [tuple(model(x).shape)]
    return s


@pytest.mark.parametrize(
    "model, shape",
    [
        (nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Dropout(0.5), nn.Linear(30, 5)), (20,)),
        (nn.Sequential(nn.Conv1d(2, 4, 3, stride=2, padding=1), nn.BatchNorm1d(4), nn.ELU(), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(32, 3)), (2, 32)),
        (
            nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.GroupNorm(2, 8), nn.GELU(),
                nn.Conv2d(8, 8, 3, groups=4, dilation=2), nn.AvgPool2d(2, ceil_mode=True),
                nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, output_padding=1), nn.LayerNorm([4, 13, 13]),
                nn.AdaptiveAvgPool2d((3, 2)), nn.Flatten(), nn.Linear(24, 10), nn.Softmax(dim=1),
            ),
            (3, 16, 16),
        ),
        (
            nn.Sequential(nn.Conv3d(1, 4, (3, 3, 2)), nn.InstanceNorm3d(4, affine=True), nn.ConvTranspose3d(4, 2, 2, stride=2, groups=2), nn.AdaptiveMaxPool3d(1), nn.Flatten(), nn.Identity()),
            (1, 6, 7, 8),
        ),
        (nn.Sequential(nn.ConvTranspose1d(3, 6, 5, stride=3, padding=2, dilation=2, groups=3), nn.Tanh(), nn.Upsample(scale_factor=2), nn.Sigmoid()), (3, 9)),
        (nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(2, 2, 1), nn.SiLU(), nn.LeakyReLU(0.1)), (2, 5, 5)),
    ],
    ids=["mlp", "conv1d", "conv2d-mix", "conv3d", "convT1d-upsample", "bilinear"],
)
def test_plain_models_match_torch(model, shape):
    torch.manual_seed(0)
    s = check_against_real(model, shape)
    assert s.complete and s.unknown == []


class Block(nn.Module):
    """A custom module with functional ops in its forward."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x)))) + x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8))
        self.blocks = nn.ModuleList([Block(8), Block(8)])
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(torch.flatten(x, 1))


def test_nested_custom_module_with_functional_ops():
    s = check_against_real(Net(), (3, 16, 16))
    assert [row.name for row in s.layers] == [
        "stem.0", "stem.1", "blocks.0.conv1", "blocks.0.conv2", "blocks.1.conv1", "blocks.1.conv2", "head",
    ]
    assert s.complete
    by_name = {row.name: row for row in s.layers}
    # F.relu keeps the shape: the receptive field flows through it (3, then +2·2 per conv after stride 2)
    assert by_name["stem.0"].receptive_field["size"] == [3, 3]
    assert by_name["blocks.0.conv1"].receptive_field["size"] == [7, 7]
    assert by_name["blocks.1.conv2"].receptive_field["size"] == [19, 19]
    assert by_name["head"].receptive_field["global"] is True


def test_receptive_field_matches_brute_force_gradient():
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.ReLU(), nn.Conv2d(1, 1, 3, stride=2), nn.AvgPool2d(2), nn.Conv2d(1, 1, 2, dilation=2))  # avg: max routes the gradient to one tap
    for p in model.parameters():
        nn.init.constant_(p, 0.1)
    s = summary(model, (1, 40, 40))
    x = torch.rand(1, 1, 40, 40, requires_grad=True)
    out = model(x)
    out[0, 0, 1, 1].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    size = [int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)]
    assert s.layers[-1].receptive_field["size"] == size


def test_shared_module_and_tied_parameters_counted_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(6, 6)
            self.out = nn.Linear(6, 6)
            self.out.weight = self.embed.weight  # tied
            self.act = nn.ReLU()

        def forward(self, x):
            return self.out(self.act(self.embed(self.act(self.embed(x)))))

    model = Tied()
    s = check_against_real(model, (6,))
    assert s.total.params == 36 + 6 + 6
    assert [row.params for row in s.layers if row.type == "Linear"] == [42, 0, 6]
    assert "called again" in " ".join(s.layers[2].warnings)
    assert s.total.macs == 3 * 2 * 36


class MyOp(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) * self.scale


class Spectral(nn.Module):
    """A leaf whose forward runs an op with no MAC formula (an FFT) and a matmul."""

    def forward(self, x):
        return torch.fft.rfft(x).abs() @ torch.ones(3, 3)


def test_modules_without_spec_are_counted_from_their_ops():
    model = nn.Sequential(nn.Linear(4, 4), MyOp(), Scaled(), nn.Linear(4, 2))
    s = check_against_real(model, (4,))
    assert s.complete and s.unknown == [] and s.incomplete_note is None
    assert [(row.name, row.type, row.params, row.macs) for row in s.layers] == [
        ("0", "Linear", 20, 32), ("1", "MyOp", 0, 0), ("2", "Scaled", 4, 0), ("2.fc", "Linear", 20, 32), ("3", "Linear", 10, 16),
    ]


def test_op_without_formula_is_listed_and_totals_are_a_lower_bound():
    model = nn.Sequential(nn.Linear(4, 4), Spectral(), nn.Linear(3, 2))
    s = summary(model, (4,), batch_size=2)
    assert not s.complete
    assert s.unknown == ["1 (Spectral)"]
    assert s.unknown_ops == {"aten._fft_r2c.default": 1}
    note = "totals are incomplete: no MAC formula for aten._fft_r2c.default ×1 (in 1 (Spectral))"
    assert s.incomplete_note == note
    spectral = s.layers[1]
    assert spectral.unknown and spectral.macs == 2 * 3 * 3  # the matmul is counted, the FFT is not
    assert "no MAC formula for aten._fft_r2c.default ×1" in spectral.warnings[0]
    assert s.total.macs == 2 * (16 + 9 + 6)  # a lower bound, never a silent 0
    text = str(s)
    assert note in text and "≥18" in text and "lower bound" in text
    data = s.to_dict()
    assert data["complete"] is False and data["unknown_ops"] == {"aten._fft_r2c.default": 1}
    assert data["layers"][1]["unknown_ops"] == {"aten._fft_r2c.default": 1}


def test_never_called_module_params_are_counted():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(3, 3)
            self.spare = nn.Linear(3, 7)

        def forward(self, x):
            return self.used(x)

    s = summary(Unused(), (3,))
    assert s.total.params == 12 + 28
    spare = [row for row in s.layers if row.name == "spare"][0]
    assert spare.params == 28 and spare.output_shape is None
    assert "never called" in spare.warnings[0]


def test_lazy_modules_inferred_and_left_uninitialised():
    model = nn.Sequential(nn.LazyConv2d(6, 3), nn.LazyBatchNorm2d(), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
    s = summary(model, (3, 10, 10))
    assert s.complete
    assert [row.params for row in s.layers] == [6 * 3 * 9 + 6, 12, 0, 0, 6 * 8 * 8 * 10 + 10]
    assert s.layers[-1].macs == 384 * 10
    assert s.total.buffers == 6 + 6 + 1
    # the user's model is untouched: still lazy
    assert isinstance(model[0].weight, nn.parameter.UninitializedParameter)
    model(torch.randn(1, 3, 10, 10))  # and still initialises on its own first call
    assert s.total.params == sum(p.numel() for p in model.parameters())


def test_model_is_not_changed_and_uses_no_real_memory():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.BatchNorm1d(4))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary(model, (4,))
    assert model.training and all(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        assert value.device.type == "cpu" and torch.equal(value, before[key])


def test_huge_model_on_meta_device():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(100_000, 100_000), nn.ReLU(), nn.Linear(100_000, 10))  # 40 GB in float32
    s = summary(model, (100_000,), batch_size=64)
    assert s.total.params == 100_000 * 100_001 + 1_000_010
    assert s.total.macs == 64 * (100_000 * 100_000 + 100_000 * 10)
    assert s.total.memory["params"] == 4 * s.total.params


def test_depth_folds_children_into_parent():
    s = summary(Net(), (3, 16, 16), depth=1)
    assert [(row.name, row.type) for row in s.layers] == [("stem", "Sequential"), ("blocks", "ModuleList"), ("head", "Linear")]
    full = summary(Net(), (3, 16, 16))
    assert s.layers[1].params == sum(r.params for r in full.layers if r.name.startswith("blocks."))
    assert s.layers[1].macs == sum(r.macs for r in full.layers if r.name.startswith("blocks."))
    assert s.layers[1].input_shape == (1, 8, 8, 8) and s.layers[1].output_shape == (1, 8, 8, 8)
    assert s.total.params == full.total.params


def lenet5() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(),
        nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10),
    )


def test_lenet5_hand_checked():
    s = check_against_real(lenet5(), (1, 32, 32), batch_size=1)
    # C1 6·(25+1)=156, C3 16·(6·25+1)=2416, C5 120·(16·25+1)=48120, F6 84·121=10164, out 10·85=850
    assert s.total.params == 61_706
    # C1 6·28·28·25=117600, C3 16·10·10·150=240000, C5 120·400=48000, F6 120·84=10080, out 840
    assert s.total.macs == 416_520
    convs = [row for row in s.layers if row.type == "Conv2d"]
    assert [row.output_shape for row in convs] == [(1, 6, 28, 28), (1, 16, 10, 10), (1, 120, 1, 1)]
    assert [row.receptive_field["size"] for row in convs] == [[5, 5], [14, 14], [32, 32]]


def dcgan(ngf: int = 64, ndf: int = 64) -> tuple[nn.Sequential, nn.Sequential]:
    generator = nn.Sequential(
        nn.ConvTranspose2d(100, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh(),
    )
    discriminator = nn.Sequential(
        nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid(),
    )
    return generator, discriminator


def test_dcgan_generator_and_discriminator():
    generator, discriminator = dcgan()
    g = check_against_real(generator, (100, 1, 1), batch_size=1)
    d = check_against_real(discriminator, (3, 64, 64), batch_size=1)
    assert g.total.params == 3_576_704  # the published DCGAN numbers (ngf = ndf = 64)
    assert d.total.params == 2_765_568
    assert g.output_shapes == [(1, 3, 64, 64)] and d.output_shapes == [(1, 1, 1, 1)]
    # transposed conv MACs: C_in·∏in·C_out·∏k, e.g. the first layer 100·1·512·16
    assert g.layers[0].macs == 100 * 512 * 16
    assert [row.output_shape[-1] for row in d.layers if row.type == "Conv2d"] == [32, 16, 8, 4, 1]


def test_json_schema_keys():
    s = summary(lenet5(), "1x32x32", batch_size=3)
    data = json.loads(s.to_json())
    assert data["schema"] == "layerlab.summary/1"
    assert {"layers", "total", "complete", "unknown", "input_shape", "batch_size", "dtype", "conventions"} <= set(data)
    for layer in data["layers"]:
        assert {"name", "type", "input_shape", "output_shape", "params", "macs", "receptive_field"} <= set(layer)
    assert {"params", "trainable_params", "non_trainable_params", "buffers", "macs", "flops", "memory"} <= set(data["total"])
    assert data["total"]["macs"] == 3 * 416_520
    assert data["layers"][0]["input_shape"] == [3, 1, 32, 32]


def test_table_text_has_footer():
    text = str(summary(lenet5(), (1, 32, 32)))
    for piece in ("Total params: 61,706", "Trainable params: 61,706", "Non-trainable params: 0", "Buffers: 0",
                  "MACs: 416,520", "FLOPs: 833,040", "Memory:", "FLOPs = 2 × MACs"):
        assert piece in text


def test_frozen_params_are_non_trainable():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    s = summary(model, (3,))
    assert (s.total.trainable_params, s.total.non_trainable_params) == (10, 16)


def test_shape_error_names_the_module_and_explains():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(100, 10))
    with pytest.raises(ShapeError, match=r"module '2' \(Linear\(in_features=100.*failed on input \(1, 1568\).*"
                       r"Linear\(100 → 10\) expects 100 input features, gets 1568"):
        summary(model, (3, 16, 16))


def test_wrong_input_channels_fix_is_phrased_for_torch_modules():
    """torch's Conv2d takes no in_channels=None: the fix names the input shape, then torch's order."""
    with pytest.raises(ShapeError, match=r"Conv2d\(3 → 8, kernel_size=3\) expects 3 input channels, gets 1\. Fix: the "
                       r"input shape \(input_shape, --input on the command line\) gives 1 channels and the layer takes 3: "
                       r"give an input with 3 channels, or build it as nn\.Conv2d\(1, 8, …\) \(torch's first argument is "
                       r"in_channels\)\.$"):
        summary(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), (1, 8, 8))
    with pytest.raises(ShapeError, match=r"expects 4 input channels, gets 8\. Fix: build it as nn\.Conv2d\(8, 8, …\) "
                       r"\(torch's first argument is in_channels\)\.$") as info:
        summary(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(4, 8, 3)), (3, 8, 8))
    assert "None" not in str(info.value)
    with pytest.raises(ShapeError, match=r"expects 10 input features, gets 12\. Fix: the input shape .* gives 12 features "
                       r"and the layer takes 10: give an input with 10 features, or build it as nn\.Linear\(12, 8\)"):
        summary(nn.Sequential(nn.Linear(10, 8)), (12,))


def test_layerlab_modules_keep_the_infer_fix():
    with pytest.raises(ShapeError, match=r"Fix: set in_features=12 \(or None to infer it\)"):
        summary(nn.Sequential(Dense(8, in_features=10)), (12,))


def test_multi_input_model_error():
    with pytest.raises(ShapeError, match=r"the model's own forward .*summary calls forward with one tensor"):
        summary(nn.Bilinear(3, 3, 2), (3,))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": (3, 0)}, r"summary: input_shape must be a non-empty tuple of positive ints.*Received: input_shape=\(3, 0\)"),
        ({"input_shape": "3xx3"}, r"shape '3xx3': size 2 is empty"),
        ({"input_shape": (3,), "batch_size": 0}, r"summary: batch_size must be a positive integer. Received: batch_size=0"),
        ({"input_shape": (3,), "depth": -1}, r"summary: depth must be a non-negative integer \(0: one row for the whole "
                                             r"model\) or None \(all layers\). Received: depth=-1"),
        ({"input_shape": (3,), "memory": "exact"}, r"summary: memory must be one of 'estimate', 'measure'. Received: memory='exact'"),
        ({"input_shape": (3,), "dtype": "float32"}, r"summary: dtype must be a torch.dtype such as torch.float32. Received: dtype='float32'"),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        summary(nn.Linear(3, 3), **kwargs)


def test_model_must_be_a_module():
    with pytest.raises(ArgumentError, match=r"summary: model must be a torch.nn.Module, got function"):
        summary(lambda x: x, (3,))


def test_data_dependent_forward_is_explained():
    class ReadsValues(nn.Module):
        def forward(self, x):
            return x * float(x.sum().item())

    with pytest.raises(ShapeError, match=r"module '0' \(ReadsValues\(\)\) failed on input \(1, 3\): .*Fix: this forward reads "
                       r"tensor values \(e.g. .item\(\), data-dependent control flow\), which the meta-device trace cannot do"):
        summary(nn.Sequential(ReadsValues()), (3,))


def test_receptive_field_through_pad_and_concat_warned_once():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 2, 5)
            self.b = nn.Conv2d(2, 2, 5)
            self.c = nn.Conv2d(4, 2, 1)
            self.d = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            y = self.a(x)
            z = self.b(F.pad(y, (2, 2, 2, 2)))
            return self.d(self.c(torch.cat([y, z], 1)))

    s = summary(Skip(), (1, 6, 6))
    fields = {row.name: row.receptive_field for row in s.layers}
    assert fields["a"]["size"] == [5, 5] and fields["a"]["start"] == [2, 2]
    assert fields["b"]["size"] == [9, 9] and fields["b"]["start"] == [2, 2]  # F.pad moved the start back by 2
    assert fields["c"] == fields["d"] == fields["b"]  # the union of [0, 4] and [-2, 6], both centred at 2
    assert fields["d"]["aligned"] == [True, True]
    warned = [row.name for row in s.layers if any("receptive field" in w for w in row.warnings)]
    assert warned == ["b"]  # 9 > 6 first at b, not repeated after the concatenation
    s = summary(nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(3)], nn.Conv2d(1, 1, 1)), (1, 6, 6))
    warned = [row.name for row in s.layers if any("receptive field" in w for w in row.warnings)]
    assert warned == ["2"]  # 7 > 6 first at the third conv, not repeated after it


def test_summary_of_a_dense_conversion_is_complete():
    """convert_model(to="dense") inserts nn.Unflatten; the summary knows it."""
    dense = convert_model(build("cnn", input_shape=(1, 28, 28), num_classes=10), "dense", (1, 28, 28))
    result = summary(dense, (1, 28, 28))
    assert "Unflatten" in [row.type for row in result.layers]
    assert result.complete
