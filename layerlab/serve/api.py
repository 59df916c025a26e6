"""The JSON API of ``layerlab serve``: query parameters in, a JSON-ready dict out.

Every number the page shows comes from here, and everything here comes from layerlab's one engine:
:func:`layerlab.analysis.stack.shape_document` (what ``layerlab shape --json`` prints), the arith
specs' reports, :mod:`layerlab.arith.cells` (which input cells feed which output cell) and
:func:`layerlab.arith.receptive_field`. Endpoints (``docs/serve.md`` has the keys and examples):

- ``/api/view?input=3x32x32&layer=Conv2d(8,3,stride=2)``: the stack document, and for one layer its
  formulas, the conv/tiled/local/dense family side by side, the code that builds it, the grids and
  a transposed convolution's coverage;
- ``/api/links?...&out=c,i,j`` or ``&in=c,i,j``: the cells (and weights) one cell is connected to;
- ``/api/matrix?...``: the dense-equivalent matrix, exact (weight ids) or aggregated (bins);
- ``/api/rf?...&out=i,j``: the receptive field of one output unit of the stack, on the input;
- ``/api/model``: the summary document of the ``--model`` (``layerlab summary --json``), or
  ``{"model": null, "reason": ...}`` without one.

A cell is written as its index into the per-sample shape, comma-separated, channel first: ``"c,i,j"``
for a ``(C, H, W)`` map, ``"c,i"`` for ``(C, L)``, ``"i"`` for flat features. Repeated ``layer``
parameters form a stack in order; parameters an endpoint does not use are ignored (the page may pass
its own URL's query). An impossible request answers HTTP 400 with ``{"schema", "error": {"message",
"layer", "parameter"}}``: ``message`` is the engine's own text (what ``layerlab shape`` prints
after ``error:``), ``layer`` the 1-based layer it names or ``None``.
"""

from __future__ import annotations

import re
from fractions import Fraction
from math import prod
from urllib.parse import parse_qs

import numpy as np

from layerlab.analysis.stack import shape_document
from layerlab.arith import (
    AdaptivePoolSpec,
    ConvSpec,
    ConvTransposeSpec,
    DenseSpec,
    LocalSpec,
    PoolSpec,
    LocalTransposeSpec,
    LowRankLocalSpec,
    TiledSpec,
    analyse_stack,
    parse_shape,
    receptive_field,
)
from layerlab.arith.cells import Connectivity, connectivity
from layerlab.arith.receptive import FieldDim, ReceptiveField
from layerlab.arith.parse import parse_stack
from layerlab.errors import ArgumentError, LayerlabError, SizeLimitError

__all__ = ["SCHEMA", "MAX_QUERY_BYTES", "MAX_LAYERS", "MAX_POSITIONS", "MAX_CELL_POSITIONS", "EXACT_ENTRIES",
           "MAX_BINS", "MAX_CONNECTIONS", "MAX_DIM_TAPS", "CHANNELS_SHOWN", "ENDPOINTS", "answer", "view", "links", "matrix", "rf",
           "model_rf", "error_document"]

SCHEMA = "layerlab.serve/1"
MAX_QUERY_BYTES = 4096  # a query string longer than this is refused before it is parsed
MAX_LAYERS = 64  # layers in one stack
MAX_POSITIONS = 16384  # spatial positions of one map (128×128) drawn; larger maps show no grid
MAX_CELL_POSITIONS = 4096  # positions of one map (64×64) drawn as one element per cell; larger: a canvas
CHANNELS_SHOWN = 4  # channels of a map the page draws
MAX_CELLS_SHOWN = 2048  # cells of one map the page draws in channels beyond the first: keeps a redraw fast
MAX_FEATURES_SHOWN = 1024  # cells of a flat (features) map the page draws
NO_MODEL = "no model: start the server with layerlab serve --model FILE.py:NAME --input SHAPE"
EXACT_ENTRIES = 65536  # matrices with at most this many entries are sent entry by entry
MAX_BINS = 128  # bins per side of an aggregated matrix
MAX_CONNECTIONS = 1 << 23  # structural non-zeros an aggregated matrix may count
MAX_DIM_TAPS = 1 << 20  # (output position, tap) pairs along one dim listed for links, matrix and coverage
DEFAULT_TILE = 2  # tile size of the tiled member of the family view


class _Refused(ArgumentError):
    """An API-level refusal naming the query parameter at fault."""

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


# ----------------------------------------------------------------------------- query helpers
def _one(params: dict[str, list[str]], name: str, default: str | None = None, *, example: str) -> str:
    values = params.get(name, [])
    if not values:
        if default is None:
            raise _Refused(f"the query has no {name}= parameter. Expected e.g. {name}={example}", name)
        return default
    if len(values) > 1:
        raise _Refused(f"the query has {len(values)} {name}= parameters, expected one, e.g. {name}={example}. "
                       f"Received: {', '.join(values)}", name)
    return values[0]


def _int_param(params, name: str, default: int | None, *, example: str) -> int | None:
    text = _one(params, name, None if default is None else str(default), example=example)
    if not re.fullmatch(r"\d{1,9}", text.strip()):
        raise _Refused(f"{name} must be a positive integer, e.g. {name}={example}. Received: {name}={text}", name)
    value = int(text)
    if value < 1:
        raise _Refused(f"{name} must be a positive integer, e.g. {name}={example}. Received: {name}={text}", name)
    return value


def _stack(params) -> tuple[str, list[str]]:
    """``(input text, layer strings)``, the number of layers checked."""
    text = _one(params, "input", example="3x32x32")
    layers = params.get("layer", [])
    if len(layers) > MAX_LAYERS:
        raise _Refused(f"the stack has {len(layers)} layers; at most {MAX_LAYERS} are shown. Fix: fewer layer= "
                       f"parameters", "layer")
    return text, layers


def _cell(text: str, shape: tuple[int, ...], name: str) -> tuple[int, ...]:
    """Parse ``"c,i,j"`` (one index per dim of ``shape``)."""
    parts = text.split(",")
    layout = {1: "i", 2: "c,i", 3: "c,i,j", 4: "c,d,i,j"}.get(len(shape), "c,i,j")
    if len(parts) != len(shape) or not all(re.fullmatch(r"\d{1,9}", p.strip()) for p in parts):
        raise _Refused(f"{name} must be a cell {layout} of the {'×'.join(map(str, shape))} map ({len(shape)} "
                       f"non-negative integers). Received: {name}={text}", name)
    cell = tuple(int(p) for p in parts)
    if any(v >= n for v, n in zip(cell, shape)):
        raise _Refused(f"{name}={text} is outside the {'×'.join(map(str, shape))} map; each index must be below its "
                       f"size ({layout})", name)
    return cell


def _pos(cell: tuple[int, ...]) -> str:
    return ",".join(map(str, cell))


def _selected(params, specs) -> int:
    """The 0-based layer a one-layer endpoint works on: ``index=N`` (1-based), or the only layer."""
    if not specs:
        raise _Refused("the query has no layer= parameter. Expected e.g. layer=Conv2d(8,3)", "layer")
    if "index" not in params and len(specs) > 1:
        raise _Refused(f"the stack has {len(specs)} layers; say which with index=N (1 to {len(specs)})", "index")
    index = _int_param(params, "index", 1, example="1")
    if index > len(specs):
        raise _Refused(f"index must be 1 to {len(specs)} (the stack's layers). Received: index={index}", "index")
    return index - 1


def _analysed(params):
    """``(input shape, layer strings, specs, reports)`` of the query's stack (the engine's errors)."""
    text, layers = _stack(params)
    shape_document(text, layers)  # the same checks and messages as `layerlab shape`
    specs = parse_stack(layers)
    shape = parse_shape(text)
    return shape, layers, specs, analyse_stack(specs, shape)


def _too_large(spec, report) -> str | None:
    """Why the cells of a layer are not drawn (a map over :data:`MAX_POSITIONS` positions, or a window
    over :data:`MAX_DIM_TAPS` (position, tap) pairs along one dim), or ``None``: the per-dim taps of
    :func:`~layerlab.arith.cells.connectivity` are listed position by position."""
    for shape in (report.input_shape, report.output_shape):
        positions = prod(shape[1:] or shape)
        if positions > MAX_POSITIONS:
            return (f"{spec.describe()}: the map {'×'.join(map(str, shape))} has {positions:,} positions; cells are "
                    f"drawn for at most {MAX_POSITIONS:,} (128×128). Fix: a smaller input")
    if isinstance(report.window, tuple):
        for out, window in zip(report.output_shape[1:], report.window):
            if out * window.kernel_size > MAX_DIM_TAPS:
                return (f"{spec.describe()}: {out:,} output positions × kernel {window.kernel_size:,} = "
                        f"{out * window.kernel_size:,} taps along one dim; cells are drawn for at most "
                        f"{MAX_DIM_TAPS:,}. Fix: a smaller kernel or input")
    return None


def _connectivity(spec, report) -> Connectivity:
    """:func:`~layerlab.arith.cells.connectivity` of a layer small enough to draw (:func:`_too_large`)."""
    reason = _too_large(spec, report)
    if reason is not None:
        raise SizeLimitError(reason)
    return connectivity(spec, report.input_shape)


# ----------------------------------------------------------------------------- /api/view
def view(params: dict[str, list[str]]) -> dict:
    """``/api/view``: the stack document of ``layerlab shape --json``, and the layer's details when
    the stack has exactly one layer (see ``docs/serve.md``)."""
    text, layers = _stack(params)
    document = shape_document(text, layers)
    shape = parse_shape(text)
    result = {"schema": SCHEMA, "input": list(shape), "layers": list(layers), "stack": document}
    if len(layers) == 1:
        tile = _int_param(params, "tile", DEFAULT_TILE, example="2")
        result["layer"] = _layer_view(parse_stack(layers)[0], shape, tile)
    return {**result, "error": None}


def _layer_view(spec, shape: tuple[int, ...], tile: int) -> dict:
    report = spec.analyse(shape)
    out = report.output_shape
    view_ = {
        "kind": report.kind,
        "layer": spec.describe(),
        "input_shape": list(report.input_shape),
        "output_shape": list(out),
        "output_shape_text": "×".join(map(str, out)),
        "formulas": list(report.formulas),
        "params": report.params,
        "macs": report.macs,
        "warnings": list(report.warnings),
        "family": _family(spec, report, tile),
        "code": _code(spec, report),
        "grid": {"input": _grid(report.input_shape), "output": _grid(out)},
    }
    if isinstance(spec, (ConvTransposeSpec, LocalTransposeSpec)):
        view_["coverage"] = _coverage(spec, report)
    return view_


def _entry(spec, shape) -> dict:
    report = spec.analyse(shape)
    return {"layer": spec.describe(), "params": report.params, "macs": report.macs, "reason": None}


def _absent(reason: str) -> dict:
    return {"layer": None, "params": None, "macs": None, "reason": reason}


def _family(spec, report, tile: int) -> dict:
    """Params and MACs of conv / tiled / local / dense for the same geometry (the layer's own bias)."""
    shape = report.input_shape
    has_bias = spec.bias not in (False, None) if hasattr(spec, "bias") else False
    n_in, n_out = prod(shape), prod(report.output_shape)
    dense = _entry(DenseSpec(n_out, n_in, bias=has_bias), (n_in,))
    if isinstance(spec, DenseSpec):
        dense = _entry(spec, shape)
    family = {"conv": None, "tiled": None, "local": None, "dense": dense}
    if isinstance(spec, (ConvSpec, LocalSpec, TiledSpec, LowRankLocalSpec)):
        window = dict(ndim=spec.ndim, out_channels=spec.out_channels, kernel_size=spec.kernel_size,
                      stride=spec.stride, padding=spec.padding, dilation=spec.dilation, groups=spec.groups)
        positional = spec.bias if isinstance(spec.bias, str) or spec.bias is None else ("location" if has_bias else None)
        tiles = spec.tile_size if isinstance(spec, TiledSpec) else tile
        family.update(conv=_entry(ConvSpec(**window, bias=has_bias), shape),
                      tiled=_entry(TiledSpec(**window, tile_size=tiles, bias=positional), shape),
                      local=_entry(LocalSpec(**window, bias=positional), shape))
    elif isinstance(spec, (ConvTransposeSpec, LocalTransposeSpec)):
        window = dict(ndim=spec.ndim, out_channels=spec.out_channels, kernel_size=spec.kernel_size,
                      stride=spec.stride, padding=spec.padding, output_padding=spec.output_padding,
                      dilation=spec.dilation, groups=spec.groups)
        positional = spec.bias if isinstance(spec, LocalTransposeSpec) else ("location" if has_bias else None)
        family.update(conv=_entry(ConvTransposeSpec(**window, bias=has_bias), shape),
                      tiled=_absent("layerlab has no tiled transposed convolution"),
                      local=_entry(LocalTransposeSpec(**window, bias=positional), shape))
    elif isinstance(spec, (PoolSpec, AdaptivePoolSpec)):
        reason = "pooling has no weights: no conv, tiled or locally connected counterpart"
        family.update(conv=_absent(reason), tiled=_absent(reason), local=_absent(reason))
    elif isinstance(spec, DenseSpec):
        reason = "a dense layer has no spatial window"
        family.update(conv=_absent(reason), tiled=_absent(reason), local=_absent(reason))
    else:
        reason = f"{report.kind} is not a member of the conv / tiled / local / dense family"
        family = {key: _absent(reason) for key in family}
    return family


def _value(values) -> str:
    """``(3, 3)`` -> ``3``; ``(3, 1)`` -> ``(3, 1)``; strings quoted."""
    if isinstance(values, str):
        return repr(values)
    if isinstance(values, tuple) and values and all(v == values[0] for v in values):
        return str(values[0])
    return str(values)


def _call(name: str, head: list[str], options: list[tuple[str, object, object]]) -> str:
    parts = head + [f"{key}={_value(value)}" for key, value, default in options if value != default]
    return f"{name}({', '.join(parts)})"


def _code(spec, report) -> dict | None:
    """Runnable code building the layer with ``torch.nn`` and with ``layerlab.nn``."""
    c_in = report.input_shape[0]
    ndim = getattr(spec, "ndim", None)
    ones, zeros = (1,) * (ndim or 0), (0,) * (ndim or 0)
    if isinstance(spec, (ConvSpec, LocalSpec, TiledSpec, ConvTransposeSpec, LocalTransposeSpec, LowRankLocalSpec)):
        head = [str(c_in), str(spec.out_channels), f"kernel_size={_value(spec.kernel_size)}"]
        if isinstance(spec, LowRankLocalSpec):
            head.append(f"rank={spec.rank}")
        options = [("stride", spec.stride, ones), ("padding", spec.padding, zeros)]
        if isinstance(spec, (ConvTransposeSpec, LocalTransposeSpec)):
            options.append(("output_padding", spec.output_padding, zeros))
        options += [("dilation", spec.dilation, ones), ("groups", spec.groups, 1)]
        if isinstance(spec, (ConvSpec, ConvTransposeSpec)):
            options.append(("bias", spec.bias, True))
            if isinstance(spec, ConvSpec):
                options.append(("padding_mode", spec.padding_mode, "zeros"))
            call = _call(spec.name, head, options)
            return {"torch": f"import torch\n\nlayer = torch.nn.{call}\n",
                    "layerlab": f"import layerlab\n\nlayer = layerlab.nn.{call}\n"}
        bias = {"location": True, "shared": "shared", None: False}[spec.bias]
        if isinstance(spec, TiledSpec):
            head.append(f"tile_size={_value(spec.tile_size)}")
        options.append(("bias", bias, True))
        if isinstance(spec, LowRankLocalSpec):
            options += [("combining", spec.combining, "factorized"), ("normalize", spec.normalize, "softmax")]
        if not isinstance(spec, TiledSpec):  # the weights of the others depend on the input size
            options.append(("input_size", report.input_shape[1:], None))
        what = {LocalSpec: "locally connected", TiledSpec: "tiled convolution",
                LocalTransposeSpec: "transposed locally connected",
                LowRankLocalSpec: "low-rank locally connected"}[type(spec)]
        return {"torch": f"# torch.nn has no {what} layer; layerlab.nn.{spec.name} is one:\n"
                         f"import layerlab\n\nlayer = layerlab.nn.{_call(spec.name, head, options)}\n",
                "layerlab": f"import layerlab\n\nlayer = layerlab.nn.{_call(spec.name, head, options)}\n"}
    if isinstance(spec, PoolSpec):
        options = [("stride", spec.stride, spec.kernel_size), ("padding", spec.padding, zeros),
                   ("dilation", spec.dilation, ones), ("ceil_mode", spec.ceil_mode, False)]
        if spec.op == "avg":
            options.append(("count_include_pad", spec.count_include_pad, True))
        call = _call(spec.name, [f"kernel_size={_value(spec.kernel_size)}"], options)
        return {"torch": f"import torch\n\nlayer = torch.nn.{call}\n",
                "layerlab": f"import layerlab\n\nlayer = layerlab.nn.{call}\n"}
    if isinstance(spec, DenseSpec):
        features = report.input_shape[-1]
        bias = [("bias", spec.bias, True)]
        return {"torch": f"import torch\n\nlayer = torch.nn.{_call('Linear', [str(features), str(spec.out_features)], bias)}\n",
                "layerlab": f"import layerlab\n\nlayer = layerlab.nn.{_call('Dense', [str(spec.out_features)], [('in_features', features, None)] + bias)}\n"}
    return None


def _grid(shape: tuple[int, ...]) -> dict:
    """What the page draws of a map: at most :data:`CHANNELS_SHOWN` channels of at most
    :data:`MAX_POSITIONS` positions (and no more channels than fit in :data:`MAX_CELLS_SHOWN`
    cells, but at least one), or the first :data:`MAX_FEATURES_SHOWN` flat features; ``canvas``:
    a map of more than :data:`MAX_CELL_POSITIONS` positions is painted on a canvas, not drawn as
    one element per cell."""
    if len(shape) == 1:
        shown = min(shape[0], MAX_FEATURES_SHOWN)
        return {"shape": list(shape), "positions": "i", "channels_shown": None, "cells_shown": shown,
                "drawn": True, "canvas": False}
    positions = prod(shape[1:])
    drawn = positions <= MAX_POSITIONS
    channels = min(shape[0], CHANNELS_SHOWN, max(1, MAX_CELLS_SHOWN // positions)) if drawn else 0
    layout = {2: "c,i", 3: "c,i,j", 4: "c,d,i,j"}[len(shape)]
    return {"shape": list(shape), "positions": layout, "channels_shown": channels, "cells_shown": channels * positions,
            "drawn": drawn, "canvas": drawn and positions > MAX_CELL_POSITIONS}


def _coverage(spec: ConvTransposeSpec | LocalTransposeSpec, report) -> dict:
    """How many input cells (per input channel of the group) feed each output position, and the
    output positions added by ``output_padding``."""
    out = report.output_shape[1:]
    padded = [list(range(o - p, o)) for o, p in zip(out, spec.output_padding)]
    reason = _too_large(spec, report)
    if reason is not None:
        return {"counts": None, "min": None, "max": None, "output_padding": padded, "reason": reason}
    net = connectivity(spec, report.input_shape)
    per_dim = [np.array([len(pairs) for pairs in dim], dtype=np.int64) for dim in net.taps]
    counts = per_dim[0]
    for dim in per_dim[1:]:
        counts = np.multiply.outer(counts, dim)
    return {"counts": counts.tolist(), "min": int(counts.min()), "max": int(counts.max()), "output_padding": padded,
            "reason": None}


# ----------------------------------------------------------------------------- /api/links
def links(params: dict[str, list[str]]) -> dict:
    """``/api/links``: with ``out=c,i,j`` the input cells that output cell reads (padding cells left
    out) and the weight of each tap; with ``in=c,i,j`` every output cell that input cell feeds."""
    shape, layers, specs, reports = _analysed(params)
    index = _selected(params, specs)
    net = _connectivity(specs[index], reports[index])
    has_out, has_in = "out" in params, "in" in params
    if has_out == has_in:
        raise _Refused("give exactly one of out=c,i,j (an output cell: which inputs feed it) and in=c,i,j (an input "
                       f"cell: which outputs it feeds). Received: {'both' if has_out else 'neither'}", "out")
    common = {"schema": SCHEMA, "index": index + 1, "layer": net.layer, "input_shape": list(net.input_shape),
              "output_shape": list(net.output_shape), "weights": net.weights, "weight_shape": list(net.weight_shape)}
    if has_out:
        cell = _cell(_one(params, "out", example="0,0,0"), net.output_shape, "out")
        found = net.inputs_of(cell)
        return {**common, "out": _pos(cell), "in": _unique(link.cell for link in found),
                "links": [_link(net, "in", link) for link in found]}
    cell = _cell(_one(params, "in", example="0,0,0"), net.input_shape, "in")
    found = net.outputs_of(cell)
    return {**common, "in": _pos(cell), "out": _unique(link.cell for link in found),
            "links": [_link(net, "out", link) for link in found]}


def _link(net: Connectivity, side: str, link) -> dict:
    """One entry of ``links``; a low-rank layer's also lists in ``basis`` the ``R`` basis taps its weight mixes."""
    entry = {side: _pos(link.cell), "tap": _list(link.tap), "weight": link.weight}
    if net.rank is not None:
        entry["basis"] = net.basis_taps(link.weight)
    return entry


def _unique(cells) -> list[str]:
    """Each cell once, in row-major order (several taps can read one cell under a folding padding mode)."""
    return [_pos(cell) for cell in sorted(set(cells))]


def _list(value):
    return None if value is None else list(value)


# ----------------------------------------------------------------------------- /api/matrix
def matrix(params: dict[str, list[str]]) -> dict:
    """``/api/matrix``: the dense-equivalent matrix ``[out_features, in_features]`` (C-major), exact
    (``ids``: the weight of every entry, ``-1`` a structural zero) when it has at most
    :data:`EXACT_ENTRIES` entries, else aggregated into at most :data:`MAX_BINS` × :data:`MAX_BINS`
    bins (the bins holding structural non-zeros: their ``counts`` and ``fraction`` of the bin's
    entries)."""
    shape, layers, specs, reports = _analysed(params)
    index = _selected(params, specs)
    net = _connectivity(specs[index], reports[index])
    rows, cols = prod(net.output_shape), prod(net.input_shape)
    total = _connections(net)
    if total > MAX_CONNECTIONS:
        raise SizeLimitError(
            f"the matrix of {net.layer} on {'×'.join(map(str, net.input_shape))} has {total:,} connections; "
            f"layerlab serve draws at most {MAX_CONNECTIONS:,}. Fix: a smaller input or fewer channels"
        )
    result = {"schema": SCHEMA, "index": index + 1, "layer": net.layer, "input_shape": list(net.input_shape),
              "output_shape": list(net.output_shape), "rows": rows, "cols": cols, "weights": net.weights,
              "weight_shape": list(net.weight_shape)}
    if rows * cols > EXACT_ENTRIES:
        counts, connections = _binned_counts(net, rows, cols)
        return {**result, "connections": connections, "zero": -1, "mode": "aggregated", "ids": None, "sums": [],
                "bins": _bins(counts, rows, cols)}
    out_channel, in_channel, out_position, in_position, tap = _entries(net)
    row = out_channel * net.out_positions + out_position
    col = in_channel * net.in_positions + in_position
    flat = row * cols + col
    # only a folding padding mode makes several taps read one cell (their weights add up in one entry)
    distinct = flat if net.padding_mode == "zeros" else np.unique(flat)
    weight = net.weight_id(out_channel, in_channel, out_position, in_position, tap) if net.weights else np.zeros_like(row)
    ids = np.full((rows, cols), -1, dtype=np.int64)
    ids[row, col] = weight
    summed = []
    if net.padding_mode != "zeros":
        values, counts = np.unique(flat, return_counts=True)
        for entry in values[counts > 1]:
            taps = sorted(int(w) for w in np.asarray(weight)[flat == entry])
            summed.append([int(entry // cols), int(entry % cols), taps])
    return {**result, "connections": int(distinct.size), "zero": -1, "mode": "exact", "ids": ids.tolist(), "sums": summed,
            "bins": None}


def _connections(net: Connectivity) -> int:
    """(output, input, tap) triples of the layer, from the per-dim taps (no allocation)."""
    pairs = prod(sum(len(p) for p in dim) for dim in net.taps)
    return net.out_channels * (net.in_channels // net.groups) * pairs


def _entries(net: Connectivity):
    """Every connection as arrays ``(out channel, in channel, out position, in position, flat tap)``."""
    out_pos = np.zeros(1, dtype=np.int64)
    in_pos = np.zeros(1, dtype=np.int64)
    tap = np.zeros(1, dtype=np.int64)
    for d, dim in enumerate(net.taps):
        o = np.array([o for o, pairs in enumerate(dim) for _ in pairs], dtype=np.int64)
        i = np.array([i for pairs in dim for i, _ in pairs], dtype=np.int64)
        t = np.array([t for pairs in dim for _, t in pairs], dtype=np.int64)
        out_pos = (out_pos[:, None] * net.out_spatial[d] + o[None, :]).ravel()
        in_pos = (in_pos[:, None] * net.in_spatial[d] + i[None, :]).ravel()
        tap = (tap[:, None] * net.kernel_size[d] + t[None, :]).ravel()
    groups = net.groups
    per_in, per_out = net.in_channels // groups, net.out_channels // groups
    g = np.arange(groups).reshape(groups, 1, 1, 1)
    o = np.arange(per_out).reshape(1, per_out, 1, 1)
    c = np.arange(per_in).reshape(1, 1, per_in, 1)
    full = (groups, per_out, per_in, out_pos.size)
    out_channel = np.broadcast_to(g * per_out + o, full).ravel()
    in_channel = np.broadcast_to(g * per_in + c, full).ravel()
    return (out_channel, in_channel, np.broadcast_to(out_pos, full).ravel(), np.broadcast_to(in_pos, full).ravel(),
            np.broadcast_to(tap, full).ravel())


def _spatial_pairs(net: Connectivity):
    """The distinct ``(output position, input position)`` pairs of the layer as two arrays: the per-dim
    pairs of :attr:`Connectivity.taps` (taps folded onto one cell counted once), combined row-major."""
    out_pos = np.zeros(1, dtype=np.int64)
    in_pos = np.zeros(1, dtype=np.int64)
    for d, dim in enumerate(net.taps):
        pairs = np.unique(np.array([(o, i) for o, found in enumerate(dim) for i, _ in found], dtype=np.int64)
                          .reshape(-1, 2), axis=0)
        out_pos = (out_pos[:, None] * net.out_spatial[d] + pairs[None, :, 0]).ravel()
        in_pos = (in_pos[:, None] * net.in_spatial[d] + pairs[None, :, 1]).ravel()
    return out_pos, in_pos


def _pieces(size: int, bin_size: int, positions: int):
    """One side of the matrix (``size = channels · positions`` indices) cut at every bin edge and every
    channel edge: per piece its ``(channel, bin, first position, end position)`` arrays."""
    starts = np.union1d(np.arange(0, size, bin_size), np.arange(0, size, positions))
    ends = np.append(starts[1:], size)
    channel = starts // positions
    return channel, starts // bin_size, starts - channel * positions, ends - channel * positions


def _binned_counts(net: Connectivity, rows: int, cols: int):
    """``(counts, connections)``: the structural non-zeros of the dense-equivalent matrix per bin of
    :func:`_bin_edges`, and in all, without listing the connections.

    An entry ``(oc·P_out + p, ic·P_in + q)`` is a non-zero iff ``oc`` and ``ic`` share a group and
    ``(p, q)`` is a spatial pair (:func:`_spatial_pairs`). Each side is cut into pieces lying in one
    channel and one bin (:func:`_pieces`); a 2-D histogram of the spatial pairs over the position
    segments those pieces bound, summed as prefix sums, gives the pairs of every (row piece, column
    piece); each piece pair of one group adds them to its bin. Cost: the spatial pairs plus the
    piece pairs, not the ``channel pairs × spatial pairs`` connections."""
    (row_size, n_rows), (col_size, n_cols) = _bin_edges(rows), _bin_edges(cols)
    out_pos, in_pos = _spatial_pairs(net)
    per_in, per_out = net.in_channels // net.groups, net.out_channels // net.groups
    r_channel, r_bin, r_lo, r_hi = _pieces(rows, row_size, net.out_positions)
    c_channel, c_bin, c_lo, c_hi = _pieces(cols, col_size, net.in_positions)
    p_edges, q_edges = np.union1d(r_lo, r_hi), np.union1d(c_lo, c_hi)
    segment_p = np.searchsorted(p_edges, out_pos, side="right") - 1
    segment_q = np.searchsorted(q_edges, in_pos, side="right") - 1
    histogram = np.bincount(segment_p * q_edges.size + segment_q,
                            minlength=p_edges.size * q_edges.size).reshape(p_edges.size, q_edges.size)
    cumulative = np.zeros((p_edges.size + 1, q_edges.size + 1), dtype=np.int64)
    cumulative[1:, 1:] = histogram.cumsum(0).cumsum(1)
    # every (row piece, column piece) of one group: the column pieces are sorted by channel, hence by group
    r_group, c_group = r_channel // per_out, c_channel // per_in
    first = np.searchsorted(c_group, r_group, side="left")
    n = np.searchsorted(c_group, r_group, side="right") - first
    a = np.repeat(np.arange(r_group.size), n)
    b = np.arange(a.size) - np.repeat(np.cumsum(n) - n, n) + np.repeat(first, n)
    p0, p1 = np.searchsorted(p_edges, r_lo[a]), np.searchsorted(p_edges, r_hi[a])
    q0, q1 = np.searchsorted(q_edges, c_lo[b]), np.searchsorted(q_edges, c_hi[b])
    pairs = cumulative[p1, q1] - cumulative[p0, q1] - cumulative[p1, q0] + cumulative[p0, q0]
    counts = np.zeros(n_rows * n_cols, dtype=np.int64)
    np.add.at(counts, r_bin[a] * n_cols + c_bin[b], pairs)
    connections = net.groups * per_out * per_in * out_pos.size
    return counts.reshape(n_rows, n_cols), connections


def _bin_edges(size: int) -> tuple[int, int]:
    """``(bin size, bins)`` of one side of ``size`` indices: ``bin = index // bin size`` with
    ``bin size = ceil(size / MAX_BINS)``."""
    bin_size = -(-size // MAX_BINS)
    return bin_size, -(-size // bin_size)


def _bins(counts, rows: int, cols: int) -> dict:
    """The ``bins`` document of the structural non-zeros ``counts`` per bin (:func:`_bin_edges`):
    the bins that hold any, listed row-major (``rows``, ``cols``: bin indices; their ``counts`` and
    ``fraction`` = counts / bin area); every other bin is empty. A band matrix fills few bins."""
    (row_size, n_rows), (col_size, n_cols) = _bin_edges(rows), _bin_edges(cols)
    row_edges = np.minimum(np.arange(n_rows + 1) * row_size, rows)
    col_edges = np.minimum(np.arange(n_cols + 1) * col_size, cols)
    fraction = counts / np.outer(np.diff(row_edges), np.diff(col_edges))
    filled = np.nonzero(counts)
    return {"row_edges": row_edges.tolist(), "col_edges": col_edges.tolist(), "rows": filled[0].tolist(),
            "cols": filled[1].tolist(), "counts": counts[filled].tolist(),
            "fraction": np.round(fraction[filled], 6).tolist(), "max_fraction": float(round(fraction.max(), 6)),
            "max_count": int(counts.max())}


# ----------------------------------------------------------------------------- /api/rf
def rf(params: dict[str, list[str]]) -> dict:
    """``/api/rf``: the receptive field of output unit ``out=i,j`` (spatial) of layer ``index``
    (default: the last), drawn on the input as one ``[first, last]`` range of input cells per dim."""
    shape, layers, specs, reports = _analysed(params)
    if not specs:
        raise _Refused("the query has no layer= parameter. Expected e.g. layer=Conv2d(8,3)", "layer")
    index = _int_param(params, "index", len(specs), example=str(len(specs))) - 1
    if index >= len(specs):
        raise _Refused(f"index must be 1 to {len(specs)} (the stack's layers). Received: index={index + 1}", "index")
    field = receptive_field(reports, shape)[index]
    return _field_answer(params, index, specs[index].describe(), shape, reports[index].output_shape, field)


def model_rf(params: dict[str, list[str]], model: dict | None) -> dict:
    """``/api/rf?model=1&index=N&out=i,j``: the receptive field of a unit of row ``N`` (1-based, as
    in the table; default: the last row with a field) of the ``--model``'s summary document, from
    that row's ``receptive_field`` (no layer is parsed or analysed again)."""
    if model is None:
        raise _Refused(NO_MODEL, "model")
    rows = model["layers"]
    tracked = [k for k, row in enumerate(rows, start=1) if row.get("receptive_field") and row.get("output_shape")]
    if not tracked:
        raise _Refused("the model's table has no row with a receptive field (no spatial layer was traced)", "index")
    index = _int_param(params, "index", tracked[-1], example=str(tracked[-1]))
    if index > len(rows) or index not in tracked:
        raise _Refused(f"index must be a row of the model's table with a receptive field (rows {_ranges(tracked)}). "
                       f"Received: index={index}", "index")
    row = rows[index - 1]
    entry = row["receptive_field"]
    dims = tuple(FieldDim(*(_fraction(entry[key][d]) for key in ("size", "jump", "start", "projective")))
                 for d in range(len(entry["size"])))
    field = ReceptiveField(index, row["type"], dims, bool(entry["global"]))
    return _field_answer(params, index - 1, f"{row['type']} (module {row['name']})", tuple(model["input_shape"]),
                         tuple(row["output_shape"][1:]), field)


def _fraction(value) -> Fraction:
    """A summary document's number (an int, or a float after upsampling) as the fraction it rounds."""
    return Fraction(value).limit_denominator(1 << 16)


def _ranges(indices: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"1–3, 5"``."""
    parts, first = [], indices[0]
    for previous, k in zip(indices, indices[1:] + [None]):
        if k != previous + 1:
            parts.append(str(first) if first == previous else f"{first}–{previous}")
            first = k
    return ", ".join(parts)


def _field_answer(params, index: int, layer: str, shape: tuple[int, ...], out: tuple[int, ...],
                  field: ReceptiveField) -> dict:
    """The ``/api/rf`` document of unit ``out=`` of a layer (0-based ``index``) whose output is ``out``
    (per sample) and whose field on the input ``shape`` is ``field``."""
    spatial = shape[1:]
    out_spatial = out[1:] if len(out) == len(shape) else ()
    entry = field.as_dict()
    result = {"schema": SCHEMA, "index": index + 1, "layer": layer, "input_shape": list(shape),
              "global": field.is_global, "size": entry["size"], "jump": entry["jump"], "start": entry["start"],
              "warnings": entry["warnings"]}
    if field.is_global or not out_spatial:
        return {**result, "out": None, "centre": None, "span": None,
                "box": [[0, n - 1] for n in spatial], "exact": True}
    cell = _cell(_one(params, "out", ",".join("0" * len(out_spatial)), example="0,0"), out_spatial, "out")
    centre = [d.start + o * d.jump for d, o in zip(field.dims, cell)]
    span = [[c - (d.size - 1) / 2, c + (d.size - 1) / 2] for c, d in zip(centre, field.dims)]
    box = [[max(0, _ceil(lo)), min(n - 1, _floor(hi))] for (lo, hi), n in zip(span, spatial)]
    # exact: integer jumps (no upsampling on the way) and whole cells at both ends
    exact = all(d.jump.denominator == 1 for d in field.dims) and all(
        lo.denominator == 1 and hi.denominator == 1 for lo, hi in span)
    return {**result, "out": _pos(cell), "centre": [_number(c) for c in centre],
            "span": [[_number(lo), _number(hi)] for lo, hi in span], "box": box, "exact": exact}


def _number(value):
    return int(value) if value.denominator == 1 else float(value)


def _floor(value) -> int:
    return value.numerator // value.denominator


def _ceil(value) -> int:
    return -((-value.numerator) // value.denominator)


# ----------------------------------------------------------------------------- dispatch
ENDPOINTS = {"/api/view": view, "/api/links": links, "/api/matrix": matrix, "/api/rf": rf}


def error_document(err: LayerlabError) -> dict:
    """The body of a 400 answer: the message, the 1-based layer it names (or ``None``) and the
    query parameter at fault (or ``None``)."""
    message = str(err)
    named = re.match(r"layer (\d+):", message)
    parameter = getattr(err, "parameter", None)
    if parameter is None:
        parameter = "layer" if named else ("input" if message.startswith("shape ") else None)
    return {"schema": SCHEMA, "error": {"message": message, "layer": int(named.group(1)) if named else None,
                                        "parameter": parameter}}


def answer(path: str, query: str, model: dict | None = None) -> tuple[int, dict]:
    """``(HTTP status, JSON document)`` of one API request.

    Args:
        path: the URL path, e.g. ``"/api/view"``.
        query: the raw query string (percent-encoded), e.g. ``"input=3x32x32&layer=Conv2d(8,3)"``.
        model: the ``--model``'s summary document for ``/api/model`` (``None`` without ``--model``).

    Returns:
        ``(200, document)`` (for ``/api/model`` without a model: ``{"schema", "model": None,
        "reason"}``), ``(400, error document)`` for a request the engine refuses, or
        ``(404, error document)`` for an unknown endpoint.
    """
    if path == "/api/model":
        if model is None:  # not an error: the page asks on every bare load
            return 200, {"schema": SCHEMA, "model": None, "reason": NO_MODEL}
        return 200, model
    endpoint = ENDPOINTS.get(path)
    if endpoint is None:
        return 404, {"schema": SCHEMA, "error": {
            "message": f"unknown endpoint {path[:100]}; expected one of {', '.join([*ENDPOINTS, '/api/model'])}",
            "layer": None, "parameter": None}}
    params: dict[str, list[str]] = {}
    try:
        if len(query) > MAX_QUERY_BYTES:
            raise _Refused(f"the query string has {len(query):,} characters; at most {MAX_QUERY_BYTES:,} are "
                           "read. Fix: fewer or shorter layer= parameters")
        try:
            params = parse_qs(query, keep_blank_values=True, max_num_fields=2 * MAX_LAYERS)
        except ValueError as err:  # more fields than max_num_fields
            raise _Refused(f"the query string is malformed or has too many parameters ({err}); at most "
                           f"{2 * MAX_LAYERS} are read") from None
        if endpoint is rf and params.get("model") == ["1"]:  # the --model's table: its rows' fields
            return 200, model_rf(params, model)
        return 200, endpoint(params)
    except LayerlabError as err:
        document = error_document(err)
        if endpoint is view:  # a view keeps its keys: the page shows `error` in place of the rest
            document = {"schema": SCHEMA, "input": _shape_or_none(params), "layers": params.get("layer", [])[:MAX_LAYERS],
                        "stack": None, "error": document["error"]}
        return 400, document


def _shape_or_none(params) -> list[int] | None:
    """The query's input shape, or ``None`` when it is missing or does not parse."""
    try:
        return list(parse_shape(params.get("input", [""])[0]))
    except LayerlabError:
        return None
