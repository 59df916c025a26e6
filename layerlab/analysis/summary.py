"""``summary(model, input_shape)``: per-layer shapes, parameters, MACs and receptive fields of a model.

How it works:

1. The model runs once on ``torch.device("meta")`` tensors (:mod:`layerlab.analysis.trace`), so
   no memory is used whatever its size; forward hooks record every module call.
2. The **rows** are the calls of the modules layerlab can describe (:func:`spec_of`: layerlab
   layers and plain ``torch.nn`` layers; their children are not listed) and of the other leaf
   modules (listed as **unknown**, with a warning, and the totals flagged incomplete). Containers
   (``Sequential``, ``ModuleList``, custom modules) are walked; a container that owns parameters
   itself gets an unknown row for them. Modules never called in ``forward`` get a row with their
   parameters and a warning.
3. Each known row's MACs, other ops and formulas come from ``spec.analyse(per-sample input)``;
   shapes come from the trace; parameters and buffers are counted on the real module, each
   tensor once (shared/tied parameters are not double counted), so ``total.params`` equals
   ``sum(p.numel() for p in model.parameters())``.

Functional ops inside a custom ``forward`` (``torch.flatten``, ``F.relu``, ``x + y``) have no module:
their shapes flow to the next module but they get no row and their work is not counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from math import prod
from typing import Any

import torch
from torch import nn

from layerlab.analysis.modules import spec_of
from layerlab.arith.counts import MACS_CONVENTION, MEMORY_CONVENTION
from layerlab.analysis.trace import Call, trace_model
from layerlab.errors import ArgumentError, LayerlabError

__all__ = ["summary", "Summary", "LayerRow", "Totals", "SCHEMA"]

SCHEMA = "layerlab.summary/1"


@dataclass
class LayerRow:
    """One row of a summary: one call of one module (or a folded group, with ``depth``).

    Attributes:
        name: dotted module path (``features.0``); ``""`` is the model itself.
        type: class name of the module.
        depth: number of dots in ``name`` plus one (top-level children have depth 1).
        input_shape: shape of the first input tensor, batch included; ``None`` if not called.
        output_shape: shape of the first output tensor, batch included; ``None`` if not called.
        params: trainable and frozen parameters first counted in this row.
        trainable_params: those with ``requires_grad``.
        buffers: buffer elements first counted in this row.
        macs: weight-contraction MACs for the whole batch; ``None`` when unknown.
        other_ops: named element-wise work for the whole batch (``bias_add``, ``activation``, ...).
        receptive_field: ``{"size", "jump", "start", "projective"}`` (lists, one entry per spatial
            dim of the model input, in input pixels) and ``"global"`` (every output sees the whole
            input); ``None`` when not tracked (the input came from an untracked op).
        formulas: arith's filled-in output-size formulas.
        unknown: layerlab cannot account for this module's work.
        warnings: human-readable notes (unknown module, floor drops rows, never called, ...).
    """

    name: str
    type: str
    depth: int
    input_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...] | None
    params: int = 0
    trainable_params: int = 0
    buffers: int = 0
    macs: int | None = 0
    other_ops: dict[str, int] = field(default_factory=dict)
    receptive_field: Any = None
    formulas: tuple[str, ...] = ()
    unknown: bool = False
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); see ``docs/summary.md`` for the schema."""
        return {
            "name": self.name,
            "type": self.type,
            "depth": self.depth,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "output_shape": None if self.output_shape is None else list(self.output_shape),
            "params": self.params,
            "trainable_params": self.trainable_params,
            "buffers": self.buffers,
            "macs": self.macs,
            "flops": None if self.macs is None else 2 * self.macs,
            "other_ops": dict(self.other_ops),
            "receptive_field": self.receptive_field,
            "formulas": list(self.formulas),
            "unknown": self.unknown,
            "warnings": list(self.warnings),
        }


@dataclass
class Totals:
    """Whole-model totals (for the whole batch).

    Attributes:
        params, trainable_params, non_trainable_params: parameter elements, each tensor once.
        buffers: buffer elements (BatchNorm running statistics, ...).
        macs: sum of the known rows' MACs; a lower bound when the summary is incomplete.
        flops: ``2 · macs``.
        other_ops: sum of the rows' named element-wise ops.
        memory: bytes: ``input``; ``activations_training`` (every row's output, kept for
            backward); ``activations_inference`` (the largest input + output pair of one row);
            ``params``; ``buffers``; ``total`` = input + activations_training + params + buffers.
    """

    params: int
    trainable_params: int
    non_trainable_params: int
    buffers: int
    macs: int
    flops: int
    other_ops: dict[str, int]
    memory: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "buffers": self.buffers,
            "macs": self.macs,
            "flops": self.flops,
            "other_ops": dict(self.other_ops),
            "memory": dict(self.memory),
        }


@dataclass
class Summary:
    """What :func:`summary` returns. ``str(s)`` is the table; ``rich`` renders it directly.

    Attributes:
        model: class name of the model.
        input_shape: per-sample input shape.
        batch_size: leading dimension used for the trace.
        dtype: name of the input dtype (``"float32"``).
        layers: the rows, in call order.
        total: :class:`Totals`.
        unknown: names (``name (Type)``) of the modules layerlab could not account for.
        warnings: model-level notes (e.g. the output shape).
        output_shapes: shapes of the tensors the model returned.
    """

    model: str
    input_shape: tuple[int, ...]
    batch_size: int
    dtype: str
    layers: list[LayerRow]
    total: Totals
    unknown: list[str]
    warnings: list[str]
    output_shapes: list[tuple[int, ...]]

    @property
    def complete(self) -> bool:
        """True when every module was accounted for (no unknown rows)."""
        return not self.unknown

    @property
    def incomplete_note(self) -> str | None:
        """``"totals are incomplete: 1 unknown module (MyOp)"``, or ``None`` when complete."""
        if self.complete:
            return None
        types = sorted({entry.split(" (")[-1].rstrip(")") for entry in self.unknown})
        count = len(self.unknown)
        return f"totals are incomplete: {count} unknown module{'s' if count != 1 else ''} ({', '.join(types)})"

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (``schema`` = ``"layerlab.summary/1"``, see ``docs/summary.md``)."""
        return {
            "schema": SCHEMA,
            "model": self.model,
            "input_shape": list(self.input_shape),
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "layers": [row.to_dict() for row in self.layers],
            "total": self.total.to_dict(),
            "complete": self.complete,
            "unknown": list(self.unknown),
            "warnings": list(self.warnings),
            "output_shapes": [list(s) for s in self.output_shapes],
            "conventions": {"macs": MACS_CONVENTION, "memory": MEMORY_CONVENTION, "per": "whole batch"},
        }

    def to_json(self, indent: int | None = 2) -> str:
        """``json.dumps(self.to_dict())``."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def __rich__(self):
        from layerlab.analysis.render import render

        return render(self)

    def __str__(self) -> str:
        from layerlab.analysis.render import to_text

        return to_text(self)


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


class _Fields:
    """Receptive fields along the traced tensors.

    Each row's output remembers the chain of reports that produced it (``None``: untracked, e.g.
    after an unknown module). A row continues the chain of its input; an input made by a functional
    op (no module) continues the latest row's chain when it has that output's shape (``F.relu``,
    ``x + skip``), else it is untracked (``torch.cat``) — except for layers whose field is global.
    Field warnings (field larger than the input) are given once per chain, where they first appear.
    """

    def __init__(self, x: torch.Tensor, input_shape: tuple[int, ...]) -> None:
        self.input_shape = input_shape
        self.chains: dict[int, tuple | None] = {id(x): ()}  # id(tensor) -> the reports that produced it
        self.warned: dict[int, bool] = {id(x): False}
        self.keep = [x]  # holds the tensors so that their ids stay unique
        self.last: torch.Tensor | None = None

    def _chain_of(self, x: torch.Tensor | None) -> tuple[tuple | None, bool]:
        if x is None:
            return None, False
        if id(x) in self.chains:
            return self.chains[id(x)], self.warned[id(x)]
        if self.last is not None and self.last.shape == x.shape:
            return self.chains[id(self.last)], self.warned[id(self.last)]
        return None, False

    def step(self, x, report, out) -> tuple[dict[str, Any] | None, list[str]]:
        """The field of a row (JSON-ready, or ``None``) and its new warnings; records ``out``."""
        from layerlab.arith import GLOBAL
        from layerlab.arith.receptive import receptive_field

        before, warned = self._chain_of(x)
        if before is None and report is not None and report.window == GLOBAL:
            before = ()  # a global field does not depend on the layers before
        chain = None if before is None or report is None else (*before, report)
        field_, notes = None, []
        if chain is not None:
            result = receptive_field(list(chain), self.input_shape)[-1]
            field_ = {key: value for key, value in result.as_dict().items() if key != "warnings"}
            notes = [] if warned else list(result.warnings)
            warned = warned or bool(result.warnings)
        if out is not None:
            self.chains[id(out)], self.warned[id(out)] = chain, warned
            self.keep.append(out)
            self.last = out
        return field_, notes


def _rows(trace, input_shape: tuple[int, ...], batch_size: int) -> list[LayerRow]:
    """One row per accountable call; params counted once; unknown modules flagged."""
    counter = _Counter()
    rows: list[LayerRow] = []
    units: set[int] = set()  # indices of calls that are rows; their descendants are not
    fields = _Fields(trace.input, input_shape)
    for call in trace.calls:
        if any(parent in units for parent in call.parents):
            continue
        module = call.module
        spec = spec_of(module)
        children = any(True for _ in module.children())
        own = any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))
        label = call.name or type(module).__name__
        if spec is None and children:
            if own:  # a container with its own parameters: their work is unknown
                row = LayerRow(label, type(module).__name__, _depth(call.name), _first_shape(call.inputs), _first_shape(call.outputs), macs=None, unknown=True)
                counter.take(row, module, recurse=False)
                row.warnings.append(
                    f"{type(module).__name__} owns parameters used in its own forward; layerlab counts them "
                    "but not their work"
                )
                rows.append(row)
            continue
        units.add(call.index)
        row = LayerRow(label, type(module).__name__, _depth(call.name), _first_shape(call.inputs), _first_shape(call.outputs))
        first_call = not any(id(p) in counter.seen for p in module.parameters())
        counter.take(row, module, recurse=True)
        if not first_call and any(True for _ in module.parameters()):
            row.warnings.append("called again: its parameters are counted at its first call")
        x = call.inputs[0] if call.inputs else None
        out = call.outputs[0] if call.outputs else None
        report = None
        if spec is None:
            row.macs = None
            row.unknown = True
            row.warnings.append(
                f"unknown module {type(module).__name__}: layerlab has no arithmetic for it (no layer_spec()); "
                "its parameters are counted, its MACs are not"
            )
        elif x is None or x.dim() < 2:
            row.macs = None
            row.unknown = True
            row.warnings.append("called without a batched tensor input: not analysed")
        else:
            try:
                report = spec.analyse(tuple(x.shape[1:]))
            except LayerlabError as err:
                row.macs = None
                row.unknown = True
                row.warnings.append(f"arith cannot analyse it on input {tuple(x.shape)}: {err}")
            else:
                row.macs = report.macs * batch_size
                row.other_ops = {k: v * batch_size for k, v in report.other_ops.items()}
                row.formulas = report.formulas
                row.warnings.extend(report.warnings)
                traced = _first_shape(call.outputs)
                if traced is not None and tuple(report.output_shape) != traced[1:]:
                    row.warnings.append(
                        f"arith predicts output {report.output_shape} per sample, the module returned {traced[1:]}"
                    )
        row.receptive_field, notes = fields.step(x, report, out)
        row.warnings.extend(note for note in notes if note not in row.warnings)
        rows.append(row)
    # parameters of modules never called (or called through their weights only, like attention's out_proj)
    for name, module in trace.model.named_modules():
        row = LayerRow(name or type(module).__name__, type(module).__name__, _depth(name), None, None)
        counter.take(row, module, recurse=False)
        if row.params or row.buffers:
            row.warnings.append("never called in forward: its parameters are counted, no shapes or work")
            rows.append(row)
    return rows


def summary(
    model: nn.Module,
    input_shape: tuple[int, ...] | list[int] | str,
    *,
    batch_size: int = 1,
    dtype: torch.dtype = torch.float32,
    depth: int | None = None,
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
            (``depth=1``: one row per top-level child); ``None`` lists every layer (default: None).

    Returns:
        :class:`Summary` with ``layers``, ``total``, ``unknown``, ``complete``, ``to_dict()``,
        ``to_json()``, ``str()`` (table) and rich rendering.

    Raises:
        ArgumentError: bad ``input_shape``, ``batch_size``, ``dtype`` or ``depth``.
        ShapeError: the model does not accept the input; names the module that failed.

    Shape:
        input ``(batch_size, *input_shape)``.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 32 * 32, 10))
        >>> s = summary(net, (3, 32, 32))
        >>> s.total.params, s.layers[0].output_shape, s.complete
        (82154, (1, 8, 32, 32), True)
    """
    shape = _input_shape(input_shape)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError(f"summary: batch_size must be a positive integer. Received: batch_size={batch_size!r}")
    if not isinstance(dtype, torch.dtype):
        raise ArgumentError(f"summary: dtype must be a torch.dtype such as torch.float32. Received: dtype={dtype!r}")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ArgumentError(f"summary: depth must be a positive integer or None (all layers). Received: depth={depth!r}")
    if not isinstance(model, nn.Module):
        raise ArgumentError(f"summary: model must be a torch.nn.Module, got {type(model).__name__}")
    trace = trace_model(model, shape, batch_size=batch_size, dtype=dtype)
    rows = _rows(trace, shape, batch_size)
    warnings = []
    if trace.model is not model:
        warnings.append("lazy modules were traced on a meta copy: the model's own lazy modules stay uninitialised")
    total = _totals(trace, rows, dtype)
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
    )


def _input_shape(input_shape: Any) -> tuple[int, ...]:
    if isinstance(input_shape, str):
        from layerlab.arith import parse_shape

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
    model = trace.model
    params = list(model.parameters())
    buffers = list(model.buffers())
    macs = sum(row.macs or 0 for row in rows)
    other: dict[str, int] = {}
    for row in rows:
        for key, value in row.other_ops.items():
            other[key] = other.get(key, 0) + value
    item = torch.empty((), dtype=dtype, device="meta").element_size()
    called = [row for row in rows if row.output_shape is not None and row.input_shape is not None]
    memory = {
        "input": trace.input.numel() * item,
        "activations_training": sum(prod(row.output_shape) for row in called) * item,
        "activations_inference": max((prod(row.input_shape) + prod(row.output_shape) for row in called), default=0) * item,
        "params": _nbytes(params),
        "buffers": _nbytes(buffers),
    }
    memory["total"] = memory["input"] + memory["activations_training"] + memory["params"] + memory["buffers"]
    n_params = sum(row.params for row in rows)
    trainable = sum(row.trainable_params for row in rows)
    return Totals(
        params=n_params,
        trainable_params=trainable,
        non_trainable_params=n_params - trainable,
        buffers=sum(row.buffers for row in rows),
        macs=macs,
        flops=2 * macs,
        other_ops=other,
        memory=memory,
    )


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
        if head is None or id(head) not in heads or head.name != key:
            # a container that is never called itself (ModuleList) takes its children's shapes
            inp, out = shapes.get(key, (row.input_shape, None))
            head = LayerRow(key, types[key], depth, inp, out)
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
        head.warnings.extend(f"{row.name}: {w}" for w in row.warnings)
    return folded
