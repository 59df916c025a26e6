"""``summary(model, input_shape)``: per-layer shapes, parameters, MACs and receptive fields of a model.

How it works:

1. The model runs once on ``torch.device("meta")`` tensors (:mod:`layerlab.analysis.trace`), so
   no memory is used whatever its size; forward hooks record every module call and a dispatch
   mode every aten op, with the innermost module running it.
2. The **rows** are the calls of the modules layerlab can describe (:func:`spec_of`: layerlab
   layers and plain ``torch.nn`` layers; their children are not listed), of the other leaf
   modules and of modules none of whose children ran (``nn.MultiheadAttention``). Containers
   (``Sequential``, ``ModuleList``, custom modules) are walked; a container that owns parameters
   itself gets a row for them, and the functional ops of its own ``forward`` that multiply and
   accumulate, resample or have no formula get rows under it, one per torch function
   (``matmul``, ``einsum``, ``scaled_dot_product_attention``, ``interpolate``), with their call
   count. Modules never called in ``forward`` get a row with their parameters and a warning.
   Rows are in execution order.
3. A row with a spec takes MACs, other ops and formulas from ``spec.analyse(per-sample input)``;
   every other row sums the MACs of the ops that ran in it (:mod:`layerlab.analysis.ops`, each op
   counted once); an op without a formula flags the row unknown and the totals incomplete.
   Shapes come from the trace; parameters and buffers are counted on the real module, each tensor
   once (shared/tied parameters are not double counted), so ``total.params`` equals
   ``sum(p.numel() for p in model.parameters())``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from layerlab.analysis.fields import GraphFields
from layerlab.analysis.memory import measure_memory
from layerlab.analysis.modules import spec_of
from layerlab.analysis.ops import OpCount, count_op
from layerlab.analysis.schema import SCHEMA, LayerRow, Summary, Totals, check_batch_size, memory, totals
from layerlab.analysis.trace import Call, Op, Trace, trace_model
from layerlab.arith import parse_shape
from layerlab.errors import ArgumentError, LayerlabError
from layerlab.limits import check_size

__all__ = ["summary", "Summary", "LayerRow", "Totals", "SCHEMA"]

MEMORY_MODES = ("estimate", "measure")

# --- building the rows --------------------------------------------------------------------------


def _first_shape(tensors: list[torch.Tensor]) -> tuple[int, ...] | None:
    return tuple(tensors[0].shape) if tensors else None


class _Counter:
    """Counts each parameter/buffer tensor once, the first time a row owns it."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def take(self, row: LayerRow, module: nn.Module, recurse: bool) -> None:
        for p in module.parameters(recurse=recurse):
            if id(p) not in self.seen:
                self.seen.add(id(p))
                row.params += p.numel()
                row.trainable_params += p.numel() if p.requires_grad else 0
        for b in module.buffers(recurse=recurse):
            if id(b) not in self.seen:
                self.seen.add(id(b))
                row.buffers += b.numel()


def _depth(name: str) -> int:
    return name.count(".") + 1 if name else 0


class _OpWork:
    """The traced ops, each counted once (:func:`layerlab.analysis.ops.count_op`), by module call."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.own: dict[int | None, list[Op]] = {}
        for op in trace.ops:
            self.own.setdefault(op.call, []).append(op)
        self.counts: dict[int, OpCount] = {}

    def count(self, op: Op) -> OpCount:
        if op.index not in self.counts:
            self.counts[op.index] = count_op(op)
        return self.counts[op.index]

    def under(self, call: Call) -> list[Op]:
        """The ops of ``call``'s forward and of every call inside it."""
        inside = [c.index for c in self.trace.calls if c.index == call.index or call.index in c.parents]
        return [op for index in inside for op in self.own.get(index, [])]

    def add_to(self, row: LayerRow, ops: list[Op]) -> None:
        """Add the MACs, other ops and unknown ops of ``ops`` to ``row`` (an unknown op flags it)."""
        for op in ops:
            work = self.count(op)
            if work.kind == "unknown":
                row.unknown_ops[op.name] = row.unknown_ops.get(op.name, 0) + 1
                continue
            row.macs = (row.macs or 0) + work.macs
            for key, value in work.other_ops.items():
                row.other_ops[key] = row.other_ops.get(key, 0) + value
        if row.unknown_ops:
            row.unknown = True
            listed = ", ".join(f"{name} ×{count}" for name, count in row.unknown_ops.items())
            row.warnings.append(f"no MAC formula for {listed}: their work is not counted (MACs are a lower bound)")

    def op_rows(self, call: Call) -> list[tuple[int, LayerRow]]:
        """Rows for the functional ops of ``call``'s own forward: one per torch function that
        multiplies and accumulates, resamples or has no formula, with its call count; each with
        the index of its first op."""
        groups: dict[str, list[Op]] = {}
        for op in self.own.get(call.index, []):
            groups.setdefault(op.function or op.packet, []).append(op)
        rows = []
        label = call.name or type(call.module).__name__
        for function, ops in groups.items():
            if all(self.count(op).kind == "free" for op in ops):
                continue
            first = [op for op in ops if op.function_call == ops[0].function_call]
            inputs = [t for op in first for t in op.inputs]
            row = LayerRow(label, function, _depth(call.name) + 1, _first_shape(inputs), _first_shape(first[-1].outputs), macs=0,
                           op=function, calls=len({op.function_call for op in ops}) if ops[0].function_call is not None else len(ops))
            self.add_to(row, ops)
            rows.append((ops[0].index, row))
        return rows


def _last_output(trace: Trace, op: Op) -> torch.Tensor | None:
    """The first output of the last op dispatched by the torch-function call that ran ``op``."""
    same = [o for o in trace.ops[op.index:] if o.function_call == op.function_call] if op.function_call is not None else [op]
    return same[-1].outputs[0] if same[-1].outputs else None


def _readers(trace: Trace) -> dict[int, Call]:
    """id(parameter meta tensor) -> the module call whose own ops read it first."""
    readers: dict[int, Call] = {}
    for op in trace.ops:
        if op.call is not None:
            for tensor in op.inputs:
                readers.setdefault(id(tensor), trace.calls[op.call])
    return readers


def _rows(trace: Trace, input_shape: tuple[int, ...], batch_size: int) -> list[LayerRow]:
    """One row per accountable call and per functional op group, in execution order; params
    counted once; unknown work flagged."""
    counter = _Counter()
    timeline: list[tuple[tuple[int, int], LayerRow]] = []  # (first op, 0 for a call / 1 for ops), row
    units: set[int] = set()  # indices of calls that are rows; their descendants are not
    fields = GraphFields(trace, input_shape)
    functional: list[tuple[int, LayerRow]] = []  # the rows of functional ops, with their first op
    work = _OpWork(trace)
    ran_children = {call.parents[-1] for call in trace.calls if call.parents}
    for call in trace.calls:
        if any(parent in units for parent in call.parents):
            continue
        module = call.module
        spec = spec_of(module)
        label = call.name or type(module).__name__
        if spec is None and call.index in ran_children:  # a container: its children have rows
            own = any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))
            if own:  # its own parameters get a row; the work of its own forward is in the op rows
                row = LayerRow(label, type(module).__name__, _depth(call.name), _first_shape(call.inputs), _first_shape(call.outputs))
                counter.take(row, module, recurse=False)
                timeline.append(((call.first_op, 0), row))
            op_rows = work.op_rows(call)
            timeline.extend(((first, 1), row) for first, row in op_rows)
            functional.extend(op_rows)
            continue
        units.add(call.index)
        row = LayerRow(label, type(module).__name__, _depth(call.name), _first_shape(call.inputs), _first_shape(call.outputs))
        first_call = not any(id(p) in counter.seen for p in module.parameters())
        counter.take(row, module, recurse=True)
        if not first_call and any(True for _ in module.parameters()):
            row.warnings.append("called again: its parameters are counted at its first call")
        x = call.inputs[0] if call.inputs else None
        report = None
        if spec is None:  # a leaf (or a module whose children did not run) without a spec: its ops
            work.add_to(row, work.under(call))
        elif x is None or x.dim() < 2:
            row.warnings.append("called without a batched tensor input: MACs counted from the ops it ran")
            work.add_to(row, work.under(call))
        else:
            try:
                report = spec.analyse(tuple(x.shape[1:]))
            except LayerlabError as err:
                row.warnings.append(f"arith cannot analyse it on input {tuple(x.shape)}: {err}; MACs counted from the ops it ran")
                work.add_to(row, work.under(call))
            else:
                row.add_report(report, batch_size)
                traced = _first_shape(call.outputs)
                if traced is not None and tuple(report.output_shape) != traced[1:]:
                    row.warnings.append(
                        f"arith predicts output {report.output_shape} per sample, the module returned {traced[1:]}"
                    )
        row.receptive_field, notes = fields.row(call, report)
        row.warnings.extend(note for note in notes if note not in row.warnings)
        timeline.append(((call.first_op, 0), row))
    for first, row in functional:  # the field of a functional op row: that of its first call's output
        row.receptive_field = fields.of(_last_output(trace, trace.ops[first]))
    rows = [row for _, row in sorted(timeline, key=lambda item: item[0])]
    # parameters of modules never called (or whose weights another module's forward reads)
    readers = _readers(trace)
    for name, module in trace.model.named_modules():
        row = LayerRow(name or type(module).__name__, type(module).__name__, _depth(name), None, None)
        counter.take(row, module, recurse=False)
        if not (row.params or row.buffers):
            continue
        prefix = f"{name}." if name else ""
        reader = next((readers[id(t)] for key, t in trace.parameters.items()
                       if key.startswith(prefix) and "." not in key[len(prefix):] and id(t) in readers), None)
        if reader is None:
            row.warnings.append("never called in forward: its parameters are counted, no shapes or work")
        else:
            who = reader.name or type(reader.module).__name__
            row.warnings.append(f"not called as a module: its parameters are read by the forward of {who!r} "
                                f"({type(reader.module).__name__}), whose row counts their work")
        rows.append(row)
    return rows


def summary(
    model: nn.Module,
    input_shape: tuple[int, ...] | list[int] | str,
    *,
    batch_size: int = 1,
    dtype: torch.dtype = torch.float32,
    depth: int | None = None,
    memory: str = "estimate",
) -> Summary:
    """Per-layer shapes, parameters, MACs and receptive fields of ``model`` on one input shape.

    The model runs once on meta tensors (no memory, any size); see the module docstring.

    Args:
        model (nn.Module): plain ``torch.nn`` layers, layerlab layers, containers, custom modules.
        input_shape (tuple of int or str): per-sample input shape (no batch dimension), e.g.
            ``(3, 32, 32)`` or ``"3x32x32"``.
        batch_size (int): batch dimension of the traced input; MACs, other ops and memory are for
            the whole batch (default: 1).
        dtype (torch.dtype): dtype of the input, used for the input/activation memory
            (default: torch.float32).
        depth (int, optional): fold rows deeper than ``depth`` into their ancestor at that depth
            (``depth=1``: one row per top-level child; ``depth=0``: one row, the model); ``None``
            lists every layer (default: None).
        memory (str): ``"estimate"``: memory from the rows' shapes only; ``"measure"``: also run one
            real forward+backward (:func:`layerlab.analysis.memory.measure_memory`, the model needs
            real parameters) and add ``memory_measured`` (default: "estimate").

    Returns:
        :class:`Summary` with ``layers``, ``total``, ``unknown``, ``complete``, ``to_dict()``,
        ``to_json()``, ``str()`` (table) and rich rendering.

    Raises:
        ArgumentError: bad ``input_shape``, ``batch_size``, ``dtype``, ``depth`` or ``memory``.
        ShapeError: the model does not accept the input; names the module that failed.
        SizeLimitError: ``memory="measure"`` would need more than ``$LAYERLAB_MAX_BYTES`` of
            activations (estimated first; nothing is allocated).

    Shape:
        input ``(batch_size, *input_shape)``.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 32 * 32, 10))
        >>> s = summary(net, (3, 32, 32))
        >>> s.total.params, s.layers[0].output_shape, s.complete
        (82154, (1, 8, 32, 32), True)
    """
    shape = _input_shape(input_shape)
    check_batch_size("summary", batch_size)
    if not isinstance(dtype, torch.dtype):
        raise ArgumentError(f"summary: dtype must be a torch.dtype such as torch.float32. Received: dtype={dtype!r}")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise ArgumentError(f"summary: depth must be a non-negative integer (0: one row for the whole model) or None "
                            f"(all layers). Received: depth={depth!r}")
    if memory not in MEMORY_MODES:
        raise ArgumentError(f"summary: memory must be one of {', '.join(map(repr, MEMORY_MODES))}. Received: memory={memory!r}")
    if not isinstance(model, nn.Module):
        raise ArgumentError(f"summary: model must be a torch.nn.Module, got {type(model).__name__}")
    trace = trace_model(model, shape, batch_size=batch_size, dtype=dtype)
    rows = _rows(trace, shape, batch_size)
    warnings = []
    if trace.model is not model:
        warnings.append("lazy modules were traced on a meta copy: the model's own lazy modules stay uninitialised")
    total = _totals(trace, rows, dtype)
    measured = None
    if memory == "measure":
        item = torch.empty((), dtype=dtype, device="meta").element_size()
        check_size(f"summary(memory='measure') of {type(model).__name__} on input {(batch_size, *shape)}",
                   total.memory["activations_training"] // item, item,
                   hint="Measure at a smaller batch_size, or use memory='estimate'")
        # a lazy model is measured on a copy, so that the user's lazy modules stay uninitialised
        measured = measure_memory(copy.deepcopy(model) if trace.model is not model else model, shape,
                                  batch_size=batch_size, dtype=dtype)
    if depth is not None:
        types = {name: type(module).__name__ for name, module in trace.model.named_modules()}
        rows = _fold(rows, trace.calls, types, depth)
    unknown = [f"{row.name} ({row.type})" for row in rows if row.unknown]
    return Summary(
        model=type(model).__name__,
        input_shape=shape,
        batch_size=batch_size,
        dtype=str(dtype).removeprefix("torch."),
        layers=rows,
        total=total,
        unknown=unknown,
        warnings=warnings,
        output_shapes=[tuple(t.shape) for t in trace.output],
        memory_measured=measured,
    )


def _input_shape(input_shape: Any) -> tuple[int, ...]:
    if isinstance(input_shape, str):
        return parse_shape(input_shape)
    if (
        not isinstance(input_shape, (tuple, list, torch.Size))
        or not input_shape
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in input_shape)
    ):
        raise ArgumentError(
            "summary: input_shape must be a non-empty tuple of positive ints per sample (no batch dimension), "
            f"e.g. (3, 32, 32) or '3x32x32'. Received: input_shape={input_shape!r}"
        )
    return tuple(input_shape)


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _totals(trace, rows: list[LayerRow], dtype: torch.dtype) -> Totals:
    item = torch.empty((), dtype=dtype, device="meta").element_size()
    model = trace.model
    return totals(rows, memory(trace.input.numel(), rows, item, _nbytes(model.parameters()), _nbytes(model.buffers())))


def _fold(rows: list[LayerRow], calls: list[Call], types: dict[str, str], depth: int) -> list[LayerRow]:
    """Merge consecutive rows deeper than ``depth`` into one row per ancestor at ``depth``.

    ``types`` maps module paths to class names.
    """
    shapes = {}
    for call in calls:  # first call of each module path: the shapes of the folded row
        shapes.setdefault(call.name, (_first_shape(call.inputs), _first_shape(call.outputs)))
    folded: list[LayerRow] = []
    heads: set[int] = set()  # ids of the rows made here by folding
    for row in rows:
        if row.depth <= depth:
            folded.append(row)
            continue
        key = ".".join(row.name.split(".")[:depth])
        head = folded[-1] if folded else None
        if head is None or id(head) not in heads or head.name != (key or types[key]):
            # a container that is never called itself (ModuleList) takes its children's shapes
            inp, out = shapes.get(key, (row.input_shape, None))
            head = LayerRow(key or types[key], types[key], depth, inp, out)
            heads.add(id(head))
            folded.append(head)
        if key not in shapes:
            head.output_shape = row.output_shape
        head.params += row.params
        head.trainable_params += row.trainable_params
        head.buffers += row.buffers
        head.macs = None if head.macs is None or row.macs is None else head.macs + row.macs
        for k, v in row.other_ops.items():
            head.other_ops[k] = head.other_ops.get(k, 0) + v
        head.receptive_field = row.receptive_field
        head.unknown = head.unknown or row.unknown
        for k, v in row.unknown_ops.items():
            head.unknown_ops[k] = head.unknown_ops.get(k, 0) + v
        head.warnings.extend(f"{row.name}: {w}" for w in row.warnings)
    return folded
