"""Which input cells feed which output cell of one layer, through which kernel tap and which weight.

A *cell* is an index into a per-sample shape: ``(c, i, j)`` of a ``(C, H, W)`` map, ``(c, i)`` of a
``(C, L)`` map, ``(i,)`` of flat features. Internally a cell is ``(channel, flat position)`` with the
position flattened row-major, so the flat index of a cell is ``channel·L + position`` (the C-major
order of ``x.flatten(1)`` and of the columns/rows of :func:`layerlab.convert.dense_matrix`).

Along one spatial dimension (:func:`dim_taps`), output ``o`` reads input ``i`` through tap ``t``:

- convolution, locally connected, tiled, pooling: ``i = o·s − p_left + t·d`` (torch's ``Conv*d``);
  with zero padding an ``i`` outside ``[0, in)`` is a padding cell and is left out; the other
  padding modes fold it back (reflect, replicate, circular);
- transposed convolution: ``o = i·s − p + t·d`` (each input scatters its taps), so ``o`` reads the
  ``(i, t)`` with ``(o + p − t·d) mod s = 0`` and ``0 ≤ i < in``;
- adaptive pooling: window ``o`` is ``[floor(o·in/out), ceil((o+1)·in/out))`` and ``t = i − start``.

Channels: a grouped layer connects output channel ``o`` of group ``g = o // (C_out/G)`` to the
input channels ``g·(C_in/G) … (g+1)·(C_in/G) − 1``; pooling and element-wise layers connect each
channel to itself; a dense layer connects every input feature to every output feature.

Weight ids (the flat index into the layer's ``weight`` tensor, so taps that share a weight share
an id), with ``K = ∏kernel_size``, ``C_g = C_in/G``, ``O_g = C_out/G``, ``c`` and ``o`` the channels
within their group and ``t`` the flat tap:

- ``Conv*d`` (weight ``(C_out, C_g, *k)``): ``o_abs·C_g·K + c·K + t``;
- ``ConvTranspose*d`` (weight ``(C_in, O_g, *k)``): ``c_abs·O_g·K + o·K + t``;
- ``LocallyConnected*d`` (weight ``(*out, G, C_g, *k, O_g)``): ``(((p·G + g)·C_g + c)·K + t)·O_g + o``
  with ``p`` the flat output position; ``TiledConv*d`` the same with ``p`` the flat tile position
  (the position modulo ``tile_size`` per dim);
- ``LocallyConnectedTranspose*d`` (weight ``(*in, G, O_g, *k, C_g)``, one filter bank per *input*
  position, windows as ``ConvTranspose*d``'s): ``(((q·G + g)·O_g + o)·K + t)·C_g + c`` with ``q`` the
  flat input position;
- ``LowRankLocallyConnected*d`` (windows as ``Conv*d``'s; weight: ``R`` basis conv kernels
  ``(R, C_out, C_g, *k)``): the connection multiplies by ``Σ_r a_r(p)·weight[r, o_abs, c, t]``, a mix
  of the same tap of all ``R`` bases with the combining weights ``a(p)`` of the output position
  ``p``. Its id is the tap in basis 0, ``o_abs·C_g·K + c·K + t`` (a conv's); the ``R`` taps are that id
  ``+ r·C_out·C_g·K`` (:meth:`Connectivity.basis_taps`). Entries sharing an id read the same basis
  taps but are not tied: their mixes differ from position to position;
- ``Linear`` (weight ``(out, in)``): ``o·in + i``;
- layers without weights (pooling, element-wise): ``None``.

Pure arithmetic (no torch). :func:`fold`, :func:`tile_index` and :func:`weight_id` use only
``abs``, ``+ − * // %``, comparisons and ``& |``, so :mod:`layerlab.convert` calls the same functions
on torch tensors to build :func:`layerlab.convert.dense_matrix`; the tests check that matrix against
the layers' own forward pass and these links against its non-zeros.

Examples:
    >>> from layerlab.arith import ConvSpec
    >>> net = connectivity(ConvSpec(2, 1, 3, padding=1), (1, 4, 4))
    >>> [link.cell for link in net.inputs_of((0, 0, 0))]
    [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)]
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from layerlab.arith._args import check_input_shape
from layerlab.arith.report import GLOBAL
from layerlab.arith.sizes import adaptive_windows
from layerlab.arith.specs import (
    AdaptivePoolSpec,
    ConvSpec,
    ConvTransposeSpec,
    DenseSpec,
    ElementwiseSpec,
    LocalSpec,
    LocalTransposeSpec,
    LowRankLocalSpec,
    PoolSpec,
    TiledSpec,
)
from layerlab.errors import ArgumentError

__all__ = ["Link", "Connectivity", "connectivity", "dim_taps", "fold", "fold_index", "tile_index", "weight_id",
           "LINKED_LAYERS"]

# the layer kinds whose cells are linked (the others have no fixed window, or mix cells through statistics)
LINKED_LAYERS = ("Linear", "Conv*d", "ConvTranspose*d", "LocallyConnected*d", "LocallyConnectedTranspose*d",
                 "LowRankLocallyConnected*d", "TiledConv*d", "MaxPool*d",
                 "AvgPool*d", "AdaptiveMaxPool*d", "AdaptiveAvgPool*d", "GlobalMaxPool", "GlobalAvgPool",
                 "element-wise layers (ReLU, Dropout, Identity, ...)")


def fold(index, size: int, padding_mode: str):
    """The input position a (possibly padded) position ``index`` reads along a dim of ``size``, and
    whether it reads one: ``(position, valid)``.

    With ``last = size − 1``: reflect ``last − |last − |index||`` (a reflection about each edge),
    circular ``index mod size``, replicate the clamp to ``[0, last]``,
    ``(|index| − |index − last| + last) / 2``. ``valid`` is false only for a zero-padding cell
    (outside ``[0, last]`` with ``padding_mode="zeros"``), whose ``position`` is then the clamp, an
    index that is safe to gather with.

    Plain arithmetic (``abs``, ``+ − // %``, comparisons, ``& |``): it works on ints and element-wise
    on integer arrays and tensors, the one formula of :func:`fold_index` and of
    :func:`layerlab.convert.entries.window_index`.

    Examples:
        >>> [fold(i, 4, "reflect") for i in (-1, 4)], fold(-1, 4, "zeros")
        ([(1, True), (2, True)], (0, False))
    """
    last = size - 1
    if padding_mode == "reflect":
        position = last - abs(last - abs(index))
    elif padding_mode == "circular":
        position = index % size
    else:  # replicate, and the stand-in position of a zero-padding cell
        position = (abs(index) - abs(index - last) + last) // 2
    return position, ((index >= 0) & (index <= last)) | (padding_mode != "zeros")


def fold_index(index: int, size: int, padding_mode: str) -> int | None:
    """The input position a (possibly padded) position ``index`` reads along a dim of ``size``, or
    ``None`` for a zero-padding cell (:func:`fold` of one int).

    Examples:
        >>> [fold_index(i, 4, "reflect") for i in (-1, 4)], fold_index(-1, 4, "zeros")
        ([1, 2], None)
    """
    position, valid = fold(index, size, padding_mode)
    return position if valid else None


def tile_index(position, out_spatial: tuple[int, ...], tile_size: tuple[int, ...]):
    """The flat tile position of flat output position ``position`` of a tiled layer: its position
    modulo ``tile_size`` per dim, flattened row-major over ``tile_size``.

    Plain arithmetic (``+ * // %``): it works on ints and element-wise on integer arrays and tensors.

    Examples:
        >>> [tile_index(p, (3, 4), (2, 2)) for p in (0, 5, 7, 11)]  # (0,0) (1,1) (1,3) (2,3)
        [0, 3, 3, 1]
    """
    tile = 0
    for d, (n, t) in enumerate(zip(out_spatial, tile_size)):
        tile = tile * t + position // prod(out_spatial[d + 1:]) % n % t
    return tile


def weight_id(kind: str, group, o, c, tap, out_position=0, in_position=0, *, groups: int, per_in: int,
              per_out: int, taps: int, out_spatial: tuple[int, ...] = (), tile_size: tuple[int, ...] | None = None):
    """The flat index into a layer's ``weight`` of the connection from input channel ``c`` to output
    channel ``o`` (both counted within ``group``) through flat tap ``tap`` (the formulas of the module
    docstring, with ``K = taps``, ``C_g = per_in``, ``O_g = per_out``, ``G = groups``).

    Args:
        kind: ``"conv"``, ``"dense"``, ``"lowrank"`` (the tap of basis 0), ``"transpose"``,
            ``"local"``, ``"tiled"`` or ``"local_transpose"``.
        group, o, c, tap: the connection (``0 ≤ o < O_g``, ``0 ≤ c < C_g``, ``0 ≤ tap < K``; dense:
            ``group = 0``, ``c`` the input feature, ``tap = 0``).
        out_position, in_position: its flat output and input positions: a local layer reads the
            filter bank of ``out_position``, a tiled layer that of its :func:`tile_index`, a
            transposed local layer that of ``in_position``; the others use neither.
        out_spatial, tile_size: a tiled layer's output and tile sizes.

    Plain arithmetic (``+ * // %``): it works on ints and element-wise (broadcasting) on integer
    arrays and tensors, the one formula of :meth:`Connectivity.weight_id` and of
    :func:`layerlab.convert.entries.conv_family_entries`.

    Examples:
        >>> sizes = dict(groups=2, per_in=3, per_out=4, taps=9)
        >>> weight_id("conv", 1, 2, 0, 5, **sizes), weight_id("local", 1, 2, 0, 5, out_position=7, **sizes)
        (167, 1642)
    """
    if kind in ("conv", "dense", "lowrank"):  # (C_out, C_g, *k)
        return ((group * per_out + o) * per_in + c) * taps + tap
    if kind == "transpose":  # (C_in, O_g, *k)
        return ((group * per_in + c) * per_out + o) * taps + tap
    if kind == "local_transpose":  # (*in, G, O_g, *k, C_g)
        return (((in_position * groups + group) * per_out + o) * taps + tap) * per_in + c
    position = tile_index(out_position, out_spatial, tile_size) if kind == "tiled" else out_position
    return (((position * groups + group) * per_in + c) * taps + tap) * per_out + o  # (*out | *tile, G, C_g, *k, O_g)


def dim_taps(in_size: int, out_size: int, kernel_size: int, stride: int, pad_left: int, dilation: int = 1, *,
             transposed: bool = False, padding_mode: str = "zeros") -> tuple[tuple[tuple[int, int], ...], ...]:
    """Along one spatial dim: for every output position, the ``(input position, tap)`` pairs it reads.

    Args:
        in_size, out_size: input and output length.
        kernel_size, stride, pad_left, dilation: the window (``pad_left``: a transposed conv's crop).
        transposed: the scatter of a transposed convolution (default: False).
        padding_mode: ``"zeros"`` leaves padding cells out; the others fold them in (default: "zeros").

    Examples:
        >>> dim_taps(4, 4, 3, 1, 1)[0]  # output 0 of a 3-tap window with padding 1: tap 0 is padding
        ((0, 1), (1, 2))
        >>> dim_taps(2, 4, 3, 2, 1, transposed=True)  # o = 2i − 1 + t
        (((0, 1),), ((1, 0), (0, 2)), ((1, 1),), ((1, 2),))
    """
    found = []
    for o in range(out_size):
        pairs = []
        for t in range(kernel_size):
            if transposed:
                numerator = o + pad_left - t * dilation
                i = numerator // stride
                if numerator % stride == 0 and 0 <= i < in_size:
                    pairs.append((i, t))
            else:
                i = fold_index(o * stride - pad_left + t * dilation, in_size, padding_mode)
                if i is not None:
                    pairs.append((i, t))
        found.append(tuple(pairs))
    return tuple(found)


@dataclass(frozen=True)
class Link:
    """One connection seen from a cell.

    Attributes:
        cell: the cell at the other end (an input cell for :meth:`Connectivity.inputs_of`, an
            output cell for :meth:`Connectivity.outputs_of`).
        tap: the kernel tap per spatial dim, or ``None`` (dense, adaptive and element-wise layers).
        weight: the flat index of the weight the connection multiplies by, or ``None`` (no weights).
    """

    cell: tuple[int, ...]
    tap: tuple[int, ...] | None
    weight: int | None


@dataclass(frozen=True)
class Connectivity:
    """The connections of one layer on one per-sample input shape (see the module docstring).

    Attributes:
        kind: ``"conv"``, ``"transpose"``, ``"local"``, ``"local_transpose"``, ``"lowrank"``,
            ``"tiled"``, ``"pool"``, ``"adaptive"``, ``"dense"`` or ``"identity"``.
        layer: the layer's ``describe()``.
        input_shape, output_shape: per-sample shapes (those of ``spec.analyse``).
        in_channels, out_channels, groups: the channel structure (channel-wise layers: ``groups``
            = channels; dense: channels = features).
        in_spatial, out_spatial: spatial sizes (``()`` for features).
        kernel_size: taps per spatial dim (``()`` without a window).
        taps: per spatial dim, :func:`dim_taps` of that dim.
        tile_size: tiled layers only, else ``None``.
        weights: elements of the weight tensor (``0`` without weights).
        padding_mode: ``"zeros"``, or the folding mode under which several taps can read one cell.
        rank: low-rank layers only (the number of basis kernels ``R``), else ``None``.
    """

    kind: str
    layer: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    in_channels: int
    out_channels: int
    groups: int
    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]
    kernel_size: tuple[int, ...]
    taps: tuple[tuple[tuple[tuple[int, int], ...], ...], ...]
    tile_size: tuple[int, ...] | None
    weights: int
    padding_mode: str = "zeros"
    rank: int | None = None

    @property
    def in_positions(self) -> int:
        return prod(self.in_spatial)

    @property
    def out_positions(self) -> int:
        return prod(self.out_spatial)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the layer's weight tensor, the one :meth:`weight_id` indexes (``()`` without weights)."""
        per_in, per_out = self.in_channels // self.groups, self.out_channels // self.groups
        if self.kind == "dense":
            return (self.out_channels, self.in_channels)
        if self.kind == "conv":
            return (self.out_channels, per_in, *self.kernel_size)
        if self.kind == "transpose":
            return (self.in_channels, per_out, *self.kernel_size)
        if self.kind == "lowrank":
            return (self.rank, self.out_channels, per_in, *self.kernel_size)
        if self.kind == "local_transpose":
            return (*self.in_spatial, self.groups, per_out, *self.kernel_size, per_in)
        if self.kind in ("local", "tiled"):
            positions = self.out_spatial if self.kind == "local" else self.tile_size
            return (*positions, self.groups, per_in, *self.kernel_size, per_out)
        return ()

    def weight_id(self, out_channel: int, in_channel: int, out_position: int, in_position: int,
                  tap: int) -> int | None:
        """The flat weight index of one connection (:func:`weight_id` of its group and channels within
        it), or ``None`` without weights. Works element-wise on integer arrays too."""
        if self.kind in ("pool", "adaptive", "identity"):
            return None
        per_in, per_out = self.in_channels // self.groups, self.out_channels // self.groups
        return weight_id(self.kind, out_channel // per_out, out_channel % per_out, in_channel % per_in, tap,
                         out_position, in_position, groups=self.groups, per_in=per_in, per_out=per_out,
                         taps=prod(self.kernel_size), out_spatial=self.out_spatial, tile_size=self.tile_size)

    def basis_taps(self, weight: int) -> list[int]:
        """A low-rank layer's ``R`` basis taps (flat indices into its weight) that a connection with
        weight id ``weight`` mixes: ``weight + r·C_out·C_g·K``; ``[weight]`` for other layers.

        Examples:
            >>> from layerlab.arith import LowRankLocalSpec
            >>> connectivity(LowRankLocalSpec(1, 2, 3, rank=3), (1, 5)).basis_taps(4)
            [4, 10, 16]
        """
        if self.kind != "lowrank":
            return [weight]
        stride = prod(self.weight_shape[1:])
        return [weight + r * stride for r in range(self.rank)]

    def in_channels_of(self, out_channel: int) -> range:
        """The input channels output channel ``out_channel`` reads (its group)."""
        per_in, per_out = self.in_channels // self.groups, self.out_channels // self.groups
        group = out_channel // per_out
        return range(group * per_in, (group + 1) * per_in)

    def out_channels_of(self, in_channel: int) -> range:
        """The output channels input channel ``in_channel`` feeds (its group)."""
        per_in, per_out = self.in_channels // self.groups, self.out_channels // self.groups
        group = in_channel // per_in
        return range(group * per_out, (group + 1) * per_out)

    def inputs_of(self, out_cell) -> list[Link]:
        """The input cells output cell ``out_cell`` reads (padding cells left out), channel-major,
        then in row-major input order per tap.

        Raises:
            ArgumentError: ``out_cell`` is not a cell of the output shape.
        """
        channel, position = _split(self, "output", out_cell, self.output_shape, self.out_positions)
        per_dim = [self.taps[d][p] for d, p in enumerate(_unflat(position, self.out_spatial))]
        links = []
        for in_channel in self.in_channels_of(channel):
            for combo in _product(per_dim):
                source = _flat(tuple(i for i, _ in combo), self.in_spatial)
                tap = tuple(t for _, t in combo)
                flat_tap = _flat(tap, self.kernel_size)
                weight = self.weight_id(channel, in_channel, position, source, flat_tap)
                links.append(Link(_cell(in_channel * self.in_positions + source, self.input_shape),
                                  tap if self.kernel_size else None, weight))
        return links

    def outputs_of(self, in_cell) -> list[Link]:
        """Every output cell input cell ``in_cell`` feeds, in row-major output order.

        Raises:
            ArgumentError: ``in_cell`` is not a cell of the input shape.
        """
        channel, position = _split(self, "input", in_cell, self.input_shape, self.in_positions)
        where = _unflat(position, self.in_spatial)
        per_dim = []
        for d, i in enumerate(where):
            per_dim.append(tuple((o, t) for o, pairs in enumerate(self.taps[d]) for source, t in pairs if source == i))
        links = []
        for out_channel in self.out_channels_of(channel):
            for combo in _product(per_dim):
                target = _flat(tuple(o for o, _ in combo), self.out_spatial)
                tap = tuple(t for _, t in combo)
                weight = self.weight_id(out_channel, channel, target, position, _flat(tap, self.kernel_size))
                links.append(Link(_cell(out_channel * self.out_positions + target, self.output_shape),
                                  tap if self.kernel_size else None, weight))
        return sorted(links, key=lambda link: _flat(link.cell, self.output_shape))


def connectivity(spec, input_shape) -> Connectivity:
    """The :class:`Connectivity` of ``spec`` on ``input_shape`` (analysed first: the engine's errors).

    Args:
        spec: an arith spec of one of :data:`LINKED_LAYERS`.
        input_shape: per-sample input shape, e.g. ``(3, 32, 32)``.

    Raises:
        ShapeError, ArgumentError: the input does not fit (``spec.analyse``'s message), or the layer
            has no fixed connections (normalisation, upsampling, ...) or is a ``Linear`` on a
            non-flat input.
    """
    shape = check_input_shape("connectivity", input_shape)
    report = spec.analyse(shape)
    common = dict(layer=spec.describe(), input_shape=report.input_shape, output_shape=report.output_shape)
    if isinstance(spec, DenseSpec):
        if len(shape) != 1:
            raise ArgumentError(
                f"{spec.describe()} acts on the last dim of the {shape} input; its connections are drawn for a "
                f"flat input. Fix: add Flatten() before it."
            )
        return Connectivity(kind="dense", **common, in_channels=shape[0], out_channels=spec.out_features, groups=1,
                            in_spatial=(), out_spatial=(), kernel_size=(), taps=(), tile_size=None,
                            weights=shape[0] * spec.out_features)
    if isinstance(spec, ElementwiseSpec):
        spatial = shape[1:]
        taps = tuple(tuple(((o, 0),) for o in range(n)) for n in spatial)
        return Connectivity(kind="identity", **common, in_channels=shape[0], out_channels=shape[0], groups=shape[0],
                            in_spatial=spatial, out_spatial=spatial, kernel_size=(1,) * len(spatial), taps=taps,
                            tile_size=None, weights=0)
    channels, spatial = report.input_shape[0], report.input_shape[1:]
    if isinstance(spec, AdaptivePoolSpec):
        out = tuple(n if o is None else o for n, o in zip(spatial, _sizes(spec.output_size, len(spatial))))
        windows = [adaptive_windows(n, o) for n, o in zip(spatial, out)]
        taps = tuple(tuple(tuple((i, i - start) for i in range(start, end)) for start, end in dim) for dim in windows)
        kernel = tuple(max(end - start for start, end in dim) for dim in windows)
        return Connectivity(kind="adaptive", **common, in_channels=channels, out_channels=channels, groups=channels,
                            in_spatial=spatial, out_spatial=out, kernel_size=kernel, taps=taps, tile_size=None,
                            weights=0)
    kinds = {ConvSpec: "conv", LocalSpec: "local", TiledSpec: "tiled", ConvTransposeSpec: "transpose",
             LocalTransposeSpec: "local_transpose", LowRankLocalSpec: "lowrank", PoolSpec: "pool"}
    kind = kinds.get(type(spec))
    if kind is None or report.window in (None, GLOBAL):
        raise ArgumentError(
            f"{spec.describe()} has no fixed connections between input and output cells to draw. Cells are linked "
            f"for: {', '.join(LINKED_LAYERS)}."
        )
    out = report.output_shape[1:]
    mode = getattr(spec, "padding_mode", "zeros")
    taps = tuple(
        dim_taps(n, o, w.kernel_size, w.stride, w.padding, w.dilation, transposed=w.transposed, padding_mode=mode)
        for n, o, w in zip(spatial, out, report.window)
    )
    if kind == "pool":
        groups, out_channels, weights = channels, channels, 0
    else:
        groups, out_channels = spec.groups, spec.out_channels
        weights = report.params - _bias_count(spec, out)
        if kind == "lowrank":  # the combining weights are parameters too, but no connection's own
            weights -= spec.combining_count(out)
    return Connectivity(kind=kind, **common, in_channels=channels, out_channels=out_channels, groups=groups,
                        in_spatial=spatial, out_spatial=out, kernel_size=tuple(w.kernel_size for w in report.window),
                        taps=taps, tile_size=getattr(spec, "tile_size", None), weights=weights, padding_mode=mode,
                        rank=getattr(spec, "rank", None))


def _bias_count(spec, out: tuple[int, ...]) -> int:
    """Bias elements of a conv-family spec (its params minus its weight; a low-rank layer's also
    minus its combining weights)."""
    bias = spec.bias
    if bias is True or bias == "shared":
        return spec.out_channels
    if bias == "location" and isinstance(spec, LowRankLocalSpec):  # one bias per basis kernel
        return spec.rank * spec.out_channels
    if bias == "location":
        return spec.out_channels * prod(spec.tile_size if isinstance(spec, TiledSpec) else out)
    return 0


def _sizes(value, ndim: int) -> tuple:
    return value if isinstance(value, tuple) else (value,) * ndim


def _flat(index: tuple[int, ...], shape: tuple[int, ...]) -> int:
    """Row-major flat index of ``index`` in ``shape``."""
    flat = 0
    for i, n in zip(index, shape):
        flat = flat * n + i
    return flat


def _unflat(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    index = []
    for n in reversed(shape):
        flat, i = divmod(flat, n)
        index.append(i)
    return tuple(reversed(index))


def _cell(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return _unflat(flat, shape)


def _split(net: Connectivity, side: str, cell, shape: tuple[int, ...], positions: int) -> tuple[int, int]:
    """``(channel, flat position)`` of a cell of ``shape``, or an :class:`ArgumentError`."""
    cell = tuple(cell)
    if len(cell) != len(shape) or not all(isinstance(v, int) and 0 <= v < n for v, n in zip(cell, shape)):
        raise ArgumentError(
            f"{net.layer}: {side} cell {','.join(map(str, cell))} is not a cell of the {side} "
            f"{'×'.join(map(str, shape))}. Expected {len(shape)} indices (c,i,j order), each 0 ≤ index < size."
        )
    return divmod(_flat(cell, shape), positions)


def _product(per_dim):
    """All combinations of one entry per dim (row-major), ``[()]`` without dims."""
    combos = [()]
    for entries in per_dim:
        combos = [combo + (entry,) for combo in combos for entry in entries]
    return combos
