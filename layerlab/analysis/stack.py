"""``stack_summary(specs, input_shape)``: the summary document of a stack of layers.

The document of :func:`layerlab.analysis.summary` (same rows, totals and JSON schema, see
``docs/summary.md``) computed by :mod:`layerlab.arith` alone: no torch, no model; ``layerlab
shape`` prints it. The stack is
read as an ``nn.Sequential`` of the layers, so its rows are named ``"0"``, ``"1"``, ... as that
container names its children, and the summary of ``nn.Sequential(*layers)`` gives the same rows
and totals — except ``memory.params`` / ``memory.buffers``, counted here at ``dtype``'s size for
every element (torch keeps BatchNorm's ``num_batches_tracked`` as int64).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import Any

from layerlab.analysis.schema import LayerRow, Summary, check_batch_size, field_entry, memory, totals
from layerlab.arith import analyse_stack, dtype_bytes, parse_shape, receptive_field

__all__ = ["stack_summary"]


def stack_summary(specs: Sequence[Any], input_shape: tuple[int, ...] | str, *, batch_size: int = 1,
                  dtype: str = "float32") -> Summary:
    """Rows, totals and receptive fields of a stack of layers, from arith alone.

    Args:
        specs (sequence): the layers' arith specs, in order; :func:`layerlab.arith.parse_stack`
            makes them from layer strings such as ``"Conv2d(64, 3, padding=1)"``.
        input_shape (tuple of int or str): per-sample input shape, e.g. ``(3, 32, 32)`` or ``"3x32x32"``.
        batch_size (int): batch dimension of the rows' shapes; MACs, other ops and memory are for
            the whole batch (default: 1).
        dtype (str): element type of the input, activations, parameters and buffers (default: "float32").

    Returns:
        :class:`~layerlab.analysis.schema.Summary` (``model`` = ``"Sequential"``).

    Raises:
        ArgumentError: ``batch_size`` or ``dtype`` is malformed.
        ShapeError: the stack does not fit the input (arith's explanation, naming the layer).

    Shape:
        rows ``(batch_size, *per_sample)``.

    Examples:
        >>> from layerlab.arith import parse_stack
        >>> s = stack_summary(parse_stack(["Conv2d(8, 3)", "ReLU()", "Flatten()", "Linear(10)"]), "1x8x8")
        >>> s.layers[0].output_shape, s.total.params, s.total.macs
        ((1, 8, 6, 6), 2970, 5472)
    """
    shape = parse_shape(input_shape) if isinstance(input_shape, str) else tuple(input_shape)
    check_batch_size("stack_summary", batch_size)
    item = dtype_bytes(dtype)
    reports = analyse_stack(list(specs), shape)
    rows, warned = [], False
    for index, (report, result) in enumerate(zip(reports, receptive_field(reports, shape))):
        row = LayerRow(str(index), report.kind, 1, (batch_size, *report.input_shape), (batch_size, *report.output_shape),
                       params=report.params, trainable_params=report.params, buffers=report.buffers)
        row.add_report(report, batch_size)
        row.receptive_field, notes, warned = field_entry(result, warned)
        row.warnings.extend(note for note in notes if note not in row.warnings)
        rows.append(row)
    params, buffers = sum(r.params for r in reports), sum(r.buffers for r in reports)
    output = tuple(reports[-1].output_shape) if reports else shape
    return Summary(
        model="Sequential",
        input_shape=shape,
        batch_size=batch_size,
        dtype=str(dtype).removeprefix("torch."),
        layers=rows,
        total=totals(rows, memory(prod((batch_size, *shape)), rows, item, params * item, buffers * item)),
        unknown=[],
        warnings=[],
        output_shapes=[(batch_size, *output)],
    )
