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

import re
from collections.abc import Sequence
from math import prod
from typing import Any

from layerlab.analysis.schema import LayerRow, Summary, check_batch_size, field_entry, memory, totals
from layerlab.arith import analyse_stack, dtype_bytes, parse_shape, receptive_field
from layerlab.arith.parse import parse_stack, torch_order_note
from layerlab.errors import ArgumentError, ShapeError

__all__ = ["stack_summary", "shape_document"]


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


def shape_document(input_shape: str, layers: Sequence[str], *, batch_size: int = 1, dtype: str = "float32") -> dict:
    """The JSON document ``layerlab shape INPUT LAYER... --json`` prints (``layerlab serve`` shows it too).

    The :func:`stack_summary` document plus the keys ``layerlab shape`` kept from before the shared
    schema: ``output_shape`` (per sample), each layer's ``index`` (1-based), ``text`` (the layer
    string as given) and ``layer`` (the spec's ``describe()``), and ``total.activation_memory``.

    Args:
        input_shape (str): per-sample input shape, e.g. ``"3x32x32"``.
        layers (sequence of str): layer strings, e.g. ``["Conv2d(8, 3)", "ReLU()"]``.
        batch_size (int): batch dimension of the rows (default: 1).
        dtype (str): element type for the memory (default: "float32").

    Raises:
        ArgumentError, ShapeError: the engine's explanation (``layer N: ...``); a layer written in
            torch's argument order gets the rewrite appended.

    Examples:
        >>> shape_document("1x8x8", ["Conv2d(8, 3)"])["output_shape"]
        [8, 6, 6]
    """
    specs = parse_stack(layers)
    try:
        result = stack_summary(specs, parse_shape(input_shape), batch_size=batch_size, dtype=dtype)
    except (ShapeError, ArgumentError) as err:
        # analyse_stack's messages start with "layer N:"; a layer written in torch's order gets the rewrite
        failed = re.match(r"layer (\d+):", str(err))
        note = torch_order_note(layers[int(failed.group(1)) - 1]) if failed else ""
        if note:
            raise type(err)(f"{err} {note}.") from None
        raise
    document = result.to_dict()
    # keys kept from before the shared schema: per-sample output shape, layer position, text and repr
    document["output_shape"] = list(result.output_shapes[0][1:])
    for index, (layer, text, spec) in enumerate(zip(document["layers"], layers, specs), start=1):
        layer.update(index=index, text=text, layer=spec.describe())
    memory_bytes = result.total.memory
    document["total"]["activation_memory"] = {
        "inference": memory_bytes["activations_inference"], "training": memory_bytes["activations_training"],
        "dtype": dtype, "batch_size": batch_size,
    }
    return document
