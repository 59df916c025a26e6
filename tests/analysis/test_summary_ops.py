"""summary() counts every op: attention, recurrences and functional ops in a custom forward, checked
against FlopCounterMode (where it counts the op) and hand derivations (where it does not); the
same count whatever the mode and the attention kernel torch picks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from layerlab.analysis import summary
from layerlab.analysis.ops import count_op
from layerlab.analysis.trace import record_ops
from layerlab.arith import DenseSpec
from layerlab.arith.contraction import rnn_macs
from layerlab.functional import local as local_module
from layerlab.nn import LocallyConnected2d, TiledConv2d


def _load_models():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "summary_models.py"
    spec = importlib.util.spec_from_file_location("summary_models", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["summary_models"] = module
    spec.loader.exec_module(module)
    return module


models = _load_models()


def flop_counter_macs(model: nn.Module, x: torch.Tensor) -> int:
    """FlopCounterMode / 2 of a train-mode forward with the math attention backend."""
    model.train()
    with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        model(x)
    return counter.get_total_flops() // 2


def recorded_macs(fn, *args) -> tuple[int, list[str]]:
    """MACs of a real run's ops (the kernels torch picks on CPU) and the contraction op names."""
    _, ops = record_ops(fn, *args)
    counts = [count_op(op) for op in ops]
    assert all(c.kind != "unknown" for c in counts), [op.name for op, c in zip(ops, counts) if c.kind == "unknown"]
    return sum(c.macs for c in counts), sorted({op.packet for op, c in zip(ops, counts) if c.kind == "contraction"})


# hand counts (docstring of benchmarks/summary_models.py)
TRANSFORMER_MACS = 196_608 + 2 * (16 * 64 * 192 + 16 * 64 * 64 + 16 * 16 * 64 * 2 + 2 * 16 * 64 * 128) + 64 * 10
LSTM_MACS = 20 * 4 * 64 * (40 + 64) + 64 * 10


def test_patch_transformer_hand_count_and_flop_counter():
    torch.manual_seed(0)
    model = models.PatchTransformer()
    s = summary(model, (3, 32, 32), batch_size=2)
    assert TRANSFORMER_MACS == 1_311_360
    assert s.total.params == 79_946 == sum(p.numel() for p in model.parameters())
    assert s.total.macs == 2 * TRANSFORMER_MACS
    assert s.total.macs == flop_counter_macs(model, torch.randn(2, 3, 32, 32))
    assert s.complete and s.unknown_ops == {}
    attention = [row for row in s.layers if row.type == "MultiheadAttention"]
    assert [row.macs for row in attention] == [2 * 294_912] * 2 and [row.params for row in attention] == [16_640] * 2
    notes = " ".join(w for row in s.layers for w in row.warnings)
    assert "never called" not in notes and "Flatten" not in notes


def test_transformer_count_does_not_depend_on_mode_or_kernel():
    torch.manual_seed(0)
    model = models.PatchTransformer()
    x = torch.randn(2, 3, 32, 32)
    assert summary(model.train(), (3, 32, 32), batch_size=2).total.macs == summary(model.eval(), (3, 32, 32), batch_size=2).total.macs
    with torch.no_grad():  # eval on CPU: each layer is one fused _transformer_encoder_layer_fwd
        fused, kernels = recorded_macs(model.eval(), x)
    assert "aten._transformer_encoder_layer_fwd" in kernels and fused == 2 * TRANSFORMER_MACS
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):  # train mode, math attention: bmm's
        math, kernels = recorded_macs(model.train(), x)
    assert "aten.bmm" in kernels and math == 2 * TRANSFORMER_MACS


def test_multihead_attention_fast_path_and_sdpa_kernels_match_the_hand_count():
    mha = nn.MultiheadAttention(64, 4, batch_first=True, kdim=32, vdim=48).eval()
    q, k, v = torch.randn(3, 10, 64), torch.randn(3, 7, 32), torch.randn(3, 7, 48)
    hand = 3 * (10 * 64 * 64 + 7 * 32 * 64 + 7 * 48 * 64 + 10 * 7 * 2 * 64 + 10 * 64 * 64)
    with torch.no_grad():
        slow, kernels = recorded_macs(mha, q, k, v)  # kdim != embed_dim: the composite path
    assert slow == hand and "aten._native_multi_head_attention" not in kernels
    mha_self = nn.MultiheadAttention(64, 4, batch_first=True).eval()
    x = torch.randn(3, 10, 64)
    with torch.no_grad():
        fast, kernels = recorded_macs(mha_self, x, x, x)
    assert kernels == ["aten._native_multi_head_attention"]
    assert fast == 3 * (10 * 64 * 192 + 10 * 10 * 2 * 64 + 10 * 64 * 64)
    qh, kh, vh = torch.randn(2, 4, 10, 16), torch.randn(2, 4, 12, 16), torch.randn(2, 4, 12, 16)
    cpu, kernels = recorded_macs(F.scaled_dot_product_attention, qh, kh, vh)
    assert kernels == ["aten._scaled_dot_product_flash_attention_for_cpu"] and cpu == 2 * 4 * 10 * 12 * (16 + 16)
    with sdpa_kernel(SDPBackend.MATH):
        math, kernels = recorded_macs(F.scaled_dot_product_attention, qh, kh, vh[..., :8])  # values of 8 features
    assert "aten.bmm" in kernels and math == 2 * 4 * 10 * 12 * (16 + 8)


def test_lstm_classifier_hand_count_in_both_modes_and_on_onednn():
    model = models.LSTMClassifier()
    assert LSTM_MACS == 533_120 == 20 * 1 * 4 * 64 * (40 + 64) + 640
    for mode in (True, False):
        s = summary(model.train(mode), (20, 40))
        assert s.total.params == 27_786 and s.total.macs == LSTM_MACS and s.complete
    lstm_row = next(row for row in s.layers if row.type == "LSTM")
    assert lstm_row.macs == rnn_macs("LSTM", 20, 1, 40, 64)
    with torch.no_grad():  # eval on CPU: oneDNN's fused LSTM layer
        fused, kernels = recorded_macs(model.eval(), torch.randn(3, 20, 40))
    assert "aten.mkldnn_rnn_layer" in kernels and fused == 3 * LSTM_MACS


@pytest.mark.parametrize(
    "layer, shape, hand, formula",
    [
        # 2 layers, 2 directions: layer 2 reads both directions (2·64 features); T=20
        (nn.GRU(40, 64, num_layers=2, bidirectional=True, batch_first=True), (20, 40),
         2 * 20 * 3 * 64 * (40 + 64) + 2 * 20 * 3 * 64 * (128 + 64),
         2 * rnn_macs("GRU", 20, 1, 40, 64) + 2 * rnn_macs("GRU", 20, 1, 128, 64)),
        (nn.RNN(40, 64, batch_first=True), (20, 40), 20 * 64 * (40 + 64), rnn_macs("RNN_TANH", 20, 1, 40, 64)),
        # projection: the recurrent product uses the projected state (16), plus 64·16 per step
        (nn.LSTM(40, 64, proj_size=16, batch_first=True), (20, 40), 20 * (4 * 64 * (40 + 16) + 64 * 16),
         rnn_macs("LSTM", 20, 1, 40, 64, proj_size=16)),
        (nn.LSTMCell(40, 64), (40,), 4 * 64 * (40 + 64), rnn_macs("LSTM", 1, 1, 40, 64)),
        (nn.GRUCell(40, 64), (40,), 3 * 64 * (40 + 64), rnn_macs("GRU", 1, 1, 40, 64)),
    ],
    ids=["gru-2layer-bidirectional", "rnn", "lstm-proj", "lstm-cell", "gru-cell"],
)
def test_recurrent_layers_hand_formulas(layer, shape, hand, formula):
    assert formula == hand  # the documented formula (layerlab.arith.contraction) is the hand count
    s = summary(layer, shape)
    assert s.total.macs == hand and s.complete
    assert s.layers[0].macs == hand and s.total.params == sum(p.numel() for p in layer.parameters())


def test_functional_ops_get_rows_under_their_module():
    torch.manual_seed(0)
    model = models.FunctionalNet()
    s = summary(model, (3, 8, 8), batch_size=2)
    assert s.total.macs == flop_counter_macs(model, torch.randn(2, 3, 8, 8))
    ops = [(row.name, row.op, row.calls, row.macs) for row in s.layers if row.op is not None]
    assert ops == [
        ("FunctionalNet", "matmul", 2, 2 * (64 * 8 * 64 + 4 * 16 * 16)),
        ("FunctionalNet", "einsum", 1, 2 * 64 * 64 * 8),
        ("FunctionalNet", "scaled_dot_product_attention", 1, 2 * 2 * 64 * 64 * (4 + 4)),
        ("FunctionalNet", "conv_transpose2d", 1, 2 * 8 * 64 * 2 * 4),  # C_in·∏in·(C_out/groups)·∏k
        ("FunctionalNet", "interpolate", 1, 0),
    ]
    rows = {row.op: row for row in s.layers}
    assert rows["interpolate"].input_shape == (2, 4, 16, 16) and rows["interpolate"].output_shape == (2, 4, 8, 8)
    assert [row.name for row in s.layers if row.op is None] == ["FunctionalNet", "conv"]  # its own params, then the conv
    assert s.layers[0].params == 16 * 16 + 8 * 2 * 2 * 2 and s.layers[0].macs == 0
    assert "matmul ×2" in str(s)


def test_depth_folds_op_rows_into_their_module():
    s = summary(models.PatchTransformer(), (3, 32, 32), depth=1)
    assert [(row.name, row.macs) for row in s.layers] == [
        ("patch", 196_608), ("encoder", 2 * 557_056), ("head", 640),
    ]


def test_mha_out_proj_is_read_by_its_attention():
    class Wrapped(nn.Module):
        """out_proj's weights are used by a parent whose children do run: the row says who reads them."""

        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(8)
            self.proj = nn.Linear(8, 8)

        def forward(self, x):
            return F.linear(self.norm(x), self.proj.weight, self.proj.bias)

    s = summary(Wrapped(), (5, 8))
    proj = next(row for row in s.layers if row.name == "proj")
    assert proj.params == 72 and proj.output_shape is None
    assert proj.warnings == ["not called as a module: its parameters are read by the forward of 'Wrapped' (Wrapped), whose "
                             "row counts their work"]
    assert s.total.macs == 5 * 8 * 8 and [row.op for row in s.layers] == [None, "linear", None]


@pytest.mark.skipif(not local_module._cpp_available(), reason="the C++ local_conv extension is not built here")
def test_layerlab_local_ops_are_counted_with_arith():
    layer = LocallyConnected2d(3, 8, 3, padding=1, groups=1)
    tiled = TiledConv2d(3, 4, 3, tile_size=2, stride=2)
    x = torch.randn(2, 3, 8, 8)
    for module in (layer, tiled):
        with torch.no_grad():
            macs, kernels = recorded_macs(module, x)
        assert kernels == ["layerlab_local.forward"]
        assert macs == summary(module, (3, 8, 8), batch_size=2).total.macs
    out = layer(x.requires_grad_())
    _, ops = record_ops(out.sum().backward)
    grads = {op.packet: count_op(op).macs for op in ops if op.packet.startswith("layerlab_local")}
    assert grads == {"layerlab_local.weight_grad": 2 * 8 * 64 * 27, "layerlab_local.input_grad": 2 * 8 * 64 * 27}


def test_dense_layer_on_tokens_has_no_flatten_hint():
    assert DenseSpec(128, 64).analyse((16, 64)).warnings == ()
    assert "Flatten()" in DenseSpec(10).analyse((4, 4, 4)).warnings[0]
