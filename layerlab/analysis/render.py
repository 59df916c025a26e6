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

from layerlab.analysis.formats import COLUMNS, footer_lines, format_rf, fractional_rf_note, parse_columns, row_label, warning_lines

if TYPE_CHECKING:
    from collections.abc import Sequence

    from layerlab.analysis.summary import Summary

__all__ = ["render", "to_text", "format_rf", "fractional_rf_note"]

def render(summary: Summary, columns: str | Sequence[str] | None = None) -> Group:
    """The table (``columns``: see :func:`~layerlab.analysis.formats.parse_columns`), the warnings
    and the footer as one rich renderable."""
    chosen = [COLUMNS[key] for key in parse_columns(columns)]
    table = Table(title=f"{summary.model} on input ({summary.batch_size}, {', '.join(map(str, summary.input_shape))})", title_justify="left")
    table.add_column("Layer (type)", overflow="fold")
    for column in chosen:
        table.add_column(column.header, justify="right" if column.right else "left")
    for row in summary.layers:
        indent = "  " * max(row.depth - 1, 0)
        label = Text(f"{indent}{row_label(row)}")
        if row.unknown:
            label.append(" unknown", style="bold red")
        table.add_row(label, *(column.text(row) for column in chosen))
    parts: list[Any] = [table]
    rf_note = fractional_rf_note(row.receptive_field for row in summary.layers)
    if rf_note:
        parts.append(Text(rf_note))
    notes = warning_lines(summary)
    if notes:
        parts.append(Text("Warnings:", style="bold yellow"))
        parts.extend(Text(f"  - {note}", style="yellow") for note in notes)
    parts.extend(Text(line) for line in footer_lines(summary))
    if summary.incomplete_note:
        parts.append(Text(summary.incomplete_note, style="bold red"))
    return Group(*parts)


def to_text(summary: Summary, width: int = 120, columns: str | Sequence[str] | None = None) -> str:
    """The rendering as plain text (no colours), ``width`` columns wide."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(render(summary, columns), soft_wrap=True)
    return buffer.getvalue()
