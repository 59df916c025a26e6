"""Safe parser of torch-like layer strings: ``"Conv2d(64, 4, stride=2, padding=1)"`` -> a spec.

The text is parsed with ``ast.parse(text, mode="eval")`` and only one shape is accepted: a call of
a known layer name whose arguments are literals (int, float, str, bool, None, flat tuples or lists
of those, unary minus on a number). Nothing is ever evaluated, so ``Conv2d(10**10**10)``,
``__import__('os')`` or attribute access are rejected before any work is done, and the text length,
integer size and tuple length are capped so every input is answered quickly.

One rule for positional arguments: the *input* size is inferred from the running shape, so
positional arguments start at the **output** size, then follow torch's order::

    Linear(10)                       DenseSpec(out_features=10)
    Conv2d(128, 4, 2, 1)             out_channels, kernel_size, stride, padding
    ConvTranspose2d(64, 4, 2, 1)     out_channels, kernel_size, stride, padding, output_padding
    LocallyConnectedTranspose2d(8, 3, 2)   out_channels, kernel_size, stride, padding, output_padding, dilation
    BatchNorm2d()                    num_features inferred (BatchNorm2d(64) pins it)
    GroupNorm(8)                     num_groups, num_channels inferred

To pin an input size, use the keyword: ``Linear(10, in_features=4096)``. Torch arguments that do
not change the arithmetic (``eps``, ``momentum``, ``inplace``, ``negative_slope``, ``p``, ...) are
accepted, type-checked and ignored.

Examples:
    >>> parse_layer("Conv2d(64, 4, stride=2, padding=1)").describe()  # doctest: +SKIP
    'Conv2d(?, 64, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1))'
    >>> [spec.name for spec in parse_stack(["Linear(10)", "ReLU()"])]
    ['Linear', 'ReLU']
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import math
from collections.abc import Callable, Sequence
from typing import Any

from layerlab.arith import reshape, specs
from layerlab.arith._args import is_int
from layerlab.arith.sizes import PADDING_MODES
from layerlab.errors import ArgumentError, LayerlabError

__all__ = ["parse_layer", "parse_stack", "torch_order_note", "LAYER_NAMES", "MAX_TEXT_LENGTH", "MAX_INT", "MAX_TUPLE_LENGTH"]

MAX_TEXT_LENGTH = 1000  # characters in one layer string
MAX_INT = 2**62  # largest integer literal (absolute value)
MAX_TUPLE_LENGTH = 8  # elements in one tuple/list literal

Checker = Callable[[Any], Any]


class _Mismatch(Exception):
    """Raised by a checker: the value is not of the expected kind (``args[0]`` says which)."""


# --- argument checkers: return the (normalised) value or raise _Mismatch(expected) -------------


def _int(value: Any) -> int:
    if not is_int(value):
        raise _Mismatch("an integer")
    return value


def _ints(value: Any) -> int | tuple[int, ...]:
    """An int or a non-empty tuple of ints, passed on as written: the spec broadcasts it to ``ndim``
    and checks its length and range (:func:`layerlab.arith._args.ntuple`)."""
    if is_int(value) or isinstance(value, tuple) and value and all(is_int(v) for v in value):
        return value
    raise _Mismatch("an integer or a non-empty tuple of integers")


def _padding(value: Any) -> int | tuple[int, ...] | str:
    if value in ("same", "valid"):
        return value
    try:
        return _ints(value)
    except _Mismatch:
        raise _Mismatch("an integer, a tuple of integers, 'same' or 'valid'") from None


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Mismatch("True or False")
    return value


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Mismatch("a number")
    return value


def _probability(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise _Mismatch("a probability between 0 and 1")
    return value


def _optional(checker: Checker) -> Checker:
    def check(value: Any) -> Any:
        if value is None:
            return None
        try:
            return checker(value)
        except _Mismatch as err:
            raise _Mismatch(f"None or {err.args[0]}") from None

    return check


def _choice(*choices: str) -> Checker:
    def check(value: Any) -> str:
        if value not in choices or not isinstance(value, str):
            raise _Mismatch("one of " + ", ".join(repr(c) for c in choices))
        return value

    return check


def _output_size(value: Any) -> int | None | tuple[int | None, ...]:
    expected = "an integer, None, or a tuple of integers/None"
    items = value if isinstance(value, tuple) else (value,)
    if not items or any(v is not None and (isinstance(v, bool) or not isinstance(v, int)) for v in items):
        raise _Mismatch(expected)
    return value


def _scale(value: Any) -> int | float | tuple[int | float, ...]:
    items = value if isinstance(value, tuple) else (value,)
    if not items or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in items):
        raise _Mismatch("a number or a tuple of numbers")
    return value


def _local_bias(value: Any) -> str | None:
    """As ``layerlab.nn.LocallyConnected2d``: True (per channel and position), 'shared' (per
    channel), False/None (no bias); arith's own name 'location' is accepted too."""
    if value is True or value == "location":
        return "location"
    if value is False or value is None:
        return None
    if value == "shared":
        return "shared"
    raise _Mismatch("True or 'location' (one bias per channel and output position), 'shared' (one per channel), or False/None")


# --- the layer table ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Layer:
    """How one layer name maps to a spec.

    ``positional`` names the positional arguments in order; ``keywords`` maps every accepted
    keyword to its checker; ``ignored`` are accepted torch keywords that do not change the
    arithmetic (checked, then dropped); ``required`` must be given; ``build(values)`` makes the spec
    from the checked values. ``torch_positional`` is torch's constructor order when it starts at
    the input size (``Conv2d(in_channels, out_channels, ...)``), for the rewrite hint; empty when
    torch's order is this one.
    """

    positional: tuple[str, ...]
    keywords: dict[str, Checker]
    build: Callable[[dict[str, Any]], Any]
    ignored: frozenset[str] = frozenset()
    required: tuple[str, ...] = ()
    torch_positional: tuple[str, ...] = ()


_CONV_KW = {
    "in_channels": _optional(_int),
    "out_channels": _int,
    "kernel_size": _ints,
    "stride": _ints,
    "padding": _padding,
    "dilation": _ints,
    "groups": _int,
}


def _windowed(spec: Callable[..., Any], ndim: int, positional: tuple[str, ...], *, required: tuple[str, ...] = (),
              **keywords: Checker) -> _Layer:
    """A conv-like layer: ``positional`` from ``out_channels``, the conv keywords (``keywords`` add to
    or replace them), ``out_channels`` and ``kernel_size`` required (then ``required``), the spec
    built with ``ndim``; torch's constructor takes ``in_channels`` before ``positional``."""
    return _Layer(
        positional=positional,
        keywords={**_CONV_KW, **keywords},
        build=lambda v: spec(ndim=ndim, **v),
        required=("out_channels", "kernel_size", *required),
        torch_positional=("in_channels", *positional),
    )


def _conv(ndim: int) -> _Layer:
    return _windowed(
        specs.ConvSpec, ndim,
        ("out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias", "padding_mode"),
        bias=_bool, padding_mode=_choice(*PADDING_MODES),
    )


def _conv_transpose(ndim: int) -> _Layer:
    # torch order after in_channels: out, kernel, stride, padding, output_padding, groups, bias, dilation
    return _windowed(
        specs.ConvTransposeSpec, ndim,
        ("out_channels", "kernel_size", "stride", "padding", "output_padding", "groups", "bias", "dilation"),
        padding=_ints, output_padding=_ints, bias=_bool,
    )


def _local(ndim: int) -> _Layer:
    return _windowed(
        specs.LocalSpec, ndim, ("out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias"),
        bias=_local_bias,
    )


def _tiled(ndim: int) -> _Layer:
    return _windowed(
        specs.TiledSpec, ndim,
        ("out_channels", "kernel_size", "tile_size", "stride", "padding", "dilation", "groups", "bias"),
        required=("tile_size",), tile_size=_ints, bias=_local_bias,
    )


def _local_transpose(ndim: int) -> _Layer:
    # layerlab order after in_channels: out, kernel, stride, padding, output_padding, dilation, groups, bias
    return _windowed(
        specs.LocalTransposeSpec, ndim,
        ("out_channels", "kernel_size", "stride", "padding", "output_padding", "dilation", "groups", "bias"),
        padding=_ints, output_padding=_ints, bias=_local_bias,
    )


def _lowrank(ndim: int) -> _Layer:
    return _windowed(
        specs.LowRankLocalSpec, ndim,
        ("out_channels", "kernel_size", "rank", "stride", "padding", "dilation", "groups", "bias"),
        required=("rank",), rank=_int, bias=_local_bias, combining=_choice(*specs.LOWRANK_COMBINING),
        normalize=_optional(_choice(*(n for n in specs.LOWRANK_NORMALIZE if n is not None))),
    )


def _max_pool(ndim: int) -> _Layer:
    return _Layer(
        positional=("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"),
        keywords={
            "kernel_size": _ints,
            "stride": _optional(_ints),
            "padding": _ints,
            "dilation": _ints,
            "return_indices": _bool,
            "ceil_mode": _bool,
        },
        build=lambda v: specs.PoolSpec(ndim=ndim, op="max", **v),
        ignored=frozenset({"return_indices"}),
        required=("kernel_size",),
    )


def _avg_pool(ndim: int) -> _Layer:
    return _Layer(
        positional=("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
        keywords={
            "kernel_size": _ints,
            "stride": _optional(_ints),
            "padding": _ints,
            "ceil_mode": _bool,
            "count_include_pad": _bool,
            "divisor_override": _optional(_int),
        },
        build=lambda v: specs.PoolSpec(ndim=ndim, op="avg", **v),
        ignored=frozenset({"divisor_override"}),
        required=("kernel_size",),
    )


def _adaptive_pool(ndim: int, op: str) -> _Layer:
    keywords = {"output_size": _output_size}
    if op == "max":
        keywords["return_indices"] = _bool
    return _Layer(
        positional=tuple(keywords),
        keywords=keywords,
        build=lambda v: specs.AdaptivePoolSpec(ndim=ndim, op=op, **v),
        ignored=frozenset({"return_indices"}),
        required=("output_size",),
    )


def _global_pool(op: str) -> _Layer:
    # like layerlab.nn.GlobalAvgPool, any rank: ndim comes from the input
    return _Layer(positional=(), keywords={}, build=lambda v: specs.global_pool(op))


def _batch_norm(kind: str, ndim: int, affine: bool, track_running_stats: bool) -> _Layer:
    return _Layer(
        positional=("num_features", "eps", "momentum", "affine", "track_running_stats"),
        keywords={
            "num_features": _optional(_int),
            "eps": _number,
            "momentum": _optional(_number),
            "affine": _bool,
            "track_running_stats": _bool,
        },
        build=lambda v: specs.NormSpec(
            kind=kind,
            ndim=ndim,
            **{"affine": affine, "track_running_stats": track_running_stats, **v},
        ),
        ignored=frozenset({"eps", "momentum"}),
    )


def _norm_build(kind: str, torch_key: str, spec_key: str) -> Callable[[dict[str, Any]], Any]:
    """``build`` of a ``NormSpec`` of ``kind`` whose torch keyword ``torch_key`` is the spec's
    ``spec_key`` (LayerNorm's ``elementwise_affine`` is ``affine``)."""

    def build(v: dict[str, Any]) -> Any:
        if torch_key in v:
            v[spec_key] = v.pop(torch_key)
        return specs.NormSpec(kind=kind, **v)

    return build


def _layer_norm() -> _Layer:
    return _Layer(
        positional=("normalized_shape", "eps", "elementwise_affine", "bias"),
        keywords={"normalized_shape": _optional(_ints), "eps": _number, "elementwise_affine": _bool, "bias": _bool},
        build=_norm_build("layer", "elementwise_affine", "affine"),
        ignored=frozenset({"eps", "bias"}),
    )


def _group_norm() -> _Layer:
    return _Layer(
        positional=("num_groups", "num_channels", "eps", "affine"),
        keywords={"num_groups": _int, "num_channels": _optional(_int), "eps": _number, "affine": _bool},
        build=_norm_build("group", "num_channels", "num_features"),
        ignored=frozenset({"eps"}),
        required=("num_groups",),
    )


def _elementwise(name: str, *, inplace: bool = False, **keywords: Checker) -> _Layer:
    if inplace:
        keywords["inplace"] = _bool
    return _Layer(
        positional=tuple(keywords),
        keywords=keywords,
        build=lambda v: specs.elementwise(name),
        ignored=frozenset(keywords),
    )


def _table() -> dict[str, _Layer]:
    table: dict[str, _Layer] = {}
    dense = _Layer(
        positional=("out_features", "in_features", "bias"),
        keywords={"out_features": _int, "in_features": _optional(_int), "bias": _bool},
        build=lambda v: specs.DenseSpec(**v),
        required=("out_features",),
    )
    # positional args start at the OUTPUT size: Linear(10) = out_features; in_features only by keyword
    table["Linear"] = dataclasses.replace(
        dense, positional=("out_features",), torch_positional=("in_features", "out_features", "bias"))
    table["Dense"] = dataclasses.replace(dense, positional=("out_features",))
    for n in (1, 2, 3):
        table[f"Conv{n}d"] = _conv(n)
        table[f"ConvTranspose{n}d"] = _conv_transpose(n)
        table[f"LocallyConnected{n}d"] = _local(n)
        table[f"TiledConv{n}d"] = _tiled(n)
        table[f"LocallyConnectedTranspose{n}d"] = _local_transpose(n)
        table[f"LowRankLocallyConnected{n}d"] = _lowrank(n)
        table[f"MaxPool{n}d"] = _max_pool(n)
        table[f"AvgPool{n}d"] = _avg_pool(n)
        table[f"AdaptiveAvgPool{n}d"] = _adaptive_pool(n, "avg")
        table[f"AdaptiveMaxPool{n}d"] = _adaptive_pool(n, "max")
        table[f"BatchNorm{n}d"] = _batch_norm("batch", n, affine=True, track_running_stats=True)
        table[f"InstanceNorm{n}d"] = _batch_norm("instance", n, affine=False, track_running_stats=False)
    table["GlobalAvgPool"] = _global_pool("avg")
    table["GlobalMaxPool"] = _global_pool("max")
    table["LayerNorm"] = _layer_norm()
    table["GroupNorm"] = _group_norm()
    table["Flatten"] = _Layer(
        positional=("start_dim", "end_dim"),
        keywords={"start_dim": _int, "end_dim": _int},
        build=lambda v: specs.FlattenSpec(**v),
    )
    table["Upsample"] = _Layer(
        positional=("size", "scale_factor", "mode", "align_corners"),
        keywords={
            "size": _optional(_ints),
            "scale_factor": _optional(_scale),
            "mode": _choice(*specs.UPSAMPLE_MODES),
            "align_corners": _optional(_bool),
        },
        build=lambda v: specs.upsample(**v),  # ndim from the input
        ignored=frozenset({"align_corners"}),
    )
    table["ReLU"] = _elementwise("ReLU", inplace=True)
    table["LeakyReLU"] = _elementwise("LeakyReLU", negative_slope=_number, inplace=True)
    table["ELU"] = _elementwise("ELU", alpha=_number, inplace=True)
    table["SiLU"] = _elementwise("SiLU", inplace=True)
    table["GELU"] = _elementwise("GELU", approximate=_choice("none", "tanh"))
    table["Tanh"] = _elementwise("Tanh")
    table["Sigmoid"] = _elementwise("Sigmoid")
    table["Softmax"] = _elementwise("Softmax", dim=_optional(_int))
    table["LogSoftmax"] = _elementwise("LogSoftmax", dim=_optional(_int))
    for name in ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout"):
        table[name] = _elementwise(name, p=_probability, inplace=True)
    table["Identity"] = _elementwise("Identity")
    table.update(_shape_only())
    return table


def _shape_only() -> dict[str, _Layer]:
    """The layers of :mod:`layerlab.arith.reshape`, in torch's argument order (no input size)."""
    table = {
        "Unflatten": _Layer(
            positional=("dim", "unflattened_size"),
            keywords={"dim": _int, "unflattened_size": _ints},
            build=lambda v: reshape.UnflattenSpec(v["dim"], _as_tuple(v["unflattened_size"])),
            required=("dim", "unflattened_size"),
        ),
        "PixelShuffle": _Layer(
            positional=("upscale_factor",), keywords={"upscale_factor": _int},
            build=lambda v: reshape.PixelShuffleSpec(v["upscale_factor"]), required=("upscale_factor",),
        ),
        "PixelUnshuffle": _Layer(
            positional=("downscale_factor",), keywords={"downscale_factor": _int},
            build=lambda v: reshape.PixelShuffleSpec(v["downscale_factor"], inverse=True),
            required=("downscale_factor",),
        ),
        "ChannelShuffle": _Layer(
            positional=("groups",), keywords={"groups": _int},
            build=lambda v: reshape.ChannelShuffleSpec(v["groups"]), required=("groups",),
        ),
    }
    blocks = {"kernel_size": _ints, "dilation": _ints, "padding": _ints, "stride": _ints}
    table["Unfold"] = _Layer(
        positional=tuple(blocks), keywords=blocks, build=lambda v: reshape.UnfoldSpec(**v), required=("kernel_size",))
    table["Fold"] = _Layer(
        positional=("output_size", *blocks), keywords={"output_size": _ints, **blocks},
        build=lambda v: reshape.UnfoldSpec(**v), required=("output_size", "kernel_size"),
    )
    for kind in reshape.PAD_MODES:
        keywords = {"padding": _ints, **({"value": _number} if kind == "Constant" else {})}
        for n in (1, 2, 3):
            table[f"{kind}Pad{n}d"] = _Layer(
                positional=tuple(keywords), keywords=keywords,
                build=lambda v, n=n, kind=kind: reshape.PadSpec(n, v["padding"], kind),
                ignored=frozenset({"value"}), required=("padding",),
            )
    return table


def _as_tuple(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return value if isinstance(value, tuple) else (value,)


_LAYERS: dict[str, _Layer] = _table()
LAYER_NAMES: tuple[str, ...] = tuple(sorted(_LAYERS))


# --- literals -----------------------------------------------------------------------------------


# example values of required arguments, for the "needs ..." message
_EXAMPLES = {"out_features": 10, "out_channels": 64, "kernel_size": 3, "tile_size": 2, "output_size": 1, "num_groups": 8,
             "dim": 1, "unflattened_size": (1, 28, 28), "upscale_factor": 2, "downscale_factor": 2, "groups": 2,
             "padding": 1,
             "rank": 4}


def _where(text: str, node: ast.AST) -> str:
    col = getattr(node, "col_offset", 0)
    return f"at column {col + 1} of {text!r}"


def _scalar(text: str, node: ast.expr) -> Any:
    """A literal scalar: int, float, str, bool, None, or unary minus on a number."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = node.operand
        if isinstance(inner, ast.Constant) and type(inner.value) in (int, float):
            value = _scalar(text, inner)
            return -value if isinstance(node.op, ast.USub) else value
        raise ArgumentError(f"unary {'-' if isinstance(node.op, ast.USub) else '+'} applies only to a number literal {_where(text, node)}")
    if not isinstance(node, ast.Constant):
        raise ArgumentError(
            f"only literal arguments are allowed {_where(text, node)} (got {type(node).__name__}: "
            f"{_source(text, node)!r}); write numbers, strings, True/False/None or tuples of them, "
            "no expressions or names"
        )
    value = node.value
    if type(value) is int:
        if abs(value) > MAX_INT:
            raise ArgumentError(f"integer literal {_where(text, node)} is too large (more than 2**62); use a realistic size")
        return value
    if type(value) is float:
        if not math.isfinite(value):
            raise ArgumentError(f"number literal {_where(text, node)} is not finite ({value!r}); use a finite number")
        return value
    if value is None or type(value) in (bool, str):
        return value
    raise ArgumentError(
        f"unsupported literal {_source(text, node)!r} {_where(text, node)} ({type(value).__name__}); "
        "use int, float, str, True/False/None or a tuple of them"
    )


def _literal(text: str, node: ast.expr) -> Any:
    """A scalar literal or a flat tuple/list of scalars (lists become tuples)."""
    if isinstance(node, (ast.Tuple, ast.List)):
        if len(node.elts) > MAX_TUPLE_LENGTH:
            raise ArgumentError(
                f"tuple {_where(text, node)} has {len(node.elts)} elements, at most {MAX_TUPLE_LENGTH} are allowed"
            )
        items = []
        for elt in node.elts:
            if isinstance(elt, (ast.Tuple, ast.List)):
                raise ArgumentError(f"nested tuples are not allowed {_where(text, elt)}; use one flat tuple like (3, 3)")
            items.append(_scalar(text, elt))
        return tuple(items)
    return _scalar(text, node)


def _source(text: str, node: ast.AST) -> str:
    segment = ast.get_source_segment(text, node)
    return segment if segment is not None else type(node).__name__


def _close(word: str, choices: Sequence[str]) -> str:
    """'did you mean ...?' with up to 3 close names (case-insensitive: Relu -> ReLU), or ''."""
    lower = {choice.lower(): choice for choice in choices}
    matches = [lower[m] for m in difflib.get_close_matches(word.lower(), list(lower), n=3, cutoff=0.6)]
    return f"did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""


# --- public API ---------------------------------------------------------------------------------


def parse_layer(text: str) -> Any:
    """Parse one torch-like layer string into an :mod:`layerlab.arith.specs` spec, safely.

    Args:
        text (str): e.g. ``"Conv2d(64, 4, stride=2, padding=1)"``, ``"Linear(10)"``,
            ``"MaxPool2d(2)"``, ``"Flatten()"``. A bare name (``"ReLU"``) means a call with no
            arguments. Positional arguments start at the *output* size; ``in_channels`` /
            ``in_features`` / ``num_features`` are inferred unless given by keyword.

    Returns:
        The spec (a frozen dataclass of :mod:`layerlab.arith.specs`).

    Raises:
        ArgumentError: the text is not a call of a known layer with literal arguments (unknown name,
            expression or name as argument, too many positional arguments, unknown or repeated
            keyword, a value of the wrong kind, text longer than ``MAX_TEXT_LENGTH``), or the spec
            rejects the values. The message quotes the text and the column, and suggests close names.

    Examples:
        >>> parse_layer("Linear(10, in_features=4096)").in_features
        4096
    """
    if not isinstance(text, str):
        raise ArgumentError(f"a layer string must be a str, got {type(text).__name__}: {text!r:.80}")
    if len(text) > MAX_TEXT_LENGTH:
        raise ArgumentError(
            f"layer string is {len(text)} characters long, at most {MAX_TEXT_LENGTH} are allowed: {text[:40]!r}..."
        )
    stripped = text.strip()
    if not stripped:
        raise ArgumentError("empty layer string; write a layer like 'Conv2d(64, 3, padding=1)' or 'Linear(10)'")
    try:
        tree = ast.parse(stripped, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        where = f" at column {err.offset}" if isinstance(err, SyntaxError) and err.offset else ""
        reason = err.msg if isinstance(err, SyntaxError) else str(err) or type(err).__name__
        raise ArgumentError(
            f"cannot parse layer string {text!r}{where}: {reason}; expected a call like 'Conv2d(64, 3, stride=2)'"
        ) from None
    node = tree.body
    if isinstance(node, ast.Name):  # "ReLU" is "ReLU()"
        node = ast.Call(func=node, args=[], keywords=[], col_offset=node.col_offset)
    if isinstance(node, ast.Call) and _module_prefix(node.func):
        raise ArgumentError(_prefix_message(stripped, node))
    if isinstance(node, ast.Call) and not isinstance(node.func, ast.Name):
        raise ArgumentError(
            f"layer string {stripped!r} calls {_source(stripped, node.func)!r}; the layer must be a bare name "
            "such as 'Conv2d(64, 3, stride=2)' (an 'nn.' or 'torch.nn.' prefix is explained, others are not known)"
        )
    if not isinstance(node, ast.Call):
        raise ArgumentError(
            f"layer string {stripped!r} is not a layer call; expected NAME(args), e.g. 'Conv2d(64, 3, stride=2)' "
            f"(got {type(node).__name__})"
        )
    name = node.func.id
    layer = _LAYERS.get(name)
    if layer is None:
        hint = _close(name, LAYER_NAMES) or f"known layers: {', '.join(LAYER_NAMES)}"
        raise ArgumentError(f"unknown layer {name!r} in {stripped!r}; {hint}")
    try:
        return _build(stripped, name, layer, node)
    except LayerlabError as err:
        rewrite = _torch_rewrite(stripped)
        if rewrite is not None:
            hint = f"if you meant torch's order ({rewrite[1]} first), write {rewrite[0]!r}"
            raise type(err)(f"{err}; {hint}" if _OUTPUT_FIRST in str(err) else f"{err}. {_OUTPUT_FIRST}; {hint}") from None
        raise


# --- torch's argument order ---------------------------------------------------------------------


_PREFIXES = ("nn.", "torch.nn.")  # module paths a torch user writes before a layer name
_OUTPUT_FIRST = "Layer strings start at the output size (the input size is inferred)"


def _module_prefix(func: ast.expr) -> str:
    """``'nn.'`` / ``'torch.nn.'`` when ``func`` is ``nn.NAME`` / ``torch.nn.NAME``, else ``''``."""
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name) or not parts:
        return ""
    prefix = ".".join([func.id, *reversed(parts[1:])]) + "."
    return prefix if prefix in _PREFIXES else ""


def _torch_rewrite(text: str) -> tuple[str, str] | None:
    """``text`` (a call, maybe with an ``nn.`` prefix) read in torch's order, input size first,
    rewritten as a layer string: ``('Conv2d(32, 3, in_channels=1)', 'in_channels')`` for
    ``'Conv2d(1, 32, 3)'``. ``None`` unless that reading has two or more positional arguments, the
    layer's torch order starts at the input size, and the rewritten string parses."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(node, ast.Call) or len(node.args) < 2:
        return None
    prefix = _module_prefix(node.func)
    name = node.func.attr if prefix else getattr(node.func, "id", "")
    layer = _LAYERS.get(name)
    if layer is None or not layer.torch_positional or len(node.args) > len(layer.torch_positional):
        return None
    source = text.strip()
    given = {key: _source(source, arg) for key, arg in zip(layer.torch_positional, node.args)}
    in_key = layer.torch_positional[0]
    parts = []
    for key in layer.positional:
        if key not in given:
            break
        parts.append(given.pop(key))
    parts.append(f"{in_key}={given.pop(in_key)}")
    parts += [f"{key}={value}" for key, value in given.items()]
    parts += [_source(source, keyword) for keyword in node.keywords]
    candidate = f"{name}({', '.join(parts)})"
    try:
        parse_layer(candidate)
    except LayerlabError:
        return None
    return candidate, in_key


def torch_order_note(text: str) -> str:
    """A hint for a layer string that may be written in torch's argument order, or ``''``.

    Layer strings start at the output size (``Conv2d(out_channels, kernel_size, ...)``); torch's
    constructors start at the input size (``Conv2d(in_channels, out_channels, kernel_size, ...)``).
    When ``text`` read in torch's order is a valid layer string, the note shows it rewritten.

    Examples:
        >>> torch_order_note("Conv2d(1, 32, 3)")
        "Layer strings start at the output size (the input size is inferred); if you meant torch's order (in_channels first), write 'Conv2d(32, 3, in_channels=1)'"
    """
    rewrite = _torch_rewrite(text)
    if rewrite is None:
        return ""
    return f"{_OUTPUT_FIRST}; if you meant torch's order ({rewrite[1]} first), write {rewrite[0]!r}"


def _prefix_message(text: str, node: ast.Call) -> str:
    """The error for ``nn.Conv2d(...)``: which prefix, and the layer strings it may have meant."""
    prefix = _module_prefix(node.func)
    bare = text[text.index(prefix) + len(prefix):]
    readings = []
    rewrite = _torch_rewrite(text)
    if rewrite is not None:
        readings.append(f"in torch's order ({rewrite[1]} first) it is {rewrite[0]!r}")
    try:
        parse_layer(bare)
        readings.append(f"read as a layer string (output size first) it is {bare!r}")
    except LayerlabError:
        pass
    meant = "; ".join(readings) if readings else f"write {bare!r} with the output size first"
    return (f"layer string {text!r} starts with the module prefix {prefix!r}; a layer string names the layer "
            f"alone. {_OUTPUT_FIRST}: {meant}")


def _build(text: str, name: str, layer: _Layer, node: ast.Call) -> Any:
    values: dict[str, Any] = {}
    if len(node.args) > len(layer.positional):
        extra = node.args[len(layer.positional)]
        takes = ", ".join(layer.positional) if layer.positional else "no positional arguments"
        raise ArgumentError(
            f"{name} takes at most {len(layer.positional)} positional argument(s) ({takes}), got {len(node.args)} "
            f"in {text!r}; the extra one is {_where(text, extra)}. {_OUTPUT_FIRST}; pass the others by keyword"
        )
    for key, arg in zip(layer.positional, node.args):
        if isinstance(arg, ast.Starred):
            raise ArgumentError(f"*args are not allowed {_where(text, arg)}; write the arguments out")
        values[key] = _check(text, name, layer, key, arg)
    for keyword in node.keywords:
        key = keyword.arg
        if key is None:
            raise ArgumentError(f"**kwargs are not allowed {_where(text, keyword.value)}; write the keywords out")
        if key not in layer.keywords:
            accepted = ", ".join(layer.keywords) if layer.keywords else "no arguments"
            raise ArgumentError(
                f"{name} has no argument {key!r} ({_where(text, keyword)}); "
                f"{(_close(key, tuple(layer.keywords)) + ' ') if _close(key, tuple(layer.keywords)) else ''}"
                f"{name} accepts: {accepted}"
            )
        if key in values:
            times = sum(k.arg == key for k in node.keywords)
            how = (f"{times} times by keyword" if times > 1 else "twice (positionally and by keyword)")
            raise ArgumentError(f"{name} got argument {key!r} {how} in {text!r}; give it once")
        values[key] = _check(text, name, layer, key, keyword.value)
    missing = [key for key in layer.required if key not in values]
    if missing:
        example = f"{name}({', '.join(str(_EXAMPLES[key]) for key in layer.required)})"
        raise ArgumentError(
            f"{text}: {name} needs {' and '.join(missing)}; positional order is {', '.join(layer.positional)}, "
            f"e.g. {example}"
        )
    for key in layer.ignored:
        values.pop(key, None)
    try:
        return layer.build(values)
    except LayerlabError as err:
        raise type(err)(f"{text}: {err}") from None


def _check(text: str, name: str, layer: _Layer, key: str, node: ast.expr) -> Any:
    value = _literal(text, node)
    try:
        return layer.keywords[key](value)
    except _Mismatch as err:
        raise ArgumentError(
            f"{name} argument {key} must be {err.args[0]}, got {_source(text, node)} {_where(text, node)}"
        ) from None


def parse_stack(texts: Sequence[str]) -> list[Any]:
    """Parse several layer strings (see :func:`parse_layer`); errors name the layer's position.

    Args:
        texts (sequence of str): one layer string per layer, in order.

    Returns:
        list of specs, in order.

    Raises:
        ArgumentError: as :func:`parse_layer`, prefixed with ``layer N`` (1-based).

    Examples:
        >>> len(parse_stack(["Conv2d(8, 3)", "ReLU()", "Flatten()", "Linear(10)"]))
        4
    """
    if isinstance(texts, str):
        raise ArgumentError(f"parse_stack takes a list of layer strings, got one str {texts[:80]!r}; use parse_layer or wrap it in a list")
    result = []
    for index, text in enumerate(texts, start=1):
        try:
            result.append(parse_layer(text))
        except LayerlabError as err:
            raise type(err)(f"layer {index}: {err}") from None
    return result
