"""Shape-only layers: no weights, no arithmetic on values, only a new layout.

``PadSpec`` (torch ``ZeroPad*d``, ``ConstantPad*d``, ``ReflectionPad*d``, ``ReplicationPad*d``,
``CircularPad*d``), ``UnflattenSpec`` (``Unflatten``), ``PixelShuffleSpec`` (``PixelShuffle`` and
``PixelUnshuffle``), ``ChannelShuffleSpec`` (``ChannelShuffle``), ``UnfoldSpec`` (``Unfold``,
``Fold``) and ``PermuteSpec`` (a permutation of the per-sample dims, e.g. channels last to first). Shapes are per sample,
``(C, *spatial)``; torch dims (``Unflatten``'s ``dim``) count the batch as dim 0.

Receptive fields: padding is a window of one tap whose start moves left by the padding
(``Window(1, 1, left)``); ``PixelUnshuffle(r)`` reads an ``r×r`` block per output position, a window
``k = s = r``; ``PixelShuffle(r)`` sends each input position to ``r×r`` outputs, the window of
nearest upsampling (transposed, ``k = s = r``); a channel shuffle keeps every position's field; an
unflatten that changes the spatial layout, a permutation that moves dims, and ``Unfold``/``Fold``
(positions flattened into columns), make the field global.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from layerlab.arith._args import check_input_shape, is_int, ntuple
from layerlab.arith.report import GLOBAL, LayerReport, Window
from layerlab.arith.sizes import window_output_sizes
from layerlab.errors import ArgumentError, ShapeError

__all__ = ["PAD_MODES", "PadSpec", "UnflattenSpec", "PixelShuffleSpec", "ChannelShuffleSpec", "UnfoldSpec", "PermuteSpec"]

# torch class prefix -> padding mode; reflect needs padding < size, circular padding <= size
PAD_MODES = {"Zero": "constant", "Constant": "constant", "Reflection": "reflect", "Replication": "replicate",
             "Circular": "circular"}

_AXES = "DHW"  # names of the last three spatial dims (1-d: L)


def _axis(ndim: int, i: int) -> str:
    return "L" if ndim == 1 else _AXES[3 - ndim + i]


def _report(spec, shape, out, formulas, window) -> LayerReport:
    return LayerReport(kind=spec.name, input_shape=shape, output_shape=out, formulas=tuple(formulas), params=0,
                       buffers=0, macs=0, other_ops={}, activation_elements=prod(out), window=window)


def _spatial(spec, shape: tuple[int, ...], ndim: int) -> None:
    if len(shape) != ndim + 1:
        raise ShapeError(f"{spec.describe()} expects a per-sample input (C, {ndim} spatial dims) with {ndim + 1} "
                         f"dims, gets {shape} with {len(shape)}.")


@dataclass(frozen=True)
class PadSpec:
    """Pad the spatial dims (torch ``ZeroPad2d`` etc.).

    Args:
        ndim: spatial dims, 1 to 3.
        padding: an int (every side) or ``2·ndim`` ints in torch's order, last dim first:
            ``(left, right, top, bottom, front, back)``; negative crops (constant mode only).
        kind: torch's class prefix, ``"Zero"``, ``"Constant"``, ``"Reflection"``, ``"Replication"``
            or ``"Circular"`` (see :data:`PAD_MODES`).

    Shape:
        ``(C, H, W) -> (C, H + top + bottom, W + left + right)``.
    """

    ndim: int
    padding: int | tuple[int, ...]
    kind: str = "Zero"

    def __post_init__(self):
        if self.ndim not in (1, 2, 3):
            raise ArgumentError(f"{self.name}: ndim must be 1, 2 or 3. Received: ndim={self.ndim!r}")
        if self.kind not in PAD_MODES:
            raise ArgumentError(f"Pad: kind must be one of {', '.join(PAD_MODES)}. Received: kind={self.kind!r}")
        pads = (self.padding,) if is_int(self.padding) else self.padding
        if not isinstance(pads, tuple) or not all(is_int(p) for p in pads) or len(pads) not in (1, 2 * self.ndim):
            raise ArgumentError(f"{self.name}: padding must be an int or {2 * self.ndim} ints (last dim first: "
                                f"left, right, ...). Received: padding={self.padding!r}")
        if PAD_MODES[self.kind] != "constant" and min(pads) < 0:
            raise ArgumentError(f"{self.name}: padding must be non-negative. Received: padding={self.padding!r}")

    @property
    def name(self) -> str:
        return f"{self.kind}Pad{self.ndim}d"

    def describe(self) -> str:
        return f"{self.name}({self.padding!r})"

    def pairs(self) -> tuple[tuple[int, int], ...]:
        """``(before, after)`` per spatial dim, first spatial dim first."""
        pads = (self.padding,) * (2 * self.ndim) if is_int(self.padding) else self.padding
        return tuple((pads[2 * i], pads[2 * i + 1]) for i in range(self.ndim))[::-1]

    def analyse(self, input_shape) -> LayerReport:
        shape = check_input_shape(self.name, input_shape)
        _spatial(self, shape, self.ndim)
        mode = PAD_MODES[self.kind]
        out, formulas = [shape[0]], []
        for i, (size, (before, after)) in enumerate(zip(shape[1:], self.pairs())):
            axis = _axis(self.ndim, i)
            if mode == "reflect" and max(before, after) >= size:
                raise ShapeError(f"{self.describe()}: {axis}: reflection padding {max(before, after)} must be "
                                 f"smaller than the input size {size}. Fix: pad less or use ReplicationPad.")
            if mode == "circular" and max(before, after) > size:
                raise ShapeError(f"{self.describe()}: {axis}: circular padding {max(before, after)} must be at "
                                 f"most the input size {size}. Fix: pad less.")
            n = size + before + after
            if n < 1:
                raise ShapeError(f"{self.describe()}: {axis}: cropping {-before - after} leaves no elements of "
                                 f"{size}. Fix: crop less.")
            out.append(n)
            formulas.append(f"{axis}: {size} + {before} + {after} = {n}")
        window = tuple(Window(1, 1, before) for before, _ in self.pairs())
        return _report(self, shape, tuple(out), formulas, window)


@dataclass(frozen=True)
class UnflattenSpec:
    """Split torch dim ``dim`` into ``unflattened_size`` (torch ``Unflatten``).

    Args:
        dim: torch dim (0 = batch, so at least 1; negative counts from the end).
        unflattened_size: sizes whose product is the dim's size.

    Shape:
        ``(784,) -> (1, 28, 28)`` for ``Unflatten(1, (1, 28, 28))``.
    """

    dim: int
    unflattened_size: tuple[int, ...]

    def __post_init__(self):
        if not is_int(self.dim):
            raise ArgumentError(f"Unflatten: dim must be an int. Received: dim={self.dim!r}")
        sizes = self.unflattened_size
        if not isinstance(sizes, tuple) or not sizes or not all(is_int(n) and n > 0 for n in sizes):
            raise ArgumentError(f"Unflatten: unflattened_size must be a tuple of positive ints. Received: "
                                f"unflattened_size={sizes!r}")

    @property
    def name(self) -> str:
        return "Unflatten"

    def describe(self) -> str:
        return f"Unflatten({self.dim}, {self.unflattened_size!r})"

    def analyse(self, input_shape) -> LayerReport:
        shape = check_input_shape(self.name, input_shape)
        rank = len(shape) + 1  # torch dims, batch first
        dim = self.dim + rank if self.dim < 0 else self.dim
        if dim == 0:
            raise ArgumentError(f"{self.describe()}: dim 0 is the batch; shapes here are per sample. Fix: dim=1.")
        if not 0 < dim < rank:
            raise ShapeError(f"{self.describe()}: dim out of range for the per-sample input {shape} "
                             f"(torch dims 1..{rank - 1}, 0 = batch).")
        size = shape[dim - 1]
        if prod(self.unflattened_size) != size:
            raise ShapeError(f"{self.describe()}: {'·'.join(map(str, self.unflattened_size))} = "
                             f"{prod(self.unflattened_size)}, but dim {dim} of the input {shape} has {size}. "
                             f"Fix: sizes whose product is {size}.")
        out = (*shape[:dim - 1], *self.unflattened_size, *shape[dim:])
        formula = f"dim {dim}: {size} = {'·'.join(map(str, self.unflattened_size))}"
        return _report(self, shape, out, [formula], None if len(out) == len(shape) else GLOBAL)


@dataclass(frozen=True)
class PixelShuffleSpec:
    """Move channels to space (torch ``PixelShuffle(r)``) or back (``PixelUnshuffle(r)``).

    Args:
        factor: ``r``, the upscale (shuffle) or downscale (unshuffle) factor.
        inverse: False for ``PixelShuffle``, True for ``PixelUnshuffle`` (default: False).

    Shape:
        shuffle ``(C·r², H, W) -> (C, H·r, W·r)``; unshuffle ``(C, H·r, W·r) -> (C·r², H, W)``; any
        number of spatial dims (torch: two), ``r^ndim`` in general.
    """

    factor: int
    inverse: bool = False

    def __post_init__(self):
        if not is_int(self.factor) or self.factor < 1:
            raise ArgumentError(f"{self.name}: the factor must be a positive int. Received: {self.factor!r}")

    @property
    def name(self) -> str:
        return "PixelUnshuffle" if self.inverse else "PixelShuffle"

    def describe(self) -> str:
        return f"{self.name}({self.factor})"

    def analyse(self, input_shape) -> LayerReport:
        shape = check_input_shape(self.name, input_shape)
        _spatial(self, shape, 2)
        r, (c, h, w) = self.factor, shape
        if self.inverse:
            if h % r or w % r:
                raise ShapeError(f"{self.describe()}: the input {h}×{w} is not divisible by {r}. Fix: an input "
                                 f"size that is a multiple of {r}.")
            out = (c * r * r, h // r, w // r)
            window = (Window(r, r, 0), Window(r, r, 0))
        else:
            if c % (r * r):
                raise ShapeError(f"{self.describe()}: {c} input channels are not divisible by {r}² = {r * r}. "
                                 f"Fix: a channel count that is a multiple of {r * r}.")
            out = (c // (r * r), h * r, w * r)
            window = (Window(r, r, 0, transposed=True), Window(r, r, 0, transposed=True))
        op = "/" if self.inverse else "·"
        formulas = [f"C: {c} {'·' if self.inverse else '/'} {r}² = {out[0]}", f"H: {h} {op} {r} = {out[1]}",
                    f"W: {w} {op} {r} = {out[2]}"]
        return _report(self, shape, out, formulas, window)


@dataclass(frozen=True)
class ChannelShuffleSpec:
    """Interleave ``groups`` channel groups (torch ``ChannelShuffle``); the shape is kept.

    Args:
        groups: channel groups; must divide the input channels.
    """

    groups: int

    def __post_init__(self):
        if not is_int(self.groups) or self.groups < 1:
            raise ArgumentError(f"ChannelShuffle: groups must be a positive int. Received: groups={self.groups!r}")

    @property
    def name(self) -> str:
        return "ChannelShuffle"

    def describe(self) -> str:
        return f"ChannelShuffle({self.groups})"

    def analyse(self, input_shape) -> LayerReport:
        shape = check_input_shape(self.name, input_shape)
        if len(shape) < 2 or shape[0] % self.groups:
            raise ShapeError(f"{self.describe()}: groups={self.groups} must divide the channels of a (C, *spatial) "
                             f"input, gets {shape}. Fix: a group count that divides {shape[0]}.")
        return _report(self, shape, shape, ["shape kept; channels interleaved"], None)


@dataclass(frozen=True)
class UnfoldSpec:
    """Sliding blocks to columns (torch ``Unfold``, the ``im2col`` of a 2-d input).

    Args:
        kernel_size, dilation, padding, stride: as a 2-d convolution's (int or pair).
        output_size: ``None`` for ``Unfold``; for ``Fold`` (columns back to an image, overlaps
            summed) the spatial output size.

    Shape:
        unfold ``(C, H, W) -> (C·kh·kw, L)``, ``L = out_h·out_w`` from the conv formula; fold
        ``(C·kh·kw, L) -> (C, *output_size)``. The positions are flattened into ``L``, so the
        receptive field is reported global, as after ``Flatten``.
    """

    kernel_size: int | tuple[int, int]
    dilation: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    stride: int | tuple[int, int] = 1
    output_size: int | tuple[int, int] | None = None

    def __post_init__(self):
        for key, minimum in (("kernel_size", 1), ("dilation", 1), ("padding", 0), ("stride", 1)):
            ntuple(self.name, key, getattr(self, key), 2, minimum=minimum)
        if self.output_size is not None:
            ntuple(self.name, "output_size", self.output_size, 2, minimum=1)

    @property
    def name(self) -> str:
        return "Unfold" if self.output_size is None else "Fold"

    def describe(self) -> str:
        head = [] if self.output_size is None else [f"output_size={self.output_size!r}"]
        options = [f"{key}={getattr(self, key)!r}" for key, default in
                   (("kernel_size", None), ("dilation", 1), ("padding", 0), ("stride", 1)) if getattr(self, key) != default]
        return f"{self.name}({', '.join(head + options)})"

    def _blocks(self, spatial: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The kernel and the block counts per dim over ``spatial``."""
        k, d, p, s = (ntuple(self.name, key, getattr(self, key), 2, minimum=0)
                      for key in ("kernel_size", "dilation", "padding", "stride"))
        return k, window_output_sizes(self.describe(), spatial, k, s, p, d)

    def analyse(self, input_shape) -> LayerReport:
        shape = check_input_shape(self.name, input_shape)
        if self.output_size is None:
            _spatial(self, shape, 2)
            k, blocks = self._blocks(shape[1:])
            out = (shape[0] * prod(k), prod(blocks))
            formula = (f"C: {shape[0]}·{k[0]}·{k[1]} = {out[0]}; L: blocks {blocks[0]}·{blocks[1]} = {out[1]}")
            return _report(self, shape, out, [formula], GLOBAL)
        size = ntuple(self.name, "output_size", self.output_size, 2, minimum=1)
        k, blocks = self._blocks(size)
        if len(shape) != 2 or shape[0] % prod(k) or shape[1] != prod(blocks):
            raise ShapeError(f"{self.describe()} expects a per-sample input (C·{k[0]}·{k[1]}, {prod(blocks)}) "
                             f"({prod(blocks)} blocks fit in {size[0]}×{size[1]}), gets {shape}.")
        out = (shape[0] // prod(k), *size)
        formula = f"C: {shape[0]} / ({k[0]}·{k[1]}) = {out[0]}; L: {shape[1]} blocks = {blocks[0]}·{blocks[1]}"
        return _report(self, shape, out, [formula], GLOBAL)


@dataclass(frozen=True)
class PermuteSpec:
    """Reorder the per-sample dims (``x.permute(0, *dims)``, torch dims: 0 is the batch).

    Args:
        dims: a permutation of ``1..rank`` (torch dims of the per-sample dims, batch excluded).

    Shape:
        ``(H, W, C) -> (C, H, W)`` for ``dims=(3, 1, 2)`` (channels last to channels first).
    """

    dims: tuple[int, ...]

    def __post_init__(self):
        if not isinstance(self.dims, tuple) or sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ArgumentError(f"Permute: dims must be a permutation of 1..rank (0 is the batch). "
                                f"Received: dims={self.dims!r}")

    @property
    def name(self) -> str:
        return "Permute"

    def describe(self) -> str:
        return f"Permute(0, {', '.join(map(str, self.dims))})"

    def analyse(self, input_shape) -> LayerReport:
        shape = check_input_shape(self.name, input_shape)
        if len(shape) != len(self.dims):
            raise ShapeError(f"{self.describe()} expects a per-sample input with {len(self.dims)} dims, gets {shape} "
                             f"with {len(shape)}.")
        out = tuple(shape[d - 1] for d in self.dims)
        moved = self.dims != tuple(range(1, len(self.dims) + 1))
        return _report(self, shape, out, [f"dims {self.dims}: {shape} -> {out}"], GLOBAL if moved else None)
