"""Receptive fields over the traced graph: through residual additions, concatenations, upsampling,
pooling and strided paths.

The field of every tensor of the traced forward pass (:class:`~layerlab.analysis.trace.Trace`: its
module calls and its aten ops) is computed in dispatch order, starting from the network input
(``r = 1, j = 1, start = 0`` per spatial dim):

* a **row** whose module layerlab describes (``spec_of(module)``: Conv, pooling, Upsample, layerlab
  layers ...) is one layer: its arith report's window moves the field
  (:func:`layerlab.arith.receptive.layer_field`; the ops inside it are not read);
* any other op is read from the trace: ``convolution``, max/avg/adaptive pooling, ``upsample_*``
  (nearest and (bi/tri)linear with integer factors: fractional jumps), padding, ``pixel_shuffle``
  and slices along a spatial dim map to the same arith specs and windows; where paths meet —
  ``cat`` along the channels, ``add``, ``mul`` and every other op whose output has its inputs'
  spatial size — the fields are merged (:func:`layerlab.arith.receptive.merge_fields`: the union of
  the paths' fields, ``aligned`` when they share a centre); matrix products, attention and
  reductions over a spatial dim make the field global; anything else that changes the spatial
  layout (a reshape to tokens, a ``cat`` along a spatial dim, an interpolation with
  ``align_corners=True``) leaves it untracked (``None``), as do the layers after it until a
  global one.

Parameters, buffers and tensors made from nothing (``zeros``, ``arange``) carry no field and do not
take part in a merge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from layerlab.analysis.schema import field_entry
from layerlab.analysis.trace import Call, Op, TensorArg, Trace
from layerlab.arith import (
    AdaptivePoolSpec,
    ConvSpec,
    ConvTransposeSpec,
    PoolSpec,
    UpsampleSpec,
)
from layerlab.arith.receptive import (
    FieldDim,
    ReceptiveField,
    global_dims,
    input_dims,
    layer_field,
    merge_fields,
    oversize_warnings,
    window_step,
)
from layerlab.arith.report import GLOBAL, LayerReport, Window
from layerlab.arith.reshape import PadSpec, PixelShuffleSpec
from layerlab.errors import LayerlabError

__all__ = ["GraphFields"]

# ops whose every output element reads every input position
_GLOBAL_OPS = frozenset({
    "aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm", "aten.matmul", "aten.linear", "aten.einsum",
    "aten._scaled_dot_product_attention_math", "aten._scaled_dot_product_flash_attention",
    "aten._scaled_dot_product_flash_attention_for_cpu", "aten._scaled_dot_product_efficient_attention",
    "aten.scaled_dot_product_attention", "aten._native_multi_head_attention", "aten.lstm", "aten.gru", "aten.rnn_tanh",
    "aten.rnn_relu",
})
# ops that reduce or mix along their `dim` argument: global when it is a spatial dim
_ALONG_DIM = frozenset({
    "aten.mean", "aten.sum", "aten.amax", "aten.amin", "aten.max", "aten.min", "aten.var", "aten.std",
    "aten.var_mean", "aten.std_mean", "aten.norm", "aten.linalg_vector_norm", "aten.logsumexp", "aten.prod",
    "aten._softmax", "aten._log_softmax", "aten.softmax", "aten.log_softmax", "aten.cumsum", "aten.cumprod",
    "aten.sort", "aten.argmax", "aten.argmin",
})
# ops that move positions along a dim (a spatial one: the field is not followed)
_MOVES = frozenset({"aten.flip", "aten.roll", "aten.transpose", "aten.permute", "aten.t"})
# ops that read positions given by data (gathers, grid sampling): the field is not followed
_UNTRACKED = frozenset({
    "aten.index", "aten.index_select", "aten.gather", "aten.take", "aten.scatter", "aten.scatter_add",
    "aten.index_put", "aten.grid_sampler_2d", "aten.grid_sampler_3d", "aten.masked_select", "aten.nonzero",
})
_UPSAMPLE = {
    "aten.upsample_nearest1d": "nearest", "aten.upsample_nearest2d": "nearest", "aten.upsample_nearest3d": "nearest",
    "aten._upsample_nearest_exact1d": "nearest-exact", "aten._upsample_nearest_exact2d": "nearest-exact",
    "aten._upsample_nearest_exact3d": "nearest-exact", "aten.upsample_linear1d": "linear",
    "aten.upsample_bilinear2d": "bilinear", "aten.upsample_trilinear3d": "trilinear",
    "aten.upsample_bicubic2d": "bicubic",
}
_PADS = {"aten.constant_pad_nd": "Constant", "aten.reflection_pad1d": "Reflection", "aten.reflection_pad2d": "Reflection",
         "aten.reflection_pad3d": "Reflection", "aten.replication_pad1d": "Replication",
         "aten.replication_pad2d": "Replication", "aten.replication_pad3d": "Replication"}


@dataclass(frozen=True)
class _Field:
    """The field of one tensor: per spatial dim of the network input; ``warned``: the field-larger-than-
    the-input warning was already given on a path to it."""

    dims: tuple[FieldDim, ...]
    is_global: bool
    warned: bool = False


def _arguments(op: Op) -> dict[str, Any]:
    """The op's arguments by schema name, defaults filled in, tensors resolved."""
    def resolve(value: Any) -> Any:
        if isinstance(value, TensorArg):
            return op.inputs[value.index]
        if isinstance(value, (list, tuple)):
            return type(value)(resolve(v) for v in value)
        return value

    values = {}
    for i, argument in enumerate(op.func._schema.arguments):
        if i < len(op.args):
            value = op.args[i]
        elif argument.name in op.kwargs:
            value = op.kwargs[argument.name]
        else:
            value = argument.default_value if argument.has_default_value() else None
        values[argument.name] = resolve(value)
    return values


def _dims(value: Any, rank: int) -> list[int]:
    """A ``dim`` argument (int, list or None = every dim) as non-negative dims."""
    if value is None:
        return list(range(rank))
    items = [value] if isinstance(value, int) else list(value)
    return [d % rank for d in items] if rank else []


class GraphFields:
    """Receptive fields of a traced forward pass, row by row (see the module docstring).

    Args:
        trace: the trace of :func:`~layerlab.analysis.trace.trace_model`.
        input_shape: the per-sample network input ``(C, *spatial)``.

    Call :meth:`row` for the rows in call order, then :meth:`of` for any other tensor (the output of
    a functional op).
    """

    def __init__(self, trace: Trace, input_shape: tuple[int, ...]) -> None:
        self.trace = trace
        self.spatial = tuple(input_shape[1:])
        self.rank = len(input_shape) + 1  # tensors of this rank have the input's spatial dims at 2:
        self.fields: dict[int, _Field | None] = {id(trace.input): _Field(input_dims(self.spatial), False)}
        self.units: set[int] = set()  # calls read as one layer: their ops are skipped
        self.next = 0  # the next op to read
        self.owners = [() if op.call is None else (*trace.calls[op.call].parents, op.call) for op in trace.ops]
        self.spans: dict[int, list[int]] = {}  # call -> [first op, last op] of its forward, nested calls included
        for op, owners in zip(trace.ops, self.owners):
            for call in owners:
                self.spans.setdefault(call, [op.index, op.index])[1] = op.index

    # --- rows -----------------------------------------------------------------------------------
    def row(self, call: Call, report: LayerReport | None) -> tuple[dict[str, Any] | None, list[str]]:
        """The field of a row (JSON-ready, or ``None`` when untracked) and the field warnings it
        gives: a described module (``report``) is one layer; an undescribed one is read op by op."""
        span = self.spans.get(call.index)
        if span is not None:
            self._read(span[0])
        x = call.inputs[0] if call.inputs else None
        out = call.outputs[0] if call.outputs else None
        if report is None:
            if span is not None:
                self._read(span[1] + 1)
            field_ = self.fields.get(id(out)) if out is not None else None
            return (None if field_ is None else self._entry(field_, ())[0]), []
        self.units.add(call.index)
        before = self.fields.get(id(x)) if x is not None else None
        if before is None and report.window == GLOBAL:
            before = _Field(input_dims(self.spatial), False)  # a global field does not depend on the layers before
        field_, notes = None, []
        if before is not None:
            dims, is_global, warnings = layer_field(before.dims, before.is_global, report, self.spatial)
            warnings += oversize_warnings(dims, is_global, self.spatial)
            field_ = _Field(dims, is_global, before.warned)
            entry, notes, warned = self._entry(field_, warnings)
            field_ = _Field(dims, is_global, warned)
        for i, tensor in enumerate(call.outputs):
            self.fields[id(tensor)] = field_ if i == 0 else None
        return (None if field_ is None else entry), notes

    def of(self, tensor: torch.Tensor | None) -> dict[str, Any] | None:
        """The field of ``tensor`` (JSON-ready; ``None``: untracked or not made from the input),
        once every op not read yet is read (call it after the rows)."""
        self._read(len(self.trace.ops))
        field_ = self.fields.get(id(tensor))
        return None if field_ is None else self._entry(field_, ())[0]

    def _entry(self, field_: _Field, warnings) -> tuple[dict[str, Any], list[str], bool]:
        return field_entry(ReceptiveField(0, "", field_.dims, field_.is_global, tuple(warnings)), field_.warned)

    # --- ops ------------------------------------------------------------------------------------
    def _read(self, end: int) -> None:
        """Read the ops before ``end`` not read yet, skipping those inside a row read as one layer."""
        while self.next < end:
            op = self.trace.ops[self.next]
            self.next += 1
            if not any(call in self.units for call in self.owners[op.index]):
                self._op(op)

    def _op(self, op: Op) -> None:
        known = [self.fields[id(t)] for t in op.inputs if id(t) in self.fields]
        if not known:
            return  # made from parameters and constants only
        field_ = self._field_of(op, known)
        for tensor in op.outputs:
            self.fields[id(tensor)] = field_

    def _global(self, known: list[_Field | None]) -> _Field:
        return _Field(global_dims(self.spatial), True, any(f.warned for f in known if f is not None))

    def _field_of(self, op: Op, known: list[_Field | None]) -> _Field | None:
        packet = op.packet
        if packet in _GLOBAL_OPS:
            return self._global(known)
        args = _arguments(op)
        out = op.outputs[0] if op.outputs else None
        first = op.inputs[0]
        if packet in _UNTRACKED:
            return None
        if packet in _ALONG_DIM and first.dim() == self.rank and ("dim" in args or len(op.inputs) == 1) and any(
                d >= 2 for d in _dims(args.get("dim"), first.dim())):
            return self._global(known)
        if packet in _MOVES and first.dim() == self.rank and self._moves_spatial(packet, args):
            return None
        windows = self._windows(packet, args, first, out)
        if windows is not None:
            source = self.fields.get(id(first))
            if windows == GLOBAL:
                return self._global(known)
            if source is None or windows is False:
                return None
            if source.is_global:
                return source
            return _Field(tuple(window_step(d, w) for d, w in zip(source.dims, windows)), False, source.warned)
        # element-wise and shape-keeping ops (cat along the channels among them): where paths meet, the
        # union of their fields; a global field stays global whatever the shapes
        if out is None:
            return None
        size = tuple(out.shape[2:])
        for tensor in op.inputs:
            if id(tensor) in self.fields and (tensor.dim() != self.rank or tuple(tensor.shape[2:]) != size):
                field_ = self.fields[id(tensor)]
                if field_ is None or not field_.is_global:
                    return None  # broadcast from another spatial size
        return self._merge(known)

    def _merge(self, fields: list[_Field | None]) -> _Field | None:
        if any(f is None for f in fields):
            return None
        if any(f.is_global for f in fields):
            return self._global(fields)
        dims = merge_fields([f.dims for f in fields])
        return None if dims is None else _Field(dims, False, any(f.warned for f in fields))

    def _moves_spatial(self, packet: str, args: dict[str, Any]) -> bool:
        if packet == "aten.permute":
            return list(args["dims"])[2:] != list(range(2, self.rank))
        if packet == "aten.transpose":
            return {args["dim0"] % self.rank, args["dim1"] % self.rank} != {0, 1} and args["dim0"] != args["dim1"]
        if packet == "aten.t":
            return True
        key = "dim" if "dim" in args else "dims"
        return any(d >= 2 for d in _dims(args.get(key), self.rank))

    def _windows(self, packet: str, args: dict[str, Any], x: torch.Tensor, out: torch.Tensor | None):
        """The op's windows per spatial dim (arith's, from the spec of the same layer); ``GLOBAL``;
        ``False`` (a spatial op whose field is not followed); ``None`` (not a windowed op)."""
        ndim = x.dim() - 2

        def ints(name: str) -> tuple[int, ...]:  # an int[N] argument: [] stays empty, one value is broadcast
            value = args[name]
            value = [value] if isinstance(value, int) else list(value)
            return tuple(value * ndim if len(value) == 1 else value)

        try:
            if packet == "aten.convolution":
                weight, groups = args["weight"], args["groups"]
                kernel = tuple(weight.shape[2:])
                if args["transposed"]:
                        spec = ConvTransposeSpec(ndim, weight.shape[1] * groups, kernel, x.shape[1], ints("stride"),
                                             ints("padding"), ints("output_padding"), ints("dilation"), groups)
                else:
                    spec = ConvSpec(ndim, weight.shape[0], kernel, x.shape[1], ints("stride"), ints("padding"),
                                    ints("dilation"), groups)
            elif packet.startswith(("aten.max_pool", "aten.avg_pool")):
                op = "max" if packet.startswith("aten.max_pool") else "avg"
                extra = {"dilation": ints("dilation")} if op == "max" else {
                    "count_include_pad": args["count_include_pad"]}
                spec = PoolSpec(ndim, op, ints("kernel_size"), ints("stride") or None, ints("padding"),
                                ceil_mode=args["ceil_mode"], **extra)
            elif packet.startswith(("aten._adaptive_avg_pool", "aten.adaptive_avg_pool", "aten.adaptive_max_pool")):
                op = "max" if "max" in packet else "avg"
                spec = AdaptivePoolSpec(ndim, op, ints("output_size"))
            elif packet in _UPSAMPLE:
                if args.get("align_corners"):
                    return False
                spec = UpsampleSpec(ndim, size=tuple(out.shape[2:]), mode=_UPSAMPLE[packet])
            elif packet in _PADS:
                pads = tuple(args["pad" if "pad" in args else "padding"])
                if len(pads) > 2 * ndim:  # pads the channels or the batch too: their fields are other
                    return False
                pads = pads + (0,) * (2 * ndim - len(pads))
                spec = PadSpec(ndim, pads, _PADS[packet])
            elif packet in ("aten.pixel_shuffle", "aten.pixel_unshuffle"):
                factor = args["upscale_factor" if packet == "aten.pixel_shuffle" else "downscale_factor"]
                spec = PixelShuffleSpec(factor, inverse=packet == "aten.pixel_unshuffle")
            elif packet == "aten.slice":
                return self._slice(args, x)
            else:
                return None
            if x.dim() != self.rank:
                return False
            window = spec.analyse(tuple(x.shape[1:])).window
        except LayerlabError:
            return False
        if window is None or window == GLOBAL:
            return window if window == GLOBAL else False
        return window if len(window) == len(self.spatial) else False

    def _slice(self, args: dict[str, Any], x: torch.Tensor):
        """``x[..., a:b:s, ...]`` along a spatial dim: a one-tap window of stride ``s`` starting at ``a``."""
        dim = args["dim"] % x.dim()
        if x.dim() != self.rank or dim < 2:
            return None  # the batch or the channels: a shape-keeping op for the field
        start = args["start"] or 0
        size = x.shape[dim]
        start = max(start + size, 0) if start < 0 else min(start, size)
        return tuple(Window(1, args["step"], -start) if d == dim - 2 else Window(1, 1, 0) for d in range(self.rank - 2))
