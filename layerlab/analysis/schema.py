"""The summary document: :class:`Summary`, its rows (:class:`LayerRow`) and :class:`Totals`.

One schema (``"layerlab.summary/1"``, documented in ``docs/summary.md``) for every command that
describes a network layer by layer: :func:`layerlab.analysis.summary` (a torch model, traced) and
:func:`layerlab.analysis.stack.stack_summary` (a stack of layer strings, pure arithmetic). The
rows take their counts from an arith :class:`~layerlab.arith.LayerReport`
(:meth:`LayerRow.add_report`); :func:`totals` sums them and :func:`memory` gives the byte counts,
for both.

Imports no torch, so that ``layerlab shape`` answers without it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import prod
from typing import Any

from layerlab.analysis.formats import FORMATS, parse_columns, to_csv, to_markdown
from layerlab.arith.counts import MACS_CONVENTION, MEASURED_CONVENTION, MEMORY_CONVENTION, activation_elements, saved_bytes
from layerlab.arith.receptive import ReceptiveField
from layerlab.arith.report import LayerReport
from layerlab.errors import ArgumentError

__all__ = ["SCHEMA", "LayerRow", "Totals", "Summary", "totals", "memory", "field_entry", "check_batch_size"]

SCHEMA = "layerlab.summary/1"


@dataclass
class LayerRow:
    """One row of a summary: one call of one module (or a folded group, with ``depth``).

    Attributes:
        name: dotted module path (``features.0``); ``""`` is the model itself; for
            :func:`~layerlab.analysis.stack.stack_summary` the layer's position (``"0"``, ``"1"``, ...).
        type: class name of the module (arith's layer name for a stack).
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
        unknown: layerlab cannot account for this module's work (or all of it: ``unknown_ops``).
        warnings: human-readable notes (unknown module, floor drops rows, never called, ...).
        op: for a row of functional ops (``torch.matmul``, ``F.interpolate`` ... in a module's own
            ``forward``): the torch function's name, ``"matmul"``; ``None`` for a module's row.
        calls: how many calls of ``op`` the row sums (1 for a module's row).
        unknown_ops: aten ops without a MAC formula that ran in this row -> their call count
            (``{"aten._fft_r2c.default": 2}``); the row's MACs leave them out.
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
    op: str | None = None
    calls: int = 1
    unknown_ops: dict[str, int] = field(default_factory=dict)

    def add_report(self, report: LayerReport, batch_size: int) -> None:
        """Take MACs, other ops (both times ``batch_size``), formulas and warnings from arith's report."""
        self.macs = report.macs * batch_size
        self.other_ops = {key: value * batch_size for key, value in report.other_ops.items()}
        self.formulas = report.formulas
        self.warnings.extend(report.warnings)

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
            "op": self.op,
            "calls": self.calls,
            "unknown_ops": dict(self.unknown_ops),
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
        memory: bytes: ``input``; ``activations_training`` (the input and every row's output,
            kept for backward); ``activations_inference`` (the largest input + output pair of one
            row); ``params``; ``buffers``; ``total`` = activations_training + params + buffers
            (formulas: :func:`layerlab.arith.counts.activation_elements`); ``activations_saved``
            (what the layers' backward passes keep, :func:`layerlab.arith.counts.saved_bytes`).
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
        model: class name of the model (``"Sequential"`` for a stack).
        input_shape: per-sample input shape.
        batch_size: leading dimension used for the trace.
        dtype: name of the input dtype (``"float32"``).
        layers: the rows, in call order.
        total: :class:`Totals`.
        unknown: names (``name (Type)``) of the modules layerlab could not account for.
        warnings: model-level notes (e.g. the output shape).
        output_shapes: shapes of the tensors the model returned.
        memory_measured: ``None`` (estimate only), or what one real forward+backward measured
            (:func:`layerlab.analysis.memory.measure_memory`): ``device``, ``saved_for_backward``
            and ``peak`` in bytes (``peak`` is ``None`` without an allocator that reports one).
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
    memory_measured: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        """True when every module was accounted for (no unknown rows)."""
        return not self.unknown

    @property
    def unknown_ops(self) -> dict[str, int]:
        """Aten ops without a MAC formula, over all rows -> their call count."""
        found: dict[str, int] = {}
        for row in self.layers:
            for name, count in row.unknown_ops.items():
                found[name] = found.get(name, 0) + count
        return found

    @property
    def incomplete_note(self) -> str | None:
        """Why the totals are a lower bound, or ``None`` when complete: ``"totals are incomplete:
        no MAC formula for aten._fft_r2c.default ×1 (in 1 (Spectral))"``; ``"totals are incomplete:
        1 unknown module (MyOp)"`` for unknown rows without traced ops."""
        if self.complete:
            return None
        if self.unknown_ops:
            listed = ", ".join(f"{name} ×{count}" for name, count in self.unknown_ops.items())
            return f"totals are incomplete: no MAC formula for {listed} (in {', '.join(self.unknown)})"
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
            "unknown_ops": self.unknown_ops,
            "warnings": list(self.warnings),
            "output_shapes": [list(s) for s in self.output_shapes],
            "conventions": {"macs": MACS_CONVENTION, "memory": MEMORY_CONVENTION, "per": "whole batch",
                            "memory_measured": MEASURED_CONVENTION},
            "memory_measured": None if self.memory_measured is None else dict(self.memory_measured),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """``json.dumps(self.to_dict())``."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_markdown(self, columns: str | Sequence[str] | None = None) -> str:
        """A GitHub markdown table of the rows, a total line, the warnings and the footer.

        ``columns``: names such as ``"shape,params,macs,rf"`` (:data:`layerlab.analysis.formats.COLUMNS`).
        """
        return to_markdown(self, columns)

    def to_csv(self, columns: str | Sequence[str] | None = None) -> str:
        """CSV: a header, one line per row, a ``total`` line; plain numbers (no thousands separators)."""
        return to_csv(self, columns)

    def to_text(self, columns: str | Sequence[str] | None = None, width: int = 120) -> str:
        """The table as plain text (what ``str(summary)`` prints, with the default columns)."""
        from layerlab.analysis.render import to_text  # rich is imported only when a summary is shown

        return to_text(self, width, columns)

    def render(self, format: str = "table", columns: str | Sequence[str] | None = None) -> str:
        """The summary in one of :data:`~layerlab.analysis.formats.FORMATS` (``"table"``, ``"json"``,
        ``"markdown"``, ``"csv"``) as text; ``columns`` chooses the columns of the three tables
        (JSON always carries every key).

        Raises:
            ArgumentError: an unknown format or column.
        """
        if format not in FORMATS:
            raise ArgumentError(f"summary: format must be one of {', '.join(FORMATS)}. Received: format={format!r}")
        if format == "json":
            parse_columns(columns)  # a misspelt column is an error in every format
            return self.to_json() + "\n"
        return {"table": self.to_text, "markdown": self.to_markdown, "csv": self.to_csv}[format](columns)

    def __rich__(self):
        from layerlab.analysis.render import render  # rich is imported only when a summary is shown

        return render(self)

    def __str__(self) -> str:
        return self.to_text()


def memory(input_elements: int, rows: list[LayerRow], item: int, params_bytes: int, buffers_bytes: int) -> dict[str, int]:
    """The ``memory`` totals in bytes (see :class:`Totals`).

    Args:
        input_elements: elements of the network input, batch included.
        rows: the rows; those with both shapes (called) count for the activations.
        item: bytes per activation element.
        params_bytes, buffers_bytes: bytes of the parameters and buffers.
    """
    called = [row for row in rows if row.output_shape is not None and row.input_shape is not None]
    counts = activation_elements(input_elements, ((prod(row.input_shape), prod(row.output_shape)) for row in called))
    result = {
        "input": input_elements * item,
        "activations_training": counts["training"] * item,
        "activations_inference": counts["inference"] * item,
        "params": params_bytes,
        "buffers": buffers_bytes,
    }
    result["total"] = result["activations_training"] + result["params"] + result["buffers"]
    result["activations_saved"] = saved_bytes(
        input_elements, ((row.type, prod(row.input_shape), prod(row.output_shape)) for row in called), item)
    return result


def totals(rows: list[LayerRow], memory_bytes: dict[str, int]) -> Totals:
    """The sums over ``rows`` (each parameter is counted in one row only), with ``memory_bytes``."""
    macs = sum(row.macs or 0 for row in rows)
    other: dict[str, int] = {}
    for row in rows:
        for key, value in row.other_ops.items():
            other[key] = other.get(key, 0) + value
    params = sum(row.params for row in rows)
    trainable = sum(row.trainable_params for row in rows)
    return Totals(
        params=params,
        trainable_params=trainable,
        non_trainable_params=params - trainable,
        buffers=sum(row.buffers for row in rows),
        macs=macs,
        flops=2 * macs,
        other_ops=other,
        memory=memory_bytes,
    )


def field_entry(result: ReceptiveField, warned: bool) -> tuple[dict[str, Any], list[str], bool]:
    """A row's ``receptive_field`` (JSON-ready, its warnings left out) and the field warnings to show.

    Field warnings (field larger than the input) are given once per chain, where they first appear:
    ``warned`` says whether the chain already gave them. Returns ``(field, notes, warned)``.
    """
    entry = {key: value for key, value in result.as_dict().items() if key != "warnings"}
    notes = [] if warned else list(result.warnings)
    return entry, notes, warned or bool(result.warnings)


def check_batch_size(who: str, batch_size: Any) -> int:
    """``batch_size`` if it is a positive int, else an :class:`ArgumentError` naming ``who``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError(f"{who}: batch_size must be a positive integer. Received: batch_size={batch_size!r}")
    return batch_size
