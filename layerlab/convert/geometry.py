"""Window geometry of conv-like layers, read from torch and layerlab modules.

One frozen :class:`Geometry` describes every member of the conv family (``Conv*``,
``ConvTranspose*``, ``LocallyConnected*``, ``TiledConv*``) with torch's argument names, its
padding resolved to explicit ``(left, right)`` amounts per spatial dimension. The index
arithmetic in :mod:`layerlab.convert.entries` and the conversions read only this.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from layerlab.errors import ArgumentError, ShapeError

__all__ = ["Geometry", "geometry_of", "check_input", "conv_output_size", "PADDING_MODES"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


@dataclass(frozen=True)
class Geometry:
    """Everything that fixes the connectivity of a conv-like layer.

    Attributes:
        kind: ``"conv"``, ``"transpose"``, ``"local"`` or ``"tiled"``.
        in_channels, out_channels, groups: as in torch.
        kernel_size, stride, dilation: one int per spatial dimension.
        pad_left, pad_right: padding before / after each spatial dimension (``'same'`` resolved
            as torch does: ``left = dilation·(kernel−1) // 2``, the odd one on the right).
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
        output_padding: transposed conv only (zeros otherwise).
        tile_size: tiled conv only (``None`` otherwise).
        input_size: spatial input size stored by the layer (local and tiled layers), else ``None``.
    """

    kind: str
    in_channels: int
    out_channels: int
    groups: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad_left: tuple[int, ...]
    pad_right: tuple[int, ...]
    padding_mode: str = "zeros"
    output_padding: tuple[int, ...] = ()
    tile_size: tuple[int, ...] | None = None
    input_size: tuple[int, ...] | None = None

    @property
    def ndim(self) -> int:
        return len(self.kernel_size)

    def output_size(self, in_size: tuple[int, ...]) -> tuple[int, ...]:
        """Spatial output size for a spatial input size (conv or transposed formula)."""
        if self.kind == "transpose":
            return tuple(
                (n - 1) * s - pl - pr + d * (k - 1) + op + 1
                for n, s, pl, pr, d, k, op in zip(in_size, self.stride, self.pad_left, self.pad_right,
                                                  self.dilation, self.kernel_size, self.output_padding)
            )
        return conv_output_size(in_size, self.kernel_size, self.stride, self.pad_left, self.pad_right,
                                self.dilation)


def conv_output_size(in_size, kernel_size, stride, pad_left, pad_right, dilation) -> tuple[int, ...]:
    """``out = floor((in + left + right − dilation·(kernel − 1) − 1) / stride) + 1`` per dimension."""
    return tuple(
        (n + pl + pr - d * (k - 1) - 1) // s + 1
        for n, k, s, pl, pr, d in zip(in_size, kernel_size, stride, pad_left, pad_right, dilation)
    )


def _ints(value, ndim: int, name: str, who: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * ndim
    if isinstance(value, (tuple, list)) and len(value) == ndim and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return tuple(int(v) for v in value)
    raise ArgumentError(f"{who}: {name} must be an int or {ndim} ints. Received: {name}={value!r}")


def _padding(padding, kernel, dilation, ndim: int, who: str):
    if padding == "valid":
        return (0,) * ndim, (0,) * ndim
    if padding == "same":
        total = tuple(d * (k - 1) for d, k in zip(dilation, kernel))
        left = tuple(t // 2 for t in total)
        return left, tuple(t - l for t, l in zip(total, left))
    pad = _ints(padding, ndim, "padding", who)
    return pad, pad


def _torch_kind(module) -> str | None:
    if isinstance(module, torch.nn.modules.conv._ConvTransposeNd):
        return "transpose"
    if isinstance(module, torch.nn.modules.conv._ConvNd):
        return "conv"
    return None


def _spec_kind(spec) -> str | None:
    name = type(spec).__name__
    return {"ConvSpec": "conv", "ConvTransposeSpec": "transpose", "LocalSpec": "local",
            "TiledSpec": "tiled"}.get(name)


def geometry_of(module, who: str | None = None) -> Geometry | None:
    """The :class:`Geometry` of a conv-like module, or ``None`` when it is not conv-like.

    Reads torch's ``_ConvNd`` attributes for ``torch.nn`` convs (and subclasses) and the
    ``layer_spec()`` of layerlab modules (Contract 2 of ``docs/ARCHITECTURE.md``) plus the
    module's ``padding_mode``, ``input_size`` and ``tile_size`` attributes.
    """
    who = who or repr(module)
    kind = _torch_kind(module)
    if kind is not None:
        attrs = module
        ndim = len(module.kernel_size)
    else:
        spec_fn = getattr(module, "layer_spec", None)
        if spec_fn is None:
            return None
        attrs = spec_fn()
        kind = _spec_kind(attrs)
        if kind is None:
            return None
        ndim = attrs.ndim
    kernel = _ints(attrs.kernel_size, ndim, "kernel_size", who)
    stride = _ints(attrs.stride, ndim, "stride", who)
    dilation = _ints(attrs.dilation, ndim, "dilation", who)
    pad_left, pad_right = _padding(attrs.padding, kernel, dilation, ndim, who)
    in_channels = attrs.in_channels
    if in_channels is None:
        in_channels = getattr(module, "in_channels", None)
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ArgumentError(
            f"{who}: in_channels is not known yet (lazy layer). Received: in_channels={in_channels!r}; "
            "run one forward pass first so the layer materialises its weight"
        )
    padding_mode = getattr(module, "padding_mode", getattr(attrs, "padding_mode", "zeros"))
    if padding_mode not in PADDING_MODES:
        raise ArgumentError(f"{who}: unknown padding_mode. Received: padding_mode={padding_mode!r}; "
                            f"expected one of {PADDING_MODES}")
    input_size = getattr(module, "input_size", None)
    tile = getattr(attrs, "tile_size", None)
    return Geometry(
        kind=kind,
        in_channels=int(in_channels),
        out_channels=int(attrs.out_channels),
        groups=int(attrs.groups),
        kernel_size=kernel,
        stride=stride,
        dilation=dilation,
        pad_left=pad_left,
        pad_right=pad_right,
        padding_mode=padding_mode,
        output_padding=_ints(getattr(attrs, "output_padding", 0), ndim, "output_padding", who),
        tile_size=None if tile is None else _ints(tile, ndim, "tile_size", who),
        input_size=None if input_size is None else _ints(tuple(input_size), ndim, "input_size", who),
    )


def check_input(geometry: Geometry, input_shape, who: str) -> tuple[int, ...]:
    """Validate a per-sample input shape ``(C_in, *spatial)``; return the spatial output size."""
    shape = tuple(int(n) for n in input_shape)
    ndim = geometry.ndim
    if len(shape) != ndim + 1 or shape[0] != geometry.in_channels or any(n < 1 for n in shape):
        raise ShapeError(
            f"{who}: expected a per-sample input shape (C_in={geometry.in_channels}, {ndim} spatial "
            f"sizes) without the batch dimension. Received: input_shape={shape}"
        )
    if geometry.input_size is not None and shape[1:] != geometry.input_size:
        raise ShapeError(
            f"{who}: this layer was built for spatial input size {geometry.input_size}. Received: "
            f"input_shape={shape}; build a new layer for this size"
        )
    out = geometry.output_size(shape[1:])
    if any(o < 1 for o in out):
        raise ShapeError(
            f"{who}: the input {shape} is too small for kernel_size={geometry.kernel_size}, "
            f"dilation={geometry.dilation}, padding={geometry.pad_left}: output size would be {out}; "
            "use a larger input or more padding"
        )
    return out
