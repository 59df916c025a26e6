"""Rich table of a :class:`~layerlab.analysis.summary.Summary`, with a Keras-like footer.

::

    Layer (type)           Output shape       Params       MACs   RF
    conv1 (Conv2d)         (1, 6, 28, 28)        156    117,600   5×5
    ...
    Total params: 61,706 (241.04 KiB)
    Trainable params: 61,706  ·  Non-trainable params: 0  ·  Buffers: 0
    MACs: 416,520  ·  FLOPs: 833,040  (batch of 1)
    Memory: input 4.00 KiB · activations 29.51 KiB (kept for backward) · params 241.04 KiB · total 274.55 KiB
    MACs = multiply-accumulates of the weight contraction ...
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from layerlab.arith.counts import MACS_CONVENTION, MEMORY_CONVENTION, format_bytes

if TYPE_CHECKING:
    from layerlab.analysis.summary import Summary

__all__ = ["render", "to_text", "format_rf", "fractional_rf_note"]

FRACTIONAL_RF_NOTE = (
    "RF {example}: fractional because a transposed conv's field is measured in input pixels, and "
    "each of its output steps is 1/stride of an input step."
)


def format_rf(rf: Any) -> str:
    """Receptive field as ``5×5`` (sizes per dim), ``global`` or ``—`` (not tracked, or flat input)."""
    if rf is None:
        return "—"
    if rf["global"]:
        return "global"
    return "×".join(f"{size:g}" for size in rf["size"]) or "—"


def fractional_rf_note(fields: Any) -> str | None:
    """The line printed under a table when a receptive field is fractional, else ``None``.

    Args:
        fields: the rows' receptive fields (``None`` or dicts with ``global`` and ``size``).
    """
    for rf in fields:
        if rf is not None and not rf["global"] and any(size != int(size) for size in rf["size"]):
            return FRACTIONAL_RF_NOTE.format(example=format_rf(rf))
    return None


def _shape(shape: tuple[int, ...] | None) -> str:
    return "—" if shape is None else "(" + ", ".join(map(str, shape)) + ")"


def _count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def render(summary: Summary) -> Group:
    """The table, the warnings and the footer as one rich renderable."""
    table = Table(title=f"{summary.model} on input ({summary.batch_size}, {', '.join(map(str, summary.input_shape))})", title_justify="left")
    table.add_column("Layer (type)", overflow="fold")
    table.add_column("Input shape")
    table.add_column("Output shape")
    table.add_column("Params", justify="right")
    table.add_column("MACs", justify="right")
    table.add_column("RF", justify="right")
    for row in summary.layers:
        indent = "  " * max(row.depth - 1, 0)
        calls = f" ×{row.calls}" if row.op is not None and row.calls > 1 else ""
        label = Text(f"{indent}{row.name} ({row.type}{calls})")
        if row.unknown:
            label.append(" unknown", style="bold red")
        macs = f"≥{row.macs:,}" if row.unknown and row.macs is not None else _count(row.macs)  # a lower bound
        table.add_row(label, _shape(row.input_shape), _shape(row.output_shape), _count(row.params), macs, format_rf(row.receptive_field))
    parts: list[Any] = [table]
    rf_note = fractional_rf_note(row.receptive_field for row in summary.layers)
    if rf_note:
        parts.append(Text(rf_note))
    notes = [f"{row.name}: {w}" for row in summary.layers for w in row.warnings] + list(summary.warnings)
    if notes:
        parts.append(Text("Warnings:", style="bold yellow"))
        parts.extend(Text(f"  - {note}", style="yellow") for note in notes)
    parts.extend(Text(line) for line in footer_lines(summary))
    if summary.incomplete_note:
        parts.append(Text(summary.incomplete_note, style="bold red"))
    return Group(*parts)


def footer_lines(summary: Summary) -> list[str]:
    """The Keras-like footer: params, buffers, MACs, FLOPs, memory and the conventions."""
    t = summary.total
    m = t.memory
    lower = " (lower bound: unknown work not counted)" if not summary.complete else ""
    return [
        f"Total params: {t.params:,} ({format_bytes(m['params'], 2)})",
        f"Trainable params: {t.trainable_params:,}  ·  Non-trainable params: {t.non_trainable_params:,}  ·  "
        f"Buffers: {t.buffers:,} ({format_bytes(m['buffers'], 2)})",
        f"MACs: {t.macs:,}  ·  FLOPs: {t.flops:,}  (batch of {summary.batch_size}){lower}",
        f"Memory: input {format_bytes(m['input'], 2)} · activations {format_bytes(m['activations_training'], 2)} training / "
        f"{format_bytes(m['activations_inference'], 2)} inference · params {format_bytes(m['params'], 2)} · "
        f"total {format_bytes(m['total'], 2)}",
        MACS_CONVENTION,
        f"Memory: {MEMORY_CONVENTION}; total = training activations + params + buffers",
    ]


def to_text(summary: Summary, width: int = 120) -> str:
    """The rendering as plain text (no colours), ``width`` columns wide."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(render(summary), soft_wrap=True)
    return buffer.getvalue()
