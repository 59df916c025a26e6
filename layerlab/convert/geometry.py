"""Window geometry of conv-like layers for the index arithmetic of the conversions and pictures.

A :class:`LayerGeometry` is a thin, all-dimensions view of a conv-family layer (``Conv*``,
``ConvTranspose*``, ``LocallyConnected*``, ``TiledConv*``, ``LowRankLocallyConnected*``) read off its :mod:`layerlab.arith` spec
(:func:`layerlab.analysis.spec_of`): torch's argument names, one int per spatial dimension, the
padding resolved to explicit ``(left, right)`` amounts by :func:`layerlab.arith.padding_pairs`
(``'same'`` as torch: the odd extra on the right). Output sizes come from
:func:`layerlab.arith.output_size` / :func:`~layerlab.arith.transposed_output_size`; nothing here
restates a formula. The index arithmetic in :mod:`layerlab.convert.entries` and the conversions read
only this.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from layerlab.analysis.modules import spec_of
from layerlab.arith import (
    PADDING_MODES,
    ConvSpec,
    ConvTransposeSpec,
    LocalSpec,
    LowRankLocalSpec,
    TiledSpec,
    output_sizes,
    transposed_output_size,
)
from layerlab.arith._args import choice, ntuple
from layerlab.errors import ArgumentError, ShapeError

__all__ = ["LayerGeometry", "geometry_of", "check_input"]

# the arith spec of each conv-family kind
_KINDS = {ConvSpec: "conv", ConvTransposeSpec: "transpose", LocalSpec: "local", TiledSpec: "tiled",
          LowRankLocalSpec: "lowrank"}


@dataclass(frozen=True)
class LayerGeometry:
    """Everything that fixes the connectivity of a conv-like layer.

    Attributes:
        kind: ``"conv"``, ``"transpose"``, ``"local"``, ``"tiled"`` or ``"lowrank"``.
        in_channels, out_channels, groups: as in torch.
        kernel_size, stride, dilation: one int per spatial dimension.
        pad_left, pad_right: padding before / after each spatial dimension
            (:func:`layerlab.arith.padding_pairs`).
        padding_mode: one of :data:`layerlab.arith.PADDING_MODES`.
        output_padding: transposed conv only (zeros otherwise).
        tile_size: tiled conv only (``None`` otherwise).
        input_size: spatial input size stored by the layer (local, tiled and low-rank layers), else ``None``.
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
        """Spatial output size for a spatial input size (:mod:`layerlab.arith`'s conv or transposed
        formula)."""
        pads = tuple(zip(self.pad_left, self.pad_right))
        if self.kind == "transpose":
            return tuple(
                transposed_output_size(n, k, s, p, op, d)
                for n, k, s, p, op, d in zip(in_size, self.kernel_size, self.stride, pads,
                                             self.output_padding, self.dilation)
            )
        return output_sizes(in_size, self.kernel_size, self.stride, pads, self.dilation)


def geometry_of(module, who: str | None = None) -> LayerGeometry | None:
    """The :class:`LayerGeometry` of a conv-like module, or ``None`` when it is not conv-like.

    Reads the module's :mod:`layerlab.arith` spec (``layer_spec()`` of layerlab modules, Contract 2
    of ``docs/ARCHITECTURE.md``; :func:`layerlab.analysis.spec_of` for ``torch.nn`` convs and their
    subclasses) plus the module's ``padding_mode``, ``input_size`` and ``in_channels`` attributes.
    """
    if not isinstance(module, nn.modules.conv._ConvNd) and not callable(getattr(module, "layer_spec", None)):
        return None
    who = who or repr(module)
    spec = spec_of(module)
    kind = _KINDS.get(type(spec))
    if kind is None:
        return None
    ndim = spec.ndim
    kernel = ntuple(who, "kernel_size", spec.kernel_size, ndim, minimum=1)
    stride = ntuple(who, "stride", spec.stride, ndim, minimum=1)
    dilation = ntuple(who, "dilation", spec.dilation, ndim, minimum=1)
    if kind == "transpose":
        pads = tuple((p, p) for p in ntuple(who, "padding", spec.padding, ndim, minimum=0))
    else:
        pads = spec.padding_pairs()
    in_channels = spec.in_channels
    if in_channels is None:
        in_channels = getattr(module, "in_channels", None)
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ArgumentError(
            f"{who}: in_channels is not known yet (lazy layer). Received: in_channels={in_channels!r}; "
            "run one forward pass first so the layer materialises its weight"
        )
    padding_mode = getattr(module, "padding_mode", getattr(spec, "padding_mode", "zeros"))
    choice(who, "padding_mode", padding_mode, PADDING_MODES)
    input_size = getattr(module, "input_size", None)
    tile = getattr(spec, "tile_size", None)
    return LayerGeometry(
        kind=kind,
        in_channels=int(in_channels),
        out_channels=int(spec.out_channels),
        groups=int(spec.groups),
        kernel_size=kernel,
        stride=stride,
        dilation=dilation,
        pad_left=tuple(left for left, _ in pads),
        pad_right=tuple(right for _, right in pads),
        padding_mode=padding_mode,
        output_padding=ntuple(who, "output_padding", getattr(spec, "output_padding", 0), ndim, minimum=0),
        tile_size=None if tile is None else ntuple(who, "tile_size", tile, ndim, minimum=1),
        input_size=None if input_size is None else ntuple(who, "input_size", tuple(input_size), ndim, minimum=1),
    )


def check_input(geometry: LayerGeometry, input_shape, who: str) -> tuple[int, ...]:
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
