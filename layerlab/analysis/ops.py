"""What one traced aten op computes: its MACs, or that it has none, or that layerlab has no formula.

Every :class:`~layerlab.analysis.trace.Op` falls in one class (:func:`count_op`):

- ``"contraction"``: it multiplies and accumulates; its MACs come from :mod:`layerlab.arith`
  (``mm``/``addmm``/``bmm``/``baddbmm``/``addbmm``/``mv``/``addmv``/``dot``: ``contraction.matmul_macs``;
  ``convolution``: the ``ConvSpec``/``ConvTransposeSpec`` of its arguments; layerlab's
  ``layerlab_local`` ops: the ``LocalSpec`` of theirs; every scaled-dot-product attention kernel
  (math, flash, memory-efficient, cuDNN, CPU flash): ``contraction.attention_macs``; the fused
  ``_native_multi_head_attention`` and ``_transformer_encoder_layer_fwd`` of CPU/CUDA inference:
  ``contraction.multi_head_attention_macs`` (plus the feed-forward products); oneDNN's
  ``mkldnn_rnn_layer``: ``contraction.rnn_macs``). Composite ops (``linear``, ``matmul``,
  ``einsum``, ``scaled_dot_product_attention`` on meta tensors, ``nn.LSTM``/``GRU``/``RNN`` and
  their cells) reach the dispatcher as these, so they are counted through them, once.
- ``"resample"``: pooling and interpolation (``max_pool*``, ``avg_pool*``, adaptive pools,
  ``upsample_*``): no MACs, but a functional call of one gets a row.
- ``"free"``: no MACs by nature: element-wise ops (torch's ``pointwise`` tag), views and in-place
  or ``out=`` aliases, reductions (``reduction`` tag), random ops, factories (no tensor input),
  and the data-movement, normalisation and softmax ops of ``_FREE``.
- ``"unknown"``: anything else (``_fft_r2c``, ``linalg_*``, ``_cdist_forward``, a custom op):
  listed by name with its call count; the totals are then a lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Any

import torch

from layerlab.analysis.trace import Op, TensorArg
from layerlab.arith import ConvSpec, ConvTransposeSpec, LocalSpec
from layerlab.arith.contraction import RNN_GATES, attention_macs, matmul_macs, multi_head_attention_macs, rnn_macs

__all__ = ["OpCount", "count_op", "CONTRACTIONS", "RESAMPLE"]


@dataclass(frozen=True)
class OpCount:
    """The work of one op call.

    Attributes:
        kind: ``"contraction"``, ``"resample"``, ``"free"`` or ``"unknown"`` (module docstring).
        macs: multiply-accumulates for the whole batch; ``None`` for ``"unknown"``.
        other_ops: named non-MAC work the formula knows (``bias_add`` of ``addmm``/``convolution``).
    """

    kind: str
    macs: int | None = 0
    other_ops: dict[str, int] = field(default_factory=dict)


def _arg(op: Op, position: int, default: Any = None) -> Any:
    """Positional argument ``position`` of ``op``, with tensors put back."""
    if position >= len(op.args):
        return default
    value = op.args[position]
    return op.inputs[value.index] if isinstance(value, TensorArg) else value


def _shape(op: Op, position: int) -> tuple[int, ...]:
    return tuple(_arg(op, position).shape)


def _mm(op: Op, a: int, b: int) -> OpCount:
    (n, k), m = _shape(op, a), _shape(op, b)[-1]
    return OpCount("contraction", matmul_macs(1, n, k, m))


def _addmm(op: Op) -> OpCount:
    (n, k), m = _shape(op, 1), _shape(op, 2)[-1]
    return OpCount("contraction", matmul_macs(1, n, k, m), {"bias_add": n * m})


def _bmm(op: Op, a: int, b: int, bias: bool) -> OpCount:
    (batch, n, k), m = _shape(op, a), _shape(op, b)[-1]
    return OpCount("contraction", matmul_macs(batch, n, k, m), {"bias_add": batch * n * m} if bias else {})


def _mv(op: Op, a: int) -> OpCount:
    n, k = _shape(op, a)
    return OpCount("contraction", matmul_macs(1, n, k, 1))


def _dot(op: Op) -> OpCount:
    return OpCount("contraction", matmul_macs(1, 1, _shape(op, 0)[0], 1))


def _convolution(op: Op) -> OpCount:
    """``convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)``."""
    x, w, bias = _arg(op, 0), _arg(op, 1), _arg(op, 2)
    stride, padding, dilation, transposed, output_padding, groups = (_arg(op, i) for i in range(3, 9))
    ndim, kernel = x.dim() - 2, tuple(w.shape[2:])
    if transposed:
        spec = ConvTransposeSpec(ndim, w.shape[1] * groups, kernel, x.shape[1], tuple(stride), tuple(padding),
                                 tuple(output_padding), tuple(dilation), groups, bias is not None)
    else:
        spec = ConvSpec(ndim, w.shape[0], kernel, x.shape[1], tuple(stride), tuple(padding), tuple(dilation), groups,
                        bias is not None)
    report = spec.analyse(tuple(x.shape[1:]))
    batch = x.shape[0]
    return OpCount("contraction", report.macs * batch, {k: v * batch for k, v in report.other_ops.items()})


def _local(op: Op, x: int, weight_size: tuple[int, ...], bias: Any) -> OpCount:
    """A ``layerlab_local`` op on input ``x`` with a location-major weight of ``weight_size``."""
    inp = _arg(op, x)
    ndim = inp.dim() - 2
    stride, padding, dilation, groups = (_arg(op, i) for i in range(3, 7))
    kernel, out_channels = tuple(weight_size[ndim + 2 : 2 * ndim + 2]), weight_size[ndim] * weight_size[-1]
    shape = "shared" if bias is not None and bias.dim() == 1 else "location" if bias is not None else None
    spec = LocalSpec(ndim, out_channels, kernel, inp.shape[1], tuple(stride), tuple(padding), tuple(dilation), groups, shape)
    report = spec.analyse(tuple(inp.shape[1:]))
    batch = inp.shape[0]
    return OpCount("contraction", report.macs * batch, {k: v * batch for k, v in report.other_ops.items()})


def _sdpa(op: Op, heads_first: bool = True) -> OpCount:
    """Attention kernels; ``(…, L, E)`` layout (``heads_first``) or ``(B, L, H, E)``."""
    q, k, v = _shape(op, 0), _shape(op, 1), _shape(op, 2)
    if heads_first:
        return OpCount("contraction", attention_macs(prod(q[:-2]), q[-2], k[-2], q[-1], v[-1]))
    return OpCount("contraction", attention_macs(q[0] * q[2], q[1], k[1], q[-1], v[-1]))


def _native_mha(op: Op) -> OpCount:
    """``_native_multi_head_attention(query, key, value, embed_dim, num_head, ...)``, ``(B, L, E)`` inputs."""
    q, k, v = _shape(op, 0), _shape(op, 1), _shape(op, 2)
    batch = prod(q[:-2])
    return OpCount("contraction", multi_head_attention_macs(batch, q[-2], k[-2], q[-1], k[-1], v[-1]))


def _encoder_layer(op: Op) -> OpCount:
    """``_transformer_encoder_layer_fwd(src, embed_dim, num_heads, ..., ffn_weight_1, ...)``: attention + feed-forward."""
    src, ffn = _shape(op, 0), _shape(op, 14)  # ffn_weight_1: (dim_feedforward, embed_dim)
    batch, tokens, embed = prod(src[:-2]), src[-2], src[-1]
    attention = multi_head_attention_macs(batch, tokens, tokens, embed, embed, embed)
    feed_forward = 2 * matmul_macs(1, batch * tokens, embed, ffn[0])
    return OpCount("contraction", attention + feed_forward)


def _mkldnn_rnn_layer(op: Op) -> OpCount:
    """``mkldnn_rnn_layer(input (T, B, I) or (B, T, I), weight0 (G·Hd, I), weight1 (G·Hd, Hd), ..., hidden_size, ...)``."""
    (steps, batch, _), w_ih = _shape(op, 0), _shape(op, 1)  # only T·B matters: batch_first is not read
    hidden = _arg(op, 10)
    mode = {gates: name for name, gates in RNN_GATES.items()}[w_ih[0] // hidden]
    return OpCount("contraction", rnn_macs(mode, steps, batch, w_ih[1], hidden))


# aten packet (op without overload) -> formula; every overload of a packet is the same contraction
CONTRACTIONS = {
    "aten.mm": lambda op: _mm(op, 0, 1),
    "aten._int_mm": lambda op: _mm(op, 0, 1),
    "aten.addmm": _addmm,
    "aten.addmm_": _addmm,
    "aten._addmm_activation": _addmm,
    "aten.bmm": lambda op: _bmm(op, 0, 1, bias=False),
    "aten.baddbmm": lambda op: _bmm(op, 1, 2, bias=True),
    "aten.baddbmm_": lambda op: _bmm(op, 1, 2, bias=True),
    "aten.addbmm": lambda op: _bmm(op, 1, 2, bias=False),
    "aten.mv": lambda op: _mv(op, 0),
    "aten.addmv": lambda op: _mv(op, 1),
    "aten.dot": _dot,
    "aten.vdot": _dot,
    "aten.convolution": _convolution,
    "aten._convolution": _convolution,
    "layerlab_local.forward": lambda op: _local(op, 0, _shape(op, 1), _arg(op, 2)),
    "layerlab_local.weight_grad": lambda op: _local(op, 1, tuple(_arg(op, 2)), None),
    "layerlab_local.input_grad": lambda op: _local(op, 2, _shape(op, 1), None),
    "aten._scaled_dot_product_flash_attention_for_cpu": _sdpa,
    "aten._scaled_dot_product_flash_attention": _sdpa,
    "aten._scaled_dot_product_efficient_attention": _sdpa,
    "aten._scaled_dot_product_cudnn_attention": _sdpa,
    "aten._scaled_dot_product_fused_attention_overrideable": _sdpa,
    "aten._flash_attention_forward": lambda op: _sdpa(op, heads_first=False),
    "aten._efficient_attention_forward": lambda op: _sdpa(op, heads_first=False),
    "aten._native_multi_head_attention": _native_mha,
    "aten._transformer_encoder_layer_fwd": _encoder_layer,
    "aten.mkldnn_rnn_layer": _mkldnn_rnn_layer,
}

# pooling and interpolation: no MACs; a functional call of one gets a row
RESAMPLE = ("aten.max_pool", "aten.avg_pool", "aten.adaptive_", "aten._adaptive_", "aten.upsample_", "aten._upsample_",
            "aten.fractional_max_pool", "aten.grid_sampler")

# no MACs, and neither pointwise nor a view nor a reduction by torch's tags
_FREE = frozenset({
    "aten._softmax", "aten._log_softmax", "aten._safe_softmax", "aten._masked_softmax", "aten.softmax", "aten.log_softmax",
    "aten.native_layer_norm", "aten.native_group_norm", "aten.native_batch_norm", "aten._native_batch_norm_legit",
    "aten._native_batch_norm_legit_no_training", "aten._native_batch_norm_legit_functional", "aten._fused_rms_norm",
    "aten.cat", "aten.stack", "aten.clone", "aten._to_copy", "aten._unsafe_view", "aten.unsafe_split",
    "aten.unsafe_split_with_sizes", "aten.unsafe_chunk", "aten.constant_pad_nd", "aten.reflection_pad1d",
    "aten.reflection_pad2d", "aten.reflection_pad3d", "aten.replication_pad1d", "aten.replication_pad2d",
    "aten.replication_pad3d", "aten._pad_circular", "aten.pixel_shuffle", "aten.pixel_unshuffle",
    "aten.channel_shuffle", "aten.native_channel_shuffle", "aten.im2col", "aten.col2im", "aten.embedding",
    "aten.index", "aten.index_select", "aten.gather", "aten.scatter", "aten.scatter_add", "aten.index_put",
    "aten.index_add", "aten.masked_scatter", "aten.masked_select", "aten.nonzero", "aten.repeat",
    "aten.repeat_interleave", "aten.roll", "aten.flip", "aten.tril", "aten.triu", "aten.sort", "aten.topk",
    "aten.cumsum", "aten.cumprod", "aten.native_dropout", "aten.empty_like", "aten.zeros_like", "aten.ones_like",
    "aten.full_like", "aten.rand_like", "aten.randn_like", "aten.new_empty", "aten.new_zeros", "aten.new_ones",
    "aten.new_full", "aten.new_empty_strided", "aten.empty_strided", "aten.lift_fresh_copy", "aten.scalar_tensor",
    "aten._local_scalar_dense", "aten.expand_copy", "aten.view_copy", "aten.slice_scatter", "aten.select_scatter",
    "aten.diagonal_scatter", "aten.one_hot", "aten.searchsorted", "aten.bucketize", "aten.unique_dim",
    "aten._unique2", "aten.argsort", "aten.max_unpool2d", "aten.max_unpool3d",
})


def _is_free(func: Any) -> bool:
    """No MACs by nature: see ``"free"`` in the module docstring."""
    tags = func.tags
    if torch.Tag.pointwise in tags or torch.Tag.reduction in tags or torch.Tag.nondeterministic_seeded in tags:
        return True
    schema = func._schema
    if any(ret.alias_info is not None for ret in schema.returns):
        return True  # views and in-place / out= ops
    if not any("Tensor" in str(arg.type) for arg in schema.arguments):
        return True  # factories: zeros, arange, empty
    return str(func.overloadpacket) in _FREE or str(func.overloadpacket).rstrip("_") in _FREE


def count_op(op: Op) -> OpCount:
    """The class and work of ``op`` (see the module docstring).

    Examples:
        >>> from torch import nn
        >>> from layerlab.analysis.trace import trace_model
        >>> trace = trace_model(nn.Sequential(nn.Linear(64, 192), nn.ReLU()), (16, 64))
        >>> [(op.packet, count_op(op).kind, count_op(op).macs) for op in trace.ops]
        [('aten.view', 'free', 0), ('aten.t', 'free', 0), ('aten.addmm', 'contraction', 196608), ('aten.view', 'free', 0), ('aten.relu', 'free', 0)]
    """
    packet = op.packet
    formula = CONTRACTIONS.get(packet)
    if formula is not None:
        return formula(op)
    if packet.startswith(RESAMPLE):
        return OpCount("resample")
    if _is_free(op.func):
        return OpCount("free")
    return OpCount("unknown", None)
