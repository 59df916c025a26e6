"""The output formats of a summary: columns, and the markdown and CSV renderers.

A :class:`~layerlab.analysis.schema.Summary` renders as

* ``table``: the rich table (:mod:`layerlab.analysis.render`, ``str(summary)``),
* ``json``: the full document (:meth:`~layerlab.analysis.schema.Summary.to_json`, every key, no
  column choice),
* ``markdown``: a GitHub table of the same rows and columns, the warnings and the footer,
* ``csv``: one line per row (header first) and a ``total`` line, plain numbers without thousands
  separators.

Every format shows the same numbers: the cells come from the one :data:`COLUMNS` table below.
Columns (``--columns``, ``columns=``) are named by :data:`COLUMNS` keys, or by an alias
(:data:`ALIASES`: ``shape`` = both shapes, and torchinfo's ``col_names``: ``input_size``,
``output_size``, ``num_params``, ``mult_adds``, ``trainable``). The layer name and type always
come first.

Imports neither torch nor rich, so that ``layerlab shape`` can use it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from layerlab.arith.counts import MACS_CONVENTION, MEASURED_CONVENTION, MEMORY_CONVENTION, format_bytes
from layerlab.errors import ArgumentError

if TYPE_CHECKING:
    from layerlab.analysis.schema import LayerRow, Summary

__all__ = ["FORMATS", "COLUMNS", "ALIASES", "DEFAULT_COLUMNS", "Column", "parse_columns", "format_rf",
           "format_shape", "format_count", "to_markdown", "to_csv", "footer_lines", "warning_lines",
           "fractional_rf_note", "row_label"]

FORMATS = ("table", "json", "markdown", "csv")


def format_rf(rf: Any, key: str = "size", sep: str = "×") -> str:
    """A receptive field entry per dim: ``5×5`` (``key`` = ``size``, ``jump`` or ``start``), ``global``
    or ``—`` (not tracked, or flat input)."""
    if rf is None:
        return "—"
    if rf["global"]:
        return "global"
    return sep.join(f"{value:g}" for value in rf[key]) or "—"


def format_shape(shape: tuple[int, ...] | None) -> str:
    """``(1, 6, 28, 28)``, or ``—`` for a module never called."""
    return "—" if shape is None else "(" + ", ".join(map(str, shape)) + ")"


def format_count(n: int | None) -> str:
    """``61,706``, or ``?`` when unknown."""
    return "?" if n is None else f"{n:,}"


FRACTIONAL_RF_NOTE = (
    "RF {example}: fractional because a transposed conv's field is measured in input pixels, and "
    "each of its output steps is 1/stride of an input step."
)


def fractional_rf_note(fields: Any) -> str | None:
    """The line printed under a table when a receptive field is fractional, else ``None``.

    Args:
        fields: the rows' receptive fields (``None`` or dicts with ``global`` and ``size``).
    """
    for rf in fields:
        if rf is not None and not rf["global"] and any(size != int(size) for size in rf["size"]):
            return FRACTIONAL_RF_NOTE.format(example=format_rf(rf))
    return None


def _aligned(rf: Any) -> str:
    if rf is None or rf["global"]:
        return "—"
    return "yes" if all(rf["aligned"]) else "no"


@dataclass(frozen=True)
class Column:
    """One column: its header, alignment, the text cell (table, markdown) and the CSV cell.

    Attributes:
        header: title in the table and markdown.
        right: right-aligned (numbers).
        text: the cell of a row for the table and markdown.
        plain: the cell of a row for CSV: numbers without separators, shapes as ``1x6x28x28``.
        total: the cell of the totals line (``None``: empty), from :class:`Totals` as a dict.
    """

    header: str
    right: bool
    text: Callable[[LayerRow], str]
    plain: Callable[[LayerRow], str]
    total: Callable[[dict], Any] | None = None


def _plain_shape(shape: tuple[int, ...] | None) -> str:
    return "" if shape is None else "x".join(map(str, shape))


def _plain(n: int | None) -> str:
    return "" if n is None else str(n)


def _macs(row: LayerRow) -> str:
    """``12,000``; ``≥12,000`` for a row whose work is partly unknown (a lower bound); ``?``."""
    return f"≥{row.macs:,}" if row.unknown and row.macs is not None else format_count(row.macs)


def _flops(row: LayerRow) -> int | None:
    return None if row.macs is None else 2 * row.macs


def _plain_rf(key: str) -> Callable[[LayerRow], str]:
    return lambda row: "" if row.receptive_field is None else format_rf(row.receptive_field, key, "x").replace("—", "")


COLUMNS: dict[str, Column] = {
    "input": Column("Input shape", False, lambda r: format_shape(r.input_shape), lambda r: _plain_shape(r.input_shape)),
    "output": Column("Output shape", False, lambda r: format_shape(r.output_shape), lambda r: _plain_shape(r.output_shape)),
    "params": Column("Params", True, lambda r: format_count(r.params), lambda r: _plain(r.params), lambda t: t["params"]),
    "trainable": Column("Trainable", True, lambda r: format_count(r.trainable_params), lambda r: _plain(r.trainable_params),
                        lambda t: t["trainable_params"]),
    "buffers": Column("Buffers", True, lambda r: format_count(r.buffers), lambda r: _plain(r.buffers), lambda t: t["buffers"]),
    "macs": Column("MACs", True, lambda r: _macs(r), lambda r: _plain(r.macs), lambda t: t["macs"]),
    "flops": Column("FLOPs", True, lambda r: ("≥" if r.unknown and r.macs is not None else "") + format_count(_flops(r)), lambda r: _plain(_flops(r)), lambda t: t["flops"]),
    "rf": Column("RF", True, lambda r: format_rf(r.receptive_field), _plain_rf("size")),
    "rf_jump": Column("RF jump", True, lambda r: format_rf(r.receptive_field, "jump"), _plain_rf("jump")),
    "rf_start": Column("RF centre", True, lambda r: format_rf(r.receptive_field, "start"), _plain_rf("start")),
    "rf_aligned": Column("RF aligned", True, lambda r: _aligned(r.receptive_field),
                         lambda r: _aligned(r.receptive_field).replace("—", "")),
}

# other names users type for the columns (torchinfo's col_names among them)
ALIASES: dict[str, tuple[str, ...]] = {
    "shape": ("input", "output"),
    "shapes": ("input", "output"),
    "input_size": ("input",),
    "input_shape": ("input",),
    "output_size": ("output",),
    "output_shape": ("output",),
    "num_params": ("params",),
    "trainable_params": ("trainable",),
    "mult_adds": ("macs",),
    "receptive_field": ("rf",),
}

DEFAULT_COLUMNS = ("input", "output", "params", "macs", "rf")


def parse_columns(columns: str | Sequence[str] | None) -> tuple[str, ...]:
    """The column keys of ``"shape,params,macs"`` (or a list of names); ``None``: :data:`DEFAULT_COLUMNS`.

    Aliases expand (``shape`` -> ``input, output``); a column named twice is shown once.

    Raises:
        ArgumentError: an unknown or empty name.

    Examples:
        >>> parse_columns("shape,params,mult_adds")
        ('input', 'output', 'params', 'macs')
    """
    if columns is None:
        return DEFAULT_COLUMNS
    names = [n.strip() for n in columns.split(",")] if isinstance(columns, str) else list(columns)
    keys: list[str] = []
    for name in names:
        expanded = ALIASES.get(name, (name,)) if isinstance(name, str) else (name,)
        for key in expanded:
            if key not in COLUMNS:
                raise ArgumentError(
                    f"summary columns: unknown column {key!r}; choose from {', '.join(COLUMNS)} (or "
                    f"{', '.join(ALIASES)}), comma-separated. Received: columns={columns!r}"
                )
            if key not in keys:
                keys.append(key)
    if not keys:
        raise ArgumentError(f"summary columns: name at least one column, e.g. 'shape,params,macs'. Received: columns={columns!r}")
    return tuple(keys)


def row_label(row: LayerRow) -> str:
    """``features.0 (Conv2d)``; a row of functional ops that sums several calls: ``0 (matmul ×3)``."""
    calls = f" ×{row.calls}" if row.op is not None and row.calls > 1 else ""
    return f"{row.name} ({row.type}{calls})"


def _label(row: LayerRow) -> str:
    return row_label(row) + (" unknown" if row.unknown else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(summary: Summary, columns: str | Sequence[str] | None = None) -> str:
    """A GitHub markdown table of the rows (``columns``), a total line, the warnings and the footer.

    Examples:
        >>> from layerlab.analysis import stack_summary
        >>> from layerlab.arith import parse_stack
        >>> print(to_markdown(stack_summary(parse_stack(["Linear(3)"]), "4"), "params,macs").splitlines()[2])
        | 0 (Linear) | 15 | 12 |
    """
    keys = parse_columns(columns)
    chosen = [COLUMNS[k] for k in keys]
    lines = ["| Layer (type) | " + " | ".join(c.header for c in chosen) + " |",
             "|---|" + "|".join("---:" if c.right else "---" for c in chosen) + "|"]
    for row in summary.layers:
        lines.append("| " + " | ".join(_cell(x) for x in [_label(row), *(c.text(row) for c in chosen)]) + " |")
    total = summary.total.to_dict()
    cells = ["**Total**", *(format_count(c.total(total)) if c.total else "" for c in chosen)]
    lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    rf_note = fractional_rf_note(row.receptive_field for row in summary.layers)
    if rf_note:
        lines += [rf_note, ""]
    notes = warning_lines(summary)
    if notes:
        lines.append("Warnings:")
        lines.append("")
        lines.extend(f"- {_cell(note)}" for note in notes)
        lines.append("")
    lines.extend(f"{line}  " for line in footer_lines(summary))
    if summary.incomplete_note:
        lines.append(f"**{summary.incomplete_note}**")
    return "\n".join(lines).rstrip() + "\n"


def to_csv(summary: Summary, columns: str | Sequence[str] | None = None) -> str:
    """CSV: ``name,type`` and the ``columns`` (keys as headers), one line per row, then a ``total`` line.

    Examples:
        >>> from layerlab.analysis import stack_summary
        >>> from layerlab.arith import parse_stack
        >>> print(to_csv(stack_summary(parse_stack(["Linear(3)"]), "4"), "shape,params"), end="")
        name,type,input,output,params
        0,Linear,1x4,1x3,15
        total,,,,15
    """
    keys = parse_columns(columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "type", *keys])
    for row in summary.layers:
        writer.writerow([row.name, row.type, *(COLUMNS[k].plain(row) for k in keys)])
    total = summary.total.to_dict()
    writer.writerow(["total", "", *(_plain(COLUMNS[k].total(total)) if COLUMNS[k].total else "" for k in keys)])
    return buffer.getvalue()


def warning_lines(summary: Summary) -> list[str]:
    """The rows' warnings (``name: warning``) and the model-level ones."""
    return [f"{row.name}: {w}" for row in summary.layers for w in row.warnings] + list(summary.warnings)


def footer_lines(summary: Summary) -> list[str]:
    """The Keras-like footer: params, buffers, MACs, FLOPs, memory (estimated, and measured when it
    was) and the conventions."""
    t = summary.total
    m = t.memory
    lower = " (lower bound: unknown work not counted)" if not summary.complete else ""
    lines = [
        f"Total params: {t.params:,} ({format_bytes(m['params'], 2)})",
        f"Trainable params: {t.trainable_params:,}  ·  Non-trainable params: {t.non_trainable_params:,}  ·  "
        f"Buffers: {t.buffers:,} ({format_bytes(m['buffers'], 2)})",
        f"MACs: {t.macs:,}  ·  FLOPs: {t.flops:,}  (batch of {summary.batch_size}){lower}",
        f"Memory: input {format_bytes(m['input'], 2)} · activations {format_bytes(m['activations_training'], 2)} training / "
        f"{format_bytes(m['activations_inference'], 2)} inference · params {format_bytes(m['params'], 2)} · "
        f"total {format_bytes(m['total'], 2)}",
    ]
    measured = summary.memory_measured
    if measured is not None:
        estimate, saved = m["activations_saved"], measured["saved_for_backward"]
        ratio = f" ({(estimate - saved) / saved:+.1%})" if saved else ""
        peak = "" if measured["peak"] is None else f" · allocator peak {format_bytes(measured['peak'], 2)}"
        lines.append(f"Memory measured (one forward+backward on {measured['device']}): saved for backward "
                     f"{format_bytes(saved, 2)}, estimated {format_bytes(estimate, 2)}{ratio}{peak}")
    lines += [MACS_CONVENTION, f"Memory: {MEMORY_CONVENTION}; total = training activations + params + buffers"]
    if measured is not None:
        lines.append(f"Measured: {MEASURED_CONVENTION}")
    return lines
