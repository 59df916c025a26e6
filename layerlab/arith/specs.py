"""Layer specs: every layer kind as plain, frozen data that knows its own arithmetic.

Argument names are PyTorch's. ``int | tuple`` arguments accept an int (broadcast to ``ndim``) or a
tuple of ``ndim`` ints and are stored as tuples. ``in_channels`` / ``in_features`` may be ``None``:
``analyse`` then takes them from the input shape. Shapes are **per sample** (no batch dimension):
``(C, *spatial)`` for conv-like layers, ``(features,)`` for dense.

Every spec has ``name`` (``"Conv2d"``), ``describe()`` (a torch-like one-line repr) and
``analyse(input_shape) -> LayerReport`` (output shape with filled-in formulas, params, buffers,
MACs, other ops, output elements, the window for the receptive field, warnings).

Counting conventions (see ``docs/arithmetic.md``): MACs are the multiply-accumulates of the weight
contraction; bias adds, activations, comparisons (max pooling), additions (average pooling) and
normalisation are separate named counts in ``other_ops``; FLOPs = 2·MACs. Conv-like MACs include
the products with zero padding (as ``torch.utils.flop_counter``).

Examples:
    >>> r = ConvSpec(2, 64, 3, padding=1).analyse((3, 32, 32))
    >>> r.output_shape, r.params, r.macs
    ((64, 32, 32), 1792, 1769472)
    >>> r.formulas[0]
    'H: floor((32 + 2·1 − 1·(3−1) − 1)/1) + 1 = 32'
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import gcd, isqrt, prod

from layerlab.arith._args import (
    check_input_shape,
    check_ndim,
    choice,
    divides,
    is_int,
    ntuple,
    positive_int,
)
from layerlab.arith.elementwise import ops_per_element
from layerlab.arith.report import GLOBAL, LayerReport, Window
from layerlab.arith.sizes import (
    DIM_NAMES,
    PADDING_MODES,
    UNITS,
    Geometry,
    padding_pairs,
    same_padding,
    transposed_formula,
    transposed_output_size,
)
from layerlab.errors import ArgumentError, ShapeError

__all__ = [
    "DenseSpec",
    "ConvSpec",
    "LocalSpec",
    "TiledSpec",
    "LowRankLocalSpec",
    "ConvTransposeSpec",
    "LocalTransposeSpec",
    "PoolSpec",
    "AdaptivePoolSpec",
    "NormSpec",
    "FlattenSpec",
    "ElementwiseSpec",
    "UpsampleSpec",
    "elementwise",
    "global_pool",
    "upsample",
    "LayerReport",
    "Window",
    "GLOBAL",
]

LOCAL_BIAS = ("location", "shared", None)
LOWRANK_COMBINING = ("factorized", "full")
LOWRANK_NORMALIZE = ("softmax", "l2", None)
POOL_OPS = ("max", "avg")
NORM_KINDS = ("batch", "layer", "group", "instance")
UPSAMPLE_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")
# modes that need a fixed number of spatial dims, as torch.nn.functional.interpolate
UPSAMPLE_MODE_NDIM = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


# ----------------------------------------------------------------------------- shared helpers
def _show(values) -> str:
    """``(3, 3)`` -> ``3``; ``(3, 1)`` -> ``(3, 1)``; strings and None unchanged."""
    if isinstance(values, tuple) and values and all(v == values[0] for v in values):
        return repr(values[0])
    return repr(values)


def _repr(name: str, head: str, options: list[tuple[str, object, object]]) -> str:
    """``name(head, key=value, ...)`` listing only options that differ from their default."""
    parts = [head] * bool(head) + [f"{key}={_show(value)}" for key, value, default in options if value != default]
    return f"{name}({', '.join(parts)})"


def _suffix(ndim: int | None) -> str:
    """``"2d"`` for ndim 2, ``""`` while unknown."""
    return "" if ndim is None else f"{ndim}d"


def _with_input_ndim(spec, input_shape):
    """The spec with ``ndim`` taken from a ``(C, *spatial)`` input (1 to 3 spatial dims)."""
    shape = check_input_shape(spec.name, input_shape)
    if not 2 <= len(shape) <= 4:
        raise ShapeError(f"{spec.describe()} expects a per-sample input (C, L), (C, H, W) or "
                         f"(C, D, H, W), gets {shape}.")
    try:
        return replace(spec, ndim=len(shape) - 1)
    except ArgumentError as err:
        raise ShapeError(f"{err} (the input {shape} has {len(shape) - 1} spatial "
                         f"dim{'s' if len(shape) > 2 else ''})") from None


def _check_bool(who: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ArgumentError(f"{who}: {name} must be True or False. Received: {name}={value!r}")
    return value


def _set(spec, **values) -> None:
    """Store normalised values on a frozen dataclass."""
    for key, value in values.items():
        object.__setattr__(spec, key, value)


def _split_input(spec, input_shape, ndim: int) -> tuple[int, tuple[int, ...]]:
    """``(C, *spatial)`` with ``ndim`` spatial dims, or a :class:`ShapeError` saying what is wrong."""
    shape = check_input_shape(spec.name, input_shape)
    if len(shape) != ndim + 1:
        layout = "(C, " + ", ".join(DIM_NAMES[ndim]) + ")"
        hint = ""
        if len(shape) == ndim + 2:
            hint = " Shapes are per sample: drop the batch dimension."
        elif len(shape) == 1:
            hint = " The input is flat (features): a conv-like layer cannot follow Flatten or Linear."
        raise ShapeError(
            f"{spec.describe()} expects a per-sample input {layout} with {ndim + 1} dims, "
            f"gets {shape} with {len(shape)} dim{'s' if len(shape) > 1 else ''}.{hint}"
        )
    return shape[0], shape[1:]


def _check_channels(spec, channels: int, declared: int | None, name: str) -> int:
    """The input's channel count, checked against the declared one."""
    if declared is not None and channels != declared:
        raise ShapeError(
            f"{spec.describe()} expects {declared} input channels, gets {channels}. Fix: set "
            f"{name}={channels}, or leave {name}=None to infer it from the previous layer."
        )
    return channels


def _check_groups(spec, channels: int, groups: int) -> None:
    if channels % groups:
        raise ShapeError(
            f"{spec.describe()}: groups={groups} must divide the {channels} input channels "
            f"({channels} / {groups} = {channels / groups:g}); use a divisor of {channels}."
        )


def _geometries(spec, spatial, kernel, stride, pads, dilation, ceil_mode=False) -> list[Geometry]:
    """One :class:`Geometry` per spatial dim; :class:`ShapeError` when an output size is < 1."""
    dims = DIM_NAMES[len(spatial)]
    found = []
    for i, size in enumerate(spatial):
        g = Geometry(dims[i], size, kernel[i], stride[i], pads[i], dilation[i], ceil_mode)
        if g.out_size < 1:
            raise ShapeError(
                f"{spec.describe()}: {g.dim}: the kernel spans {g.dilation}·({g.kernel_size}−1) + 1 "
                f"= {g.span} but the padded input is only {size} + {sum(g.padding)} = {g.padded} "
                f"({g.formula()}). Fix: a larger input, more padding, or a smaller kernel/dilation."
            )
        found.append(g)
    return found


def _conv_padding(spec):
    """A conv-like spec's ``padding`` normalised: a tuple of ints or ``'same'``/``'valid'`` (after
    :func:`_windowed_init`, which normalises ``kernel_size``, ``stride`` and ``dilation``)."""
    who, padding, ndim = spec.name, spec.padding, spec.ndim
    kernel, stride, dilation = spec.kernel_size, spec.stride, spec.dilation
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ArgumentError(
                f"{who}: padding must be an int, a tuple of {ndim} int{'s' if ndim > 1 else ''}, 'same' or "
                f"'valid'. Received: padding={padding!r}"
            )
        if padding == "same" and any(s != 1 for s in stride):
            raise ArgumentError(
                f"{who}: padding='same' needs stride 1 (as torch: strided 'same' is not supported). "
                f"Received: stride={_show(stride)}. Fix: use stride=1, or an explicit padding "
                f"such as padding={_show(tuple(same_padding(k, d)[0] for k, d in zip(kernel, dilation)))}"
            )
        return padding
    return ntuple(who, "padding", padding, ndim, minimum=0)


def _windowed_report(spec, input_shape, *, kind_params, bias_count, ceil_mode=False, warnings=()):
    """Shared analyse of Conv/Local/Tiled: geometry, formulas, MACs, windows."""
    channels, spatial = _split_input(spec, input_shape, spec.ndim)
    channels = _check_channels(spec, channels, spec.in_channels, "in_channels")
    _check_groups(spec, channels, spec.groups)
    pads = spec.padding_pairs()
    geo = _geometries(spec, spatial, spec.kernel_size, spec.stride, pads, spec.dilation, ceil_mode)
    out = tuple(g.out_size for g in geo)
    positions = prod(out)
    other = {"bias_add": spec.out_channels * positions} if bias_count(out) else {}
    return LayerReport(
        kind=spec.name,
        input_shape=(channels, *spatial),
        output_shape=(spec.out_channels, *out),
        formulas=tuple(g.formula() for g in geo),
        params=kind_params(channels, out) + bias_count(out),
        buffers=0,
        macs=positions * _bank_weights(spec, channels),  # C_out·∏out·(C_in/g)·∏k
        other_ops=other,
        activation_elements=spec.out_channels * positions,
        window=tuple(Window(g.kernel_size, g.stride, g.padding[0], g.dilation) for g in geo),
        warnings=tuple(w for g in geo for w in g.warnings()) + tuple(warnings),
    )


def _windowed_init(spec, kind: str) -> str:
    """Validation shared by Conv/Local/Tiled/ConvTranspose; returns the layer name."""
    check_ndim(kind, spec.ndim)
    who = spec.name
    _set(spec, out_channels=positive_int(who, "out_channels", spec.out_channels),
         in_channels=positive_int(who, "in_channels", spec.in_channels, optional=True),
         kernel_size=ntuple(who, "kernel_size", spec.kernel_size, spec.ndim, minimum=1),
         stride=ntuple(who, "stride", spec.stride, spec.ndim, minimum=1),
         dilation=ntuple(who, "dilation", spec.dilation, spec.ndim, minimum=1),
         groups=positive_int(who, "groups", spec.groups))
    divides(who, spec.groups, spec.in_channels, "in_channels")
    divides(who, spec.groups, spec.out_channels, "out_channels")
    return who


def _windowed_describe(spec, bias_default, *, before=(), after=(), transposed=False) -> str:
    """``Name(C_in → C_out, kernel_size=…, stride=…, *before, padding=…, output_padding=…,
    dilation=…, groups=…, bias=…, *after)`` with only the options that differ from their defaults
    (``output_padding`` for ``transposed`` layers); ``before``/``after`` are the layer's own
    ``(key, value, default)`` options."""
    head = f"{'?' if spec.in_channels is None else spec.in_channels} → {spec.out_channels}"
    zeros, ones = (0,) * spec.ndim, (1,) * spec.ndim
    paddings = [("padding", spec.padding, zeros)]
    if transposed:
        paddings.append(("output_padding", spec.output_padding, zeros))
    return _repr(spec.name, head, [
        ("kernel_size", spec.kernel_size, None), ("stride", spec.stride, ones), *before, *paddings,
        ("dilation", spec.dilation, ones), ("groups", spec.groups, 1), ("bias", spec.bias, bias_default),
        *after,
    ])


def _bank_weights(spec, c_in: int) -> int:
    """Weights of one filter bank of a conv-like layer with ``c_in`` input channels:
    C_out·(C_in/g)·∏k, which is C_in·(C_out/g)·∏k (a transposed conv's) as ``g`` divides both."""
    return spec.out_channels * (c_in // spec.groups) * prod(spec.kernel_size)


def _local_bias_count(bias: str | None, location: int, channels: int) -> int:
    """Biases of a layer with a local ``bias`` option: ``location`` for ``"location"`` (the
    layer's count per position or bank), ``channels`` (C_out) for ``"shared"``, 0 for ``None``."""
    return {"location": location, "shared": channels, None: 0}[bias]


class _ConvPadding:
    """Shared by the specs whose ``padding`` is a conv's (int/tuple/``'same'``/``'valid'``)."""

    def padding_pairs(self) -> tuple[tuple[int, int], ...]:
        """(left, right) padding per spatial dim, ``'same'``/``'valid'`` resolved."""
        return padding_pairs(self.padding, self.kernel_size, self.dilation)


# ----------------------------------------------------------------------------- dense
def dense_mismatch(who: str, in_features: int, shape: tuple[int, ...], *, batched: bool = False,
                   reasons: tuple[str, ...] = (), alternative: str | None = None) -> str:
    """The one explanation of an input whose last dim is not a dense layer's ``in_features``.

    Args:
        who: the layer, e.g. ``"Linear(4096 → 10)"`` or a module's repr.
        in_features: the features the layer expects.
        shape: the input's shape; per sample unless ``batched`` (then dim 0 is the batch).
        reasons: what is known to have produced a flat input, e.g. ``"flatten gives 64·16·16 =
            16384"``; without them a flat input that is ``in_features·r²`` is explained as feature
            maps ``r×`` larger per side.
        alternative: a fix offered before setting ``in_features``, e.g. ``"feed a 3×32×32 input"``.

    Examples:
        >>> dense_mismatch("Linear(4096 → 10)", 4096, (16384,))
        'Linear(4096 → 10) expects 4096 input features, gets 16384: 16384 = 4096·2², as if the feature maps were 2× larger per side. Fix: set in_features=16384 (or None to infer it).'
        >>> dense_mismatch("Linear(784 → 10)", 784, (1, 28, 28))
        'Linear(784 → 10) expects 784 input features in the last dim, gets 28: the input (1, 28, 28) is not flat. Fix: add Flatten() before it (it gives 1·28·28 = 784 features).'
    """
    got = shape[-1]
    sample = shape[1:] if batched else shape
    if len(sample) > 1:  # not flat: Flatten() before the layer is the fix
        flat = prod(sample)
        then = "" if flat == in_features else f", then set in_features={flat} (or None to infer it)"
        return (f"{who} expects {in_features} input features in the last dim, gets {got}: the input "
                f"{shape} is not flat. Fix: add Flatten() before it (it gives {'·'.join(map(str, sample))} "
                f"= {flat} features{then}).")
    if not reasons and got % in_features == 0:
        ratio = isqrt(got // in_features)
        if ratio > 1 and ratio * ratio * in_features == got:
            reasons = (f"{got} = {in_features}·{ratio}², as if the feature maps were {ratio}× larger per side",)
    why = f": {'; '.join(reasons)}" if reasons else ""
    fix = f"set in_features={got} (or None to infer it)"
    if alternative:
        fix = f"{alternative}, or {fix}"
    return f"{who} expects {in_features} input features, gets {got}{why}. Fix: {fix}."


@dataclass(frozen=True)
class DenseSpec:
    """Fully connected layer (PyTorch ``Linear``, Keras ``Dense``): ``y = x Wᵀ + b``.

    Args:
        out_features: outputs.
        in_features: inputs; ``None`` infers it from the last input dim (default: None).
        bias: add a learned bias (default: True).

    Shape:
        ``(*, in_features) -> (*, out_features)``; like torch it acts on the last dim (a
        warning suggests ``Flatten()`` for an input of 3 or more dims per sample, such as a conv's
        ``(C, H, W)``; a ``(tokens, features)`` input is a transformer's, taken as is).
        params = in·out (+ out), MACs = ∏(*)·in·out.

    Examples:
        >>> DenseSpec(10, 4096).analyse((4096,)).params
        40970
    """

    out_features: int
    in_features: int | None = None
    bias: bool = True

    def __post_init__(self):
        _set(self, out_features=positive_int(self.name, "out_features", self.out_features),
             in_features=positive_int(self.name, "in_features", self.in_features, optional=True))
        _check_bool(self.name, "bias", self.bias)

    @property
    def name(self) -> str:
        return "Linear"

    def describe(self) -> str:
        head = f"{'?' if self.in_features is None else self.in_features} → {self.out_features}"
        return _repr(self.name, head, [("bias", self.bias, True)])

    def analyse(self, input_shape) -> LayerReport:
        shape = check_input_shape(self.name, input_shape)
        features = shape[-1]
        if self.in_features is not None and features != self.in_features:
            raise ShapeError(dense_mismatch(self.describe(), self.in_features, shape))
        warnings = ()
        if len(shape) > 2:  # feature maps (C, H, W); a (tokens, features) sequence is read as torch does
            flat = "·".join(map(str, shape))
            warnings = (
                f"{self.describe()} acts on the last dim of the {shape} input (as torch); "
                f"add Flatten() before it to use all {flat} = {prod(shape)} features",
            )
        rows = prod(shape[:-1])
        out = (*shape[:-1], self.out_features)
        return LayerReport(
            kind=self.name,
            input_shape=shape,
            output_shape=out,
            formulas=(f"features: {features} → {self.out_features}",),
            params=features * self.out_features + (self.out_features if self.bias else 0),
            buffers=0,
            macs=rows * features * self.out_features,
            other_ops={"bias_add": rows * self.out_features} if self.bias else {},
            activation_elements=prod(out),
            window=GLOBAL,
            warnings=warnings,
        )


# ----------------------------------------------------------------------------- convolution
@dataclass(frozen=True)
class ConvSpec(_ConvPadding):
    """Convolution (PyTorch ``Conv1d/2d/3d``): the same filter bank at every output position.

    Args:
        ndim: spatial dims, 1, 2 or 3.
        out_channels: filters ``C_out``.
        kernel_size: ``k`` per dim.
        in_channels: ``C_in``; ``None`` infers it (default: None).
        stride: ``s`` (default: 1).
        padding: ``p`` as int/tuple, ``'valid'`` (0) or ``'same'`` (stride 1 only; total
            ``d·(k−1)``, the odd extra on the right as torch) (default: 0).
        dilation: ``d`` (default: 1).
        groups: ``g``, must divide ``C_in`` and ``C_out`` (default: 1).
        bias: one bias per output channel (default: True).
        padding_mode: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'`` (default: 'zeros').

    Shape:
        ``(C_in, *in) -> (C_out, *out)``, ``out = floor((in + 2p − d·(k−1) − 1)/s) + 1``.
        params = C_out·(C_in/g)·∏k (+ C_out); MACs = C_out·∏out·(C_in/g)·∏k.

    Examples:
        >>> ConvSpec(2, 128, 4, stride=2, padding=1, bias=False).analyse((64, 32, 32)).output_shape
        (128, 16, 16)
    """

    ndim: int
    out_channels: int
    kernel_size: int | tuple[int, ...]
    in_channels: int | None = None
    stride: int | tuple[int, ...] = 1
    padding: int | tuple[int, ...] | str = 0
    dilation: int | tuple[int, ...] = 1
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"

    def __post_init__(self):
        who = _windowed_init(self, "ConvSpec")
        _set(self, padding=_conv_padding(self))
        _check_bool(who, "bias", self.bias)
        choice(who, "padding_mode", self.padding_mode, PADDING_MODES)

    @property
    def name(self) -> str:
        return f"Conv{self.ndim}d"

    def describe(self) -> str:
        return _windowed_describe(self, True, after=[("padding_mode", self.padding_mode, "zeros")])

    def analyse(self, input_shape) -> LayerReport:
        _, spatial = _split_input(self, input_shape, self.ndim)
        self._check_padding_mode(spatial)
        return _windowed_report(
            self, input_shape,
            kind_params=lambda c_in, out: _bank_weights(self, c_in),
            bias_count=lambda out: self.out_channels if self.bias else 0,
        )

    def _check_padding_mode(self, spatial) -> None:
        """torch: reflect padding must be < the input size, circular padding ≤ the input size."""
        if self.padding_mode not in ("reflect", "circular"):
            return
        for dim, size, (left, right) in zip(DIM_NAMES[self.ndim], spatial, self.padding_pairs()):
            limit = size - 1 if self.padding_mode == "reflect" else size
            if max(left, right) > limit:
                raise ShapeError(
                    f"{self.describe()}: {dim}: padding_mode='{self.padding_mode}' needs padding "
                    f"≤ {limit} for an input of {size}, gets {max(left, right)}. Fix: less padding, "
                    f"a larger input, or padding_mode='zeros'."
                )


@dataclass(frozen=True)
class LocalSpec(_ConvPadding):
    """Locally connected layer ("unshared convolution"): a conv's windows with a different filter
    bank at every output position.

    Args:
        ndim, out_channels, kernel_size, in_channels, stride, padding, dilation, groups: as
            :class:`ConvSpec` (padding int/tuple/``'same'``/``'valid'``).
        bias: ``"location"`` (one per output channel and position, cuda-convnet / Keras),
            ``"shared"`` (one per channel) or ``None`` (default: "location").

    Shape:
        ``(C_in, *in) -> (C_out, *out)``, ``out`` as a conv.
        params = ∏out·(C_in/g)·∏k·C_out + (C_out·∏out | C_out | 0); MACs = those of the conv
        of the same shape: C_out·∏out·(C_in/g)·∏k.

    Examples:
        >>> LocalSpec(2, 8, 3).analyse((1, 6, 6)).params  # 4·4·(1·9)·8 + 8·4·4
        1280
    """

    ndim: int
    out_channels: int
    kernel_size: int | tuple[int, ...]
    in_channels: int | None = None
    stride: int | tuple[int, ...] = 1
    padding: int | tuple[int, ...] | str = 0
    dilation: int | tuple[int, ...] = 1
    groups: int = 1
    bias: str | None = "location"

    def __post_init__(self):
        who = _windowed_init(self, "LocalSpec")
        _set(self, padding=_conv_padding(self))
        choice(who, "bias", self.bias, LOCAL_BIAS)

    @property
    def name(self) -> str:
        return f"LocallyConnected{self.ndim}d"

    def describe(self) -> str:
        return _windowed_describe(self, "location")

    def analyse(self, input_shape) -> LayerReport:
        return _windowed_report(
            self, input_shape,
            kind_params=lambda c_in, out: prod(out) * _bank_weights(self, c_in),
            bias_count=lambda out: _local_bias_count(self.bias, self.out_channels * prod(out), self.out_channels),
        )


@dataclass(frozen=True)
class TiledSpec(_ConvPadding):
    """Tiled convolution (Le et al. 2010): output positions equal modulo ``tile_size`` share
    weights; ``tile_size=1`` is a conv, ``tile_size=out`` a locally connected layer.

    Args:
        ndim, out_channels, kernel_size: as :class:`ConvSpec`.
        tile_size: weight banks per dim.
        in_channels, stride, padding, dilation, groups: as :class:`ConvSpec`.
        bias: ``"location"`` (one per channel and tile position: ``(C_out, *tile_size)``),
            ``"shared"`` or ``None`` (default: "location").

    Shape:
        ``(C_in, *in) -> (C_out, *out)``, ``out`` as a conv.
        params = ∏tile_size·(C_in/g)·∏k·C_out + (C_out·∏tile_size | C_out | 0);
        MACs = C_out·∏out·(C_in/g)·∏k.
    """

    ndim: int
    out_channels: int
    kernel_size: int | tuple[int, ...]
    tile_size: int | tuple[int, ...]
    in_channels: int | None = None
    stride: int | tuple[int, ...] = 1
    padding: int | tuple[int, ...] | str = 0
    dilation: int | tuple[int, ...] = 1
    groups: int = 1
    bias: str | None = "location"

    def __post_init__(self):
        who = _windowed_init(self, "TiledSpec")
        _set(self, tile_size=ntuple(who, "tile_size", self.tile_size, self.ndim, minimum=1),
             padding=_conv_padding(self))
        choice(who, "bias", self.bias, LOCAL_BIAS)

    @property
    def name(self) -> str:
        return f"TiledConv{self.ndim}d"

    def describe(self) -> str:
        return _windowed_describe(self, "location", before=[("tile_size", self.tile_size, None)])

    def analyse(self, input_shape) -> LayerReport:
        tiles = prod(self.tile_size)
        _, spatial = _split_input(self, input_shape, self.ndim)
        pads = self.padding_pairs()
        out = [Geometry("", n, k, s, p, d).out_size
               for n, k, s, p, d in zip(spatial, self.kernel_size, self.stride, pads, self.dilation)]
        unused = [
            f"{dim}: tile_size {t} > output size {o}: {t - o} weight bank(s) per dim are never used"
            for dim, t, o in zip(DIM_NAMES[self.ndim], self.tile_size, out) if o >= 1 and t > o
        ]
        return _windowed_report(
            self, input_shape,
            kind_params=lambda c_in, out: tiles * _bank_weights(self, c_in),
            bias_count=lambda out: _local_bias_count(self.bias, self.out_channels * tiles, self.out_channels),
            warnings=unused,
        )


@dataclass(frozen=True)
class LowRankLocalSpec(_ConvPadding):
    """Low-rank locally connected layer (Elsayed et al. 2020): ``rank`` basis filter banks (each a
    conv kernel) mixed at every output position by ``rank`` combining weights.

    Args:
        ndim, out_channels, kernel_size: as :class:`ConvSpec`.
        rank: number of basis filter banks ``R``.
        in_channels, stride, padding, dilation, groups: as :class:`ConvSpec`.
        bias: ``"location"`` (one bias per basis bank and channel, ``R·C_out``, mixed by the
            combining weights like the kernels), ``"shared"`` (``C_out``, added after the mix) or
            ``None`` (default: "location").
        combining: ``"factorized"`` (per position the sum of a per-row and a per-column weight
            vector: ``R·Σout`` weights) or ``"full"`` (one vector per position: ``R·∏out``)
            (default: "factorized").
        normalize: ``"softmax"`` (the weights at a position sum to 1), ``"l2"`` (unit norm) or
            ``None`` (default: "softmax").

    Shape:
        ``(C_in, *in) -> (C_out, *out)``, ``out`` as a conv.
        params = R·C_out·(C_in/g)·∏k + (R·Σout | R·∏out) + (R·C_out | C_out | 0);
        MACs = those of a conv with R·C_out outputs: R·C_out·∏out·(C_in/g)·∏k; the mix over the
        bases is ``other_ops["combine"]`` = R·C_out·∏out multiply-adds. The normalisation of the
        combining weights does not depend on the sample and is not counted.

    Examples:
        >>> r = LowRankLocalSpec(2, 8, 3, rank=4).analyse((1, 6, 6))
        >>> r.params  # 4·8·(1·9) + 4·(4 + 4) + 4·8
        352
        >>> r.macs, r.other_ops["combine"]
        (4608, 512)
    """

    ndim: int
    out_channels: int
    kernel_size: int | tuple[int, ...]
    rank: int
    in_channels: int | None = None
    stride: int | tuple[int, ...] = 1
    padding: int | tuple[int, ...] | str = 0
    dilation: int | tuple[int, ...] = 1
    groups: int = 1
    bias: str | None = "location"
    combining: str = "factorized"
    normalize: str | None = "softmax"

    def __post_init__(self):
        who = _windowed_init(self, "LowRankLocalSpec")
        _set(self, rank=positive_int(who, "rank", self.rank),
             padding=_conv_padding(self))
        choice(who, "bias", self.bias, LOCAL_BIAS)
        choice(who, "combining", self.combining, LOWRANK_COMBINING)
        choice(who, "normalize", self.normalize, LOWRANK_NORMALIZE)

    @property
    def name(self) -> str:
        return f"LowRankLocallyConnected{self.ndim}d"

    def describe(self) -> str:
        return _windowed_describe(self, "location", before=[("rank", self.rank, None)], after=[
            ("combining", self.combining, "factorized"), ("normalize", self.normalize, "softmax"),
        ])

    def combining_count(self, out: tuple[int, ...]) -> int:
        """Combining weights for output size ``out``: ``R·Σout`` (factorized) or ``R·∏out`` (full)."""
        return self.rank * (sum(out) if self.combining == "factorized" else prod(out))

    def analyse(self, input_shape) -> LayerReport:
        rank, c_out = self.rank, self.out_channels
        report = _windowed_report(
            self, input_shape,
            kind_params=lambda c_in, out: rank * _bank_weights(self, c_in) + self.combining_count(out),
            bias_count=lambda out: _local_bias_count(self.bias, rank * c_out, c_out),
        )
        positions = prod(report.output_shape[1:])
        other = {"combine": rank * c_out * positions}
        if self.bias is not None:
            other["bias_add"] = (rank if self.bias == "location" else 1) * c_out * positions
        redundant = (
            (f"rank {rank} > {positions} output positions: a rank of {positions} already gives every "
             "position its own filter bank",) if rank > positions else ()
        )
        return replace(report, macs=rank * report.macs, other_ops=other, warnings=report.warnings + redundant)


# ----------------------------------------------------------------------------- transposed conv
@dataclass(frozen=True)
class ConvTransposeSpec:
    """Transposed convolution (PyTorch ``ConvTranspose1d/2d/3d``): the adjoint of a conv; each
    input position scatters ``k`` taps into the output, ``s`` apart per input step.

    Args:
        ndim, out_channels, kernel_size, in_channels, stride, dilation, groups: as :class:`ConvSpec`.
        padding: removes ``p`` from each side of the full output ``(in−1)·s + d·(k−1) + 1``;
            int/tuple only, no strings (default: 0).
        output_padding: extra size on one side, must be < stride or < dilation (default: 0).
        bias: one bias per output channel (default: True).

    Shape:
        ``(C_in, *in) -> (C_out, *out)``, ``out = (in−1)·s − 2p + d·(k−1) + output_padding + 1``.
        params = C_in·(C_out/g)·∏k (+ C_out); MACs = C_in·∏in·(C_out/g)·∏k (the scatter cost,
        ``torch.utils.flop_counter``); ``macs_effective`` leaves out products cropped by padding.

    Examples:
        >>> ConvTransposeSpec(2, 256, 4, stride=2, padding=1).analyse((512, 4, 4)).formulas[0]
        'H: (4 − 1)·2 − 2·1 + 1·(4−1) + 0 + 1 = 8'
    """

    ndim: int
    out_channels: int
    kernel_size: int | tuple[int, ...]
    in_channels: int | None = None
    stride: int | tuple[int, ...] = 1
    padding: int | tuple[int, ...] = 0
    output_padding: int | tuple[int, ...] = 0
    dilation: int | tuple[int, ...] = 1
    groups: int = 1
    bias: bool = True

    def __post_init__(self):
        who = _transposed_init(self, "ConvTransposeSpec")
        _check_bool(who, "bias", self.bias)

    @property
    def name(self) -> str:
        return f"ConvTranspose{self.ndim}d"

    def describe(self) -> str:
        return _windowed_describe(self, True, transposed=True)

    def analyse(self, input_shape) -> LayerReport:
        return _transposed_report(
            self, input_shape,
            kind_params=lambda c_in, spatial: _bank_weights(self, c_in),
            bias_count=lambda out: self.out_channels if self.bias else 0,
        )


@dataclass(frozen=True)
class LocalTransposeSpec:
    """Transposed locally connected layer: the adjoint of a locally connected layer, as
    ``ConvTranspose`` is of ``Conv`` — a different filter bank at every *input* position, each
    scattering ``k`` taps into the output, ``s`` apart per input step.

    Args:
        ndim, out_channels, kernel_size, in_channels, stride, padding, output_padding, dilation,
            groups: as :class:`ConvTransposeSpec`.
        bias: ``"location"`` (one per output channel and output position), ``"shared"`` (one per
            channel) or ``None`` (default: "location").

    Shape:
        ``(C_in, *in) -> (C_out, *out)``, ``out = (in−1)·s − 2p + d·(k−1) + output_padding + 1``.
        params = ∏in·C_in·(C_out/g)·∏k + (C_out·∏out | C_out | 0) (one filter bank per input
        position); MACs = those of the transposed conv of the same shape: C_in·∏in·(C_out/g)·∏k
        (the scatter cost); ``macs_effective`` leaves out products cropped by padding.

    Examples:
        >>> LocalTransposeSpec(2, 8, 3, stride=2).analyse((4, 3, 3)).output_shape
        (8, 7, 7)
    """

    ndim: int
    out_channels: int
    kernel_size: int | tuple[int, ...]
    in_channels: int | None = None
    stride: int | tuple[int, ...] = 1
    padding: int | tuple[int, ...] = 0
    output_padding: int | tuple[int, ...] = 0
    dilation: int | tuple[int, ...] = 1
    groups: int = 1
    bias: str | None = "location"

    def __post_init__(self):
        who = _transposed_init(self, "LocalTransposeSpec")
        choice(who, "bias", self.bias, LOCAL_BIAS)

    @property
    def name(self) -> str:
        return f"LocallyConnectedTranspose{self.ndim}d"

    def describe(self) -> str:
        return _windowed_describe(self, "location", transposed=True)

    def analyse(self, input_shape) -> LayerReport:
        return _transposed_report(
            self, input_shape,
            kind_params=lambda c_in, spatial: prod(spatial) * _bank_weights(self, c_in),
            bias_count=lambda out: _local_bias_count(self.bias, self.out_channels * prod(out), self.out_channels),
        )


def check_output_padding(who: str, output_padding, stride, dilation) -> None:
    """A transposed layer's ``output_padding`` must be < stride or < dilation per dim (as torch): the
    one statement of this check (``stride``/``dilation`` tuples; ``output_padding`` a tuple)."""
    if any(op >= max(s, d) for op, s, d in zip(output_padding, stride, dilation)):
        raise ArgumentError(
            f"{who}: output_padding must be smaller than stride or dilation (as torch). Received: "
            f"output_padding={_show(output_padding)}, stride={_show(stride)}, "
            f"dilation={_show(dilation)}"
        )


def _transposed_init(spec, kind: str) -> str:
    """Validation shared by ConvTranspose/LocalTranspose: the windowed checks, then padding (no
    strings) and output_padding; returns the layer name."""
    who = _windowed_init(spec, kind)
    if isinstance(spec.padding, str):
        raise ArgumentError(
            f"{who}: padding must be an int or a tuple of {spec.ndim} ints (torch's transposed "
            f"convs take no padding strings). Received: padding={spec.padding!r}"
        )
    padding = ntuple(who, "padding", spec.padding, spec.ndim, minimum=0)
    output_padding = ntuple(who, "output_padding", spec.output_padding, spec.ndim, minimum=0)
    check_output_padding(who, output_padding, spec.stride, spec.dilation)
    _set(spec, padding=padding, output_padding=output_padding)
    return who


def _transposed_report(spec, input_shape, *, kind_params, bias_count) -> LayerReport:
    """Shared analyse of ConvTranspose/LocalTranspose: output sizes, formulas, scatter MACs,
    transposed windows; ``kind_params(c_in, spatial_in)`` and ``bias_count(spatial_out)`` count
    the weights and biases."""
    channels, spatial = _split_input(spec, input_shape, spec.ndim)
    channels = _check_channels(spec, channels, spec.in_channels, "in_channels")
    _check_groups(spec, channels, spec.groups)
    dims = DIM_NAMES[spec.ndim]
    rows = list(zip(dims, spatial, spec.kernel_size, spec.stride, spec.padding,
                    spec.output_padding, spec.dilation))
    out = []
    for dim, n, k, s, p, op, d in rows:
        size = transposed_output_size(n, k, s, p, op, d)
        if size < 1:
            raise ShapeError(
                f"{spec.describe()}: {dim}: the output size would be "
                f"{transposed_formula(dim, n, k, s, p, op, d).split(': ', 1)[1]} < 1: padding "
                f"{p} crops more than the full output ({(n - 1) * s + d * (k - 1) + 1} + {op}). "
                f"Fix: less padding or a larger input."
            )
        out.append(size)
    kept = prod(_kept_taps(n, k, s, p, d, o) for (_, n, k, s, p, _, d), o in zip(rows, out))
    per_tap = channels * (spec.out_channels // spec.groups)  # C_in·(C_out/g)
    return LayerReport(
        kind=spec.name,
        input_shape=(channels, *spatial),
        output_shape=(spec.out_channels, *out),
        formulas=tuple(transposed_formula(*row) for row in rows),
        params=kind_params(channels, spatial) + bias_count(out),
        buffers=0,
        macs=per_tap * prod(spatial) * prod(spec.kernel_size),
        other_ops={"bias_add": spec.out_channels * prod(out)} if bias_count(out) else {},
        activation_elements=spec.out_channels * prod(out),
        window=tuple(Window(k, s, p, d, transposed=True) for _, _, k, s, p, _, d in rows),
        warnings=tuple(w for dim, _, k, s, _, _, d in rows for w in _scatter_warnings(dim, k, s, d)),
        macs_effective=per_tap * kept,
    )


def _floor_sum(n: int, m: int, a: int, b: int) -> int:
    """``Σ_{i=0}^{n−1} floor((a·i + b)/m)`` for ``n ≥ 0``, ``m ≥ 1``, any ``a, b``, in O(log)
    steps (the Euclid-like recursion of the AtCoder Library's ``floor_sum``)."""
    total = 0
    while True:
        if a < 0 or a >= m:
            total += n * (n - 1) // 2 * (a // m)
            a %= m
        if b < 0 or b >= m:
            total += n * (b // m)
            b %= m
        y_max = a * n + b
        if y_max < m:
            return total
        n, b, m, a = y_max // m, y_max % m, a, m


def _kept_taps(in_size: int, kernel: int, stride: int, padding: int, dilation: int, out: int) -> int:
    """(input position, tap) pairs of one dim whose product lands inside the cropped output:
    ``0 ≤ i·s − p + t·d < out``, counted in closed form (no loop over positions: sizes can be
    huge). For each tap ``t`` the inputs ``i`` with ``i·s < c − t·d`` number
    ``clamp(ceil((c − t·d)/s), 0, in)``; summed over ``t`` for ``c = out + p`` minus ``c = p``."""

    def below(c: int) -> int:
        full = min(max(-(-(c - (in_size - 1) * stride) // dilation), 0), kernel)  # taps with all inputs
        some = min(max(-(-c // dilation), 0), kernel)  # taps with at least one input
        partial = _floor_sum(some - full, stride, -dilation, c + stride - 1 - dilation * full)
        return in_size * full + partial

    return below(out + padding) - below(padding)


def _scatter_warnings(dim: str, kernel: int, stride: int, dilation: int) -> list[str]:
    """Uneven overlap of a transposed conv: outputs receiving different numbers of taps.

    Output residue ``r`` (mod s) receives the taps with ``t·d ≡ r``: ``t·d mod s`` cycles through
    the ``s/g`` multiples of ``g = gcd(s, d)``, so those residues get ``floor`` or ``ceil`` of
    ``k/(s/g)`` taps and the others none (closed form: strides can be huge).
    """
    period = stride // gcd(stride, dilation)
    reached = min(kernel, period)  # residues that receive at least one tap
    counts_min = 0 if reached < stride else kernel // period
    counts_max = -(-kernel // period)
    if counts_min == counts_max:
        return []
    if counts_min == 0:
        empty = stride - reached
        return [
            f"{dim}: stride {stride} with kernel {kernel} (dilation {dilation}): {empty} of every "
            f"{stride} outputs receive no input (only the bias)"
        ]
    return [
        f"{dim}: kernel {kernel} is not a multiple of stride {stride}: outputs receive "
        f"{counts_min} or {counts_max} taps in turn (uneven overlap, checkerboard artifacts: "
        f"Odena et al. 2016)"
    ]


# ----------------------------------------------------------------------------- pooling
@dataclass(frozen=True)
class PoolSpec:
    """Max or average pooling (PyTorch ``MaxPool*d`` / ``AvgPool*d``).

    Args:
        ndim: spatial dims, 1, 2 or 3.
        op: ``"max"`` or ``"avg"``.
        kernel_size: ``k``.
        stride: ``s``; ``None`` means ``kernel_size`` (default: None).
        padding: implicit padding, at most ``k // 2`` (as torch) (default: 0).
        dilation: max pooling only (default: 1).
        ceil_mode: round the output size up; a window starting in the right padding is dropped
            (default: False).
        count_include_pad: average pooling divides by the window including padding (default: True).

    Shape:
        ``(C, *in) -> (C, *out)``, ``out = floor((in + 2p − d·(k−1) − 1)/s) + 1`` (or ceil).
        No params, no MACs; max: ``compare`` = C·∏out·(∏k − 1); avg: ``add`` = C·∏out·(∏k − 1),
        ``divide`` = C·∏out.
    """

    ndim: int
    op: str
    kernel_size: int | tuple[int, ...]
    stride: int | tuple[int, ...] | None = None
    padding: int | tuple[int, ...] = 0
    dilation: int | tuple[int, ...] = 1
    ceil_mode: bool = False
    count_include_pad: bool = True

    def __post_init__(self):
        check_ndim("PoolSpec", self.ndim)
        choice("PoolSpec", "op", self.op, POOL_OPS)
        who = self.name
        kernel = ntuple(who, "kernel_size", self.kernel_size, self.ndim, minimum=1)
        stride = kernel if self.stride is None else ntuple(who, "stride", self.stride, self.ndim, minimum=1)
        padding = ntuple(who, "padding", self.padding, self.ndim, minimum=0)
        dilation = ntuple(who, "dilation", self.dilation, self.ndim, minimum=1)
        if self.op == "avg" and dilation != (1,) * self.ndim:
            raise ArgumentError(f"{who}: average pooling has no dilation (as torch). Received: "
                                f"dilation={self.dilation!r}")
        if any(p > k // 2 for p, k in zip(padding, kernel)):
            raise ArgumentError(
                f"{who}: padding must be at most half the kernel size (padding ≤ kernel_size // 2, "
                f"as torch). Received: padding={_show(padding)}, kernel_size={_show(kernel)}"
            )
        _check_bool(who, "ceil_mode", self.ceil_mode)
        _check_bool(who, "count_include_pad", self.count_include_pad)
        _set(self, kernel_size=kernel, stride=stride, padding=padding, dilation=dilation)

    @property
    def name(self) -> str:
        return f"{self.op.capitalize()}Pool{self.ndim}d"

    def padding_pairs(self) -> tuple[tuple[int, int], ...]:
        return tuple((p, p) for p in self.padding)

    def describe(self) -> str:
        return _repr(self.name, f"kernel_size={_show(self.kernel_size)}", [
            ("stride", self.stride, self.kernel_size), ("padding", self.padding, (0,) * self.ndim),
            ("dilation", self.dilation, (1,) * self.ndim), ("ceil_mode", self.ceil_mode, False),
            ("count_include_pad", self.count_include_pad, True if self.op == "avg" else self.count_include_pad),
        ])

    def analyse(self, input_shape) -> LayerReport:
        channels, spatial = _split_input(self, input_shape, self.ndim)
        if self.op == "avg" and self.ndim == 3 and any(n < k for n, k in zip(spatial, self.kernel_size)):
            raise ShapeError(
                f"{self.describe()}: the input {'×'.join(map(str, spatial))} is smaller than the kernel "
                f"{'×'.join(map(str, self.kernel_size))}: torch's avg_pool3d needs every input size ≥ "
                f"kernel_size (padding does not count). Fix: a smaller kernel or a larger input."
            )
        geo = _geometries(self, spatial, self.kernel_size, self.stride, self.padding_pairs(),
                          self.dilation, self.ceil_mode)
        out = tuple(g.out_size for g in geo)
        outputs = channels * prod(out)
        taps = prod(self.kernel_size)
        other = ({"compare": outputs * (taps - 1)} if self.op == "max"
                 else {"add": outputs * (taps - 1), "divide": outputs})
        return LayerReport(
            kind=self.name,
            input_shape=(channels, *spatial),
            output_shape=(channels, *out),
            formulas=tuple(g.formula() for g in geo),
            params=0,
            buffers=0,
            macs=0,
            other_ops=other,
            activation_elements=outputs,
            window=tuple(Window(g.kernel_size, g.stride, g.padding[0], g.dilation) for g in geo),
            warnings=tuple(w for g in geo for w in g.warnings()),
        )


@dataclass(frozen=True)
class AdaptivePoolSpec:
    """Adaptive max/average pooling to a fixed output size (PyTorch ``AdaptiveAvgPool2d``), and
    global pooling (``output_size=1, flatten_output=True``: ``(C, H, W) -> (C,)``).

    Window ``i`` covers ``[floor(i·in/out), ceil((i+1)·in/out))``, so windows are uneven when
    ``in mod out ≠ 0``.

    Args:
        ndim: spatial dims, 1, 2 or 3; ``None`` takes them from the input (``len(input) − 1``).
        op: ``"max"`` or ``"avg"``.
        output_size: int or tuple; a ``None`` entry keeps that input size (as torch).
        flatten_output: drop the spatial dims after pooling (default: False).
    """

    ndim: int | None
    op: str
    output_size: int | tuple[int | None, ...]
    flatten_output: bool = False

    def __post_init__(self):
        if self.ndim is not None:
            check_ndim("AdaptivePoolSpec", self.ndim)
        choice("AdaptivePoolSpec", "op", self.op, POOL_OPS)
        who = f"Adaptive{self.op.capitalize()}Pool{_suffix(self.ndim)}"
        size = self.output_size
        if is_int(size) and self.ndim is not None:
            size = (int(size),) * self.ndim
        rank_ok = isinstance(size, (tuple, list)) and (len(size) == self.ndim or self.ndim is None and 1 <= len(size) <= 3)
        if not (is_int(size) and size > 0) and (
                not rank_ok or not all(v is None or (is_int(v) and v > 0) for v in size)):
            count = "1 to 3" if self.ndim is None else self.ndim
            raise ArgumentError(
                f"{who}: output_size must be a positive int or a tuple of {count} positive ints "
                f"(or None to keep a dim). Received: output_size={self.output_size!r}"
            )
        _check_bool(who, "flatten_output", self.flatten_output)
        _set(self, output_size=int(size) if is_int(size) else tuple(None if v is None else int(v) for v in size))

    @property
    def name(self) -> str:
        ones = self.output_size == 1 or self.output_size == (1,) * len(self.output_size)
        kind = "Global" if self.flatten_output and ones else "Adaptive"
        return f"{kind}{self.op.capitalize()}Pool{_suffix(self.ndim)}"

    def describe(self) -> str:
        if self.name.startswith("Global"):
            return f"{self.name}()"
        return _repr(self.name, f"output_size={_show(self.output_size)}",
                     [("flatten_output", self.flatten_output, False)])

    def analyse(self, input_shape) -> LayerReport:
        if self.ndim is None:
            return _with_input_ndim(self, input_shape).analyse(input_shape)
        channels, spatial = _split_input(self, input_shape, self.ndim)
        out = tuple(n if o is None else o for n, o in zip(spatial, self.output_size))
        dims = DIM_NAMES[self.ndim]
        stats = [_adaptive_stats(n, o) for n, o in zip(spatial, out)]
        formulas, warnings, geometry = [], [], []
        for dim, n, o, (sizes, steps, _) in zip(dims, spatial, out, stats):
            formulas.append(f"{dim}: output_size = {o} (window i: floor(i·{n}/{o}) … ceil((i+1)·{n}/{o}), "
                            f"size{'s' if len(sizes) > 1 else ''} {'/'.join(map(str, sizes))})")
            if o > n:
                warnings.append(f"{dim}: output_size {o} > input {n}: windows repeat input {UNITS[dim]}")
            if len(sizes) > 1 or len(steps) > 1:
                warnings.append(
                    f"{dim}: {n} → {o}: windows are uneven (sizes {'/'.join(map(str, sizes))}, steps "
                    f"{'/'.join(map(str, steps))}); the receptive field uses window {sizes[-1]} and "
                    f"stride {steps[-1]} (an upper bound)"
                )
            geometry.append(Window(sizes[-1], steps[-1], 0))
        if all(o == 1 for o in out):
            window = GLOBAL
        else:
            window = tuple(geometry)
        outputs = channels * prod(out)
        read = channels * prod(total for _, _, total in stats)  # Σ over outputs of the window size
        other = ({"compare": read - outputs} if self.op == "max" else {"add": read - outputs, "divide": outputs})
        shape = (outputs,) if self.flatten_output else (channels, *out)
        if self.flatten_output:
            formulas.append(f"features: {channels}·{'·'.join(map(str, out))} = {outputs}")
        return LayerReport(
            kind=self.name,
            input_shape=(channels, *spatial),
            output_shape=shape,
            formulas=tuple(formulas),
            params=0,
            buffers=0,
            macs=0,
            other_ops=other,
            activation_elements=outputs,
            window=window,
            warnings=tuple(warnings),
        )


def _adaptive_stats(in_size: int, out_size: int) -> tuple[list[int], list[int], int]:
    """Adaptive windows ``[floor(i·n/o), ceil((i+1)·n/o))`` of one dim in closed form (output
    sizes can be huge): the sorted distinct window sizes, the sorted distinct steps between window
    starts (``[n]`` for one window) and the sum of the sizes.

    With ``r = i·n mod o`` (every multiple of ``g = gcd(n, o)`` below ``o``), window ``i`` has size
    ``ceil((r + n)/o)`` and the next start is ``floor((r + n)/o)`` further; both take consecutive
    values. Equal to :func:`~layerlab.arith.sizes.adaptive_windows` (tested for n < 60, o < 80).
    """
    n, o = in_size, out_size
    g = gcd(n, o)
    sizes = list(range(-(-n // o), -(-(o - g + n) // o) + 1))
    if o == 1:
        steps = [n]
    elif g > 1:
        steps = list(range(n // o, (o - g + n) // o + 1))
    else:  # the steps come from i < o − 1: residue (−n mod o) is missed
        steps = [n // o] + ([n // o + 1] if n % o >= 2 else [])
    total = _floor_sum(o, o, n, n + o - 1) - _floor_sum(o, o, n, 0)
    return sizes, steps, total


# ----------------------------------------------------------------------------- normalisation
@dataclass(frozen=True)
class NormSpec:
    """Batch, layer, group or instance normalisation: ``y = (x − μ)/sqrt(σ² + eps)·γ + β``.

    Args:
        kind: ``"batch"``, ``"layer"``, ``"group"`` or ``"instance"``.
        num_features: channels ``C`` (batch/group/instance); ``None`` infers it (default: None).
        normalized_shape: layer norm's trailing dims; ``None`` means the whole per-sample shape
            (default: None).
        num_groups: group norm's groups, must divide ``C`` (default: None).
        affine: learn ``γ`` and ``β`` (default: True).
        track_running_stats: keep running mean/var buffers (batch/instance) (default: True).
        ndim: spatial dims of batch/instance norm (``BatchNorm2d``: 2), checked against the input;
            ``None`` accepts any (default: None).

    Counts:
        params: batch/group/instance 2·C, layer 2·∏normalized_shape (when ``affine``).
        buffers: batch/instance with ``track_running_stats``: running_mean C + running_var C +
        num_batches_tracked 1. other_ops: ``normalise`` (one per element) and ``affine`` (one per
        element when ``affine``). No MACs.
    """

    kind: str
    num_features: int | None = None
    normalized_shape: int | tuple[int, ...] | None = None
    num_groups: int | None = None
    affine: bool = True
    track_running_stats: bool = True
    ndim: int | None = None

    def __post_init__(self):
        choice("NormSpec", "kind", self.kind, NORM_KINDS)
        who = self.name
        _set(self, num_features=positive_int(who, "num_features", self.num_features, optional=True))
        shape = self.normalized_shape
        if is_int(shape):
            shape = (shape,)
        if shape is not None and (not isinstance(shape, (tuple, list)) or not shape
                                  or not all(is_int(v) and v > 0 for v in shape)):
            raise ArgumentError(f"{who}: normalized_shape must be a positive int or a tuple of positive "
                                f"ints. Received: normalized_shape={self.normalized_shape!r}")
        if self.kind == "group":
            _set(self, num_groups=positive_int(who, "num_groups", self.num_groups))
            divides(who, self.num_groups, self.num_features, "num_features", "num_groups")
        if self.ndim is not None:
            check_ndim(who, self.ndim)
        _check_bool(who, "affine", self.affine)
        _check_bool(who, "track_running_stats", self.track_running_stats)
        _set(self, normalized_shape=None if shape is None else tuple(int(v) for v in shape))

    @property
    def name(self) -> str:
        base = {"batch": "BatchNorm", "layer": "LayerNorm", "group": "GroupNorm", "instance": "InstanceNorm"}
        suffix = f"{self.ndim}d" if self.ndim is not None and self.kind in ("batch", "instance") else ""
        return base[self.kind] + suffix

    def describe(self) -> str:
        if self.kind == "layer":
            head = "?" if self.normalized_shape is None else _show(self.normalized_shape)
        elif self.kind == "group":
            head = f"{self.num_groups}, {'?' if self.num_features is None else self.num_features}"
        else:
            head = "?" if self.num_features is None else str(self.num_features)
        stats = self.kind in ("batch", "instance")
        return _repr(self.name, head, [
            ("affine", self.affine, True),
            ("track_running_stats", self.track_running_stats, True if stats else self.track_running_stats),
        ])

    def analyse(self, input_shape) -> LayerReport:
        shape = check_input_shape(self.name, input_shape)
        channels = shape[0]
        if self.kind == "layer":
            normalized = self.normalized_shape or shape
            if shape[len(shape) - len(normalized):] != normalized or len(normalized) > len(shape):
                raise ShapeError(
                    f"{self.describe()} normalises the trailing dims {normalized}, but the input is "
                    f"{shape}. Fix: normalized_shape={shape[-len(normalized):] if len(normalized) <= len(shape) else shape}."
                )
            params = 2 * prod(normalized) if self.affine else 0
            buffers = 0
            formula = f"shape kept; statistics over the trailing {'×'.join(map(str, normalized))}"
        else:
            self._check_dims(shape)
            _check_channels(self, channels, self.num_features, "num_features")
            if self.kind == "group" and channels % self.num_groups:
                raise ShapeError(
                    f"{self.describe()}: num_groups={self.num_groups} must divide the {channels} "
                    f"input channels. Fix: a divisor of {channels}."
                )
            params = 2 * channels if self.affine else 0
            stats = self.kind in ("batch", "instance") and self.track_running_stats
            buffers = 2 * channels + 1 if stats else 0
            if self.kind == "group":
                over = f"each of {self.num_groups} groups of {channels // self.num_groups} channels"
            else:
                over = {"batch": "the batch and spatial dims per channel",
                        "instance": "the spatial dims per sample and channel"}[self.kind]
            formula = f"shape kept; statistics over {over}"
        elements = prod(shape)
        other = {"normalise": elements}
        if self.affine:
            other["affine"] = elements
        return LayerReport(
            kind=self.name, input_shape=shape, output_shape=shape, formulas=(formula,), params=params,
            buffers=buffers, macs=0, other_ops=other, activation_elements=elements, window=None,
        )

    def _check_dims(self, shape) -> None:
        """Batch/instance norm with a known ``ndim`` need (C, *spatial) with ndim spatial dims
        (BatchNorm1d also takes (C,)); instance norm needs spatial dims."""
        if self.ndim is not None and self.kind in ("batch", "instance"):
            allowed = (1, 2) if (self.kind, self.ndim) == ("batch", 1) else (self.ndim + 1,)
            if len(shape) not in allowed:
                raise ShapeError(
                    f"{self.describe()} expects a per-sample input with "
                    f"{' or '.join(map(str, allowed))} dims, gets {shape}."
                )
        if self.kind == "instance" and len(shape) < 2:
            raise ShapeError(f"{self.describe()} needs spatial dims (C, L, ...), gets {shape}.")


# ----------------------------------------------------------------------------- shape-only layers
@dataclass(frozen=True)
class FlattenSpec:
    """Flatten dims ``start_dim..end_dim`` (torch dims: dim 0 is the batch and cannot be flattened
    here, since shapes are per sample).

    Args:
        start_dim: first dim to flatten (default: 1).
        end_dim: last dim to flatten (default: -1).

    Shape:
        ``(C, H, W) -> (C·H·W,)`` with the defaults.
    """

    start_dim: int = 1
    end_dim: int = -1

    def __post_init__(self):
        for key in ("start_dim", "end_dim"):
            value = getattr(self, key)
            if not is_int(value):
                raise ArgumentError(f"Flatten: {key} must be an int. Received: {key}={value!r}")

    @property
    def name(self) -> str:
        return "Flatten"

    def describe(self) -> str:
        return _repr(self.name, "", [("start_dim", self.start_dim, 1), ("end_dim", self.end_dim, -1)])

    def analyse(self, input_shape) -> LayerReport:
        shape = check_input_shape(self.name, input_shape)
        full = (1, *shape)  # torch dims, batch first
        rank = len(full)
        start, end = (d + rank if d < 0 else d for d in (self.start_dim, self.end_dim))
        if not (0 <= start < rank and 0 <= end < rank):
            raise ShapeError(f"{self.describe()}: dims out of range for the per-sample input {shape} "
                             f"(torch dims 0..{rank - 1}, 0 = batch).")
        if start == 0:
            raise ArgumentError(f"{self.describe()}: start_dim=0 flattens the batch dimension; shapes "
                                f"here are per sample. Fix: start_dim=1.")
        if end < start:
            raise ShapeError(f"{self.describe()}: start_dim cannot come after end_dim (dims {start} > "
                             f"{end} for the input {shape}).")
        merged = full[start:end + 1]
        out = (*full[1:start], prod(merged), *full[end + 1:])
        formula = f"features: {'·'.join(map(str, merged))} = {prod(merged)}"
        return LayerReport(
            kind=self.name, input_shape=shape, output_shape=out, formulas=(formula,), params=0,
            buffers=0, macs=0, other_ops={}, activation_elements=prod(out),
            window=None if out == shape else GLOBAL,
        )


@dataclass(frozen=True)
class ElementwiseSpec:
    """A shape-preserving layer: activation, dropout, identity.

    Args:
        name: the layer name, e.g. ``"ReLU"``, ``"Dropout"``.
        params: trainable parameters, e.g. ``PReLU``'s slopes (default: 0).
        ops_per_element: counted in ``other_ops["activation"]`` (default: 1; 0 for identity).
    """

    name: str
    params: int = 0
    ops_per_element: int = 1

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ArgumentError(f"ElementwiseSpec: name must be a non-empty string. Received: name={self.name!r}")
        for key in ("params", "ops_per_element"):
            value = getattr(self, key)
            if not is_int(value) or value < 0:
                raise ArgumentError(f"{self.name}: {key} must be a non-negative integer. Received: "
                                    f"{key}={value!r}")

    def describe(self) -> str:
        return f"{self.name}()"

    def analyse(self, input_shape) -> LayerReport:
        shape = check_input_shape(self.name, input_shape)
        elements = prod(shape)
        return LayerReport(
            kind=self.name, input_shape=shape, output_shape=shape, formulas=("shape kept",),
            params=self.params, buffers=0, macs=0,
            other_ops={"activation": elements * self.ops_per_element} if self.ops_per_element else {},
            activation_elements=elements, window=None,
        )


@dataclass(frozen=True)
class UpsampleSpec:
    """Upsampling by interpolation (PyTorch ``Upsample`` / ``F.interpolate``).

    Args:
        ndim: spatial dims, 1, 2 or 3; ``None`` takes them from the input (``len(input) − 1``).
        size: output size (int or tuple); exactly one of ``size`` and ``scale_factor`` (default: None).
        scale_factor: multiplier (number or tuple); ``out = floor(in·scale_factor)`` as torch
            (default: None).
        mode: ``'nearest'``, ``'nearest-exact'``, ``'linear'`` (1d), ``'bilinear'``/``'bicubic'``
            (2d), ``'trilinear'`` (3d) or ``'area'`` (default: 'nearest').

    Counts:
        No params, no MACs; ``interpolate`` = output elements × taps (nearest 1, linear 2 per
        dim, bicubic 16); ``area`` counts ``add``/``divide`` like adaptive average pooling.
        Receptive field: integer factors only (nearest = transposed window k=s; linear modes the
        bilinear kernel k = 2s − s mod 2, padding ceil((s−1)/2)).
    """

    ndim: int | None
    size: int | tuple[int, ...] | None = None
    scale_factor: float | tuple[float, ...] | None = None
    mode: str = "nearest"

    def __post_init__(self):
        if self.ndim is not None:
            check_ndim("UpsampleSpec", self.ndim)
        who = self.name
        if (self.size is None) == (self.scale_factor is None):
            raise ArgumentError(f"{who}: give exactly one of size and scale_factor. Received: "
                                f"size={self.size!r}, scale_factor={self.scale_factor!r}")
        if self.size is not None:
            if self.ndim is not None:
                _set(self, size=ntuple(who, "size", self.size, self.ndim, minimum=1))
            elif isinstance(self.size, (tuple, list)) and 1 <= len(self.size) <= 3:
                _set(self, size=ntuple(who, "size", self.size, len(self.size), minimum=1))
            elif is_int(self.size):
                _set(self, size=positive_int(who, "size", self.size))
            else:
                raise ArgumentError(f"{who}: size must be a positive int or a tuple of 1 to 3 positive ints. "
                                    f"Received: size={self.size!r}")
        else:
            scale = self.scale_factor
            number = isinstance(scale, (int, float)) and not isinstance(scale, bool)
            if number and self.ndim is not None:
                scale = (scale,) * self.ndim
            if number and self.ndim is None:
                scale = (scale,)
            if (not isinstance(scale, (tuple, list)) or (self.ndim is not None and len(scale) != self.ndim)
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in scale)):
                raise ArgumentError(f"{who}: scale_factor must be a positive number or a tuple of "
                                    f"{self.ndim or 'ndim'} positive numbers. Received: "
                                    f"scale_factor={self.scale_factor!r}")
            _set(self, scale_factor=float(scale[0]) if number and self.ndim is None else tuple(float(v) for v in scale))
        choice(who, "mode", self.mode, UPSAMPLE_MODES)
        needed = UPSAMPLE_MODE_NDIM.get(self.mode)
        if needed is not None and self.ndim is not None and needed != self.ndim:
            raise ArgumentError(f"{who}: mode='{self.mode}' works on {needed}-d inputs only (as torch). "
                                f"Received: mode='{self.mode}' with ndim={self.ndim}")

    @property
    def name(self) -> str:
        return "Upsample"

    def describe(self) -> str:
        key, value = ("size", self.size) if self.size is not None else ("scale_factor", self.scale_factor)
        return _repr(self.name, f"{key}={_show(value)}", [("mode", self.mode, "nearest")])

    def analyse(self, input_shape) -> LayerReport:
        if self.ndim is None:
            return _with_input_ndim(self, input_shape).analyse(input_shape)
        channels, spatial = _split_input(self, input_shape, self.ndim)
        dims = DIM_NAMES[self.ndim]
        if self.size is not None:
            out = self.size
            formulas = tuple(f"{dim}: size = {o}" for dim, o in zip(dims, out))
        else:
            out = tuple(int(n * f // 1) for n, f in zip(spatial, self.scale_factor))
            formulas = tuple(f"{dim}: floor({n}·{f:g}) = {o}" for dim, n, f, o in
                             zip(dims, spatial, self.scale_factor, out))
            for dim, n, f, o in zip(dims, spatial, self.scale_factor, out):
                if o < 1:
                    raise ShapeError(f"{self.describe()}: {dim}: floor({n}·{f:g}) = {o} < 1. Fix: a "
                                     f"larger scale_factor or input.")
        outputs = channels * prod(out)
        if self.mode == "area":
            read = channels * prod(_adaptive_stats(n, o)[2] for n, o in zip(spatial, out))
            other = {"add": read - outputs, "divide": outputs}
        else:
            taps = {"nearest": 1, "nearest-exact": 1, "bicubic": 16}.get(self.mode, 2 ** self.ndim)
            other = {"interpolate": outputs * taps}
        window, warnings = self._window(spatial, out)
        return LayerReport(
            kind=self.name, input_shape=(channels, *spatial), output_shape=(channels, *out),
            formulas=formulas, params=0, buffers=0, macs=0, other_ops=other,
            activation_elements=outputs, window=window, warnings=warnings,
        )

    def _window(self, spatial, out):
        """Transposed windows for integer factors of nearest and (bi/tri)linear modes."""
        integer = all(o % n == 0 for n, o in zip(spatial, out))
        if integer and self.mode in ("nearest", "nearest-exact"):
            return tuple(Window(o // n, o // n, 0, transposed=True) for n, o in zip(spatial, out)), ()
        if integer and self.mode in ("linear", "bilinear", "trilinear"):
            factors = [o // n for n, o in zip(spatial, out)]
            return tuple(Window(2 * f - f % 2, f, f // 2, transposed=True) for f in factors), ()
        return None, (f"{self.describe()}: the receptive field is not tracked through this layer "
                      f"(non-integer factor or mode '{self.mode}'); later jumps are not exact",)


# ----------------------------------------------------------------------------- factories
def elementwise(name: str) -> ElementwiseSpec:
    """The spec of a parameter-free shape-preserving layer named like its torch class.

    ``ops_per_element`` comes from the table of :mod:`layerlab.arith.elementwise`: one
    ``activation`` op per element for every function (ReLU, GELU, Softmax, Dropout, ...), none for
    ``Identity``.

    Examples:
        >>> elementwise("ReLU").analyse((4, 2)).other_ops
        {'activation': 8}
    """
    return ElementwiseSpec(name=name, ops_per_element=ops_per_element(name))


def global_pool(op: str, ndim: int | None = None) -> AdaptivePoolSpec:
    """Global max/average pooling: ``(C, *spatial) -> (C,)`` (``ndim=None``: from the input).

    Examples:
        >>> global_pool("avg").analyse((64, 7, 7)).output_shape
        (64,)
    """
    return AdaptivePoolSpec(ndim=ndim, op=op, output_size=1, flatten_output=True)


def upsample(size=None, scale_factor=None, mode: str = "nearest", ndim: int | None = None) -> UpsampleSpec:
    """An :class:`UpsampleSpec` whose ``ndim`` may come from the input (torch ``Upsample`` order).

    Examples:
        >>> upsample(scale_factor=2).analyse((3, 8, 8)).output_shape
        (3, 16, 16)
    """
    return UpsampleSpec(ndim=ndim, size=size, scale_factor=scale_factor, mode=mode)
