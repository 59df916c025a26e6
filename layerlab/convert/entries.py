"""The non-zero entries of a linear layer's matrix, by index arithmetic (no autograd, no probing).

A linear layer maps a sample ``x`` (flattened C-major, ``x.flatten(1)``) to
``y = M·x + b`` with ``M`` of shape ``[out_features, in_features]``. :class:`Entries` lists the
structurally non-zero entries of ``M`` as coordinate triples and, for layers with weights, the index
of the weight each entry copies (its *tie*): a conv's matrix is a block-Toeplitz matrix with
``C_out·C_in/groups·∏k`` distinct values, a local layer's has one weight per entry.

For an output position ``o`` and kernel tap ``t`` the input position along a spatial dimension is
(the convolution formula of torch's ``Conv*d``)::

    i = o·stride − pad_left + t·dilation

valid when ``0 <= i < in``; padding modes other than zeros fold ``i`` back into the input
(reflect, replicate, circular), so several taps can land on the same entry and add up.
A transposed conv's matrix is the transpose of the conv with the same weight and swapped shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from layerlab.arith import adaptive_windows
from layerlab.arith.cells import fold, tile_index, weight_id
from layerlab.convert.geometry import TRANSPOSED, LayerGeometry

__all__ = ["Entries", "combine_dims", "window_index", "adaptive_index", "conv_family_entries",
           "structure_size", "tile_position"]


@dataclass(frozen=True)
class Entries:
    """Coordinates of the structurally non-zero entries of a layer's matrix.

    Attributes:
        rows, cols: ``(nnz,)`` int64 row (output feature) and column (input feature) indices.
        values: ``(nnz,)`` entry values (differentiable w.r.t. the layer's weight). Duplicate
            coordinates (non-zero padding modes) add up.
        tie: ``(nnz,)`` int64 index into the layer's flattened ``weight`` for each entry, or ``None``
            for layers whose entries are constants of the layer (pools, norms).
        shape: ``(out_features, in_features)``.
        offset: ``(out_features,)`` the constant part ``b`` of ``y = M·x + b`` or ``None`` if zero.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    tie: torch.Tensor | None
    shape: tuple[int, int]
    offset: torch.Tensor | None


def combine_dims(in_size, per_dim):
    """Combine per-dimension windows into flat ``(L, K)`` input indices and validity.

    Args:
        in_size: spatial input size.
        per_dim: one ``(index, valid)`` pair per spatial dimension, each ``(out_d, k_d)``.

    Shape:
        Returns ``(index, valid)``, both ``(L, K)`` with ``L = ∏out_d``, ``K = ∏k_d``; positions and
        taps flattened row-major (as ``F.unfold``).
    """
    ndim = len(in_size)
    flat = torch.zeros((1,) * (2 * ndim), dtype=torch.long)
    valid = torch.ones((1,) * (2 * ndim), dtype=torch.bool)
    for d, (index, ok) in enumerate(per_dim):
        shape = [1] * (2 * ndim)
        shape[d], shape[ndim + d] = index.shape
        flat = flat + index.view(shape) * math.prod(in_size[d + 1:])
        valid = valid & ok.view(shape)
    out = tuple(index.shape[0] for index, _ in per_dim)
    kernel = tuple(index.shape[1] for index, _ in per_dim)
    L, K = math.prod(out), math.prod(kernel)
    return flat.expand(out + kernel).reshape(L, K), valid.expand(out + kernel).reshape(L, K)


def window_index(in_size, out_size, kernel_size, stride, pad_left, dilation, padding_mode="zeros"):
    """Flat input index and validity of every (output position, kernel tap) pair of a window op.

    Args:
        in_size, out_size, kernel_size, stride, pad_left, dilation: one int per spatial dimension.
        padding_mode: ``"zeros"`` (out-of-range taps are invalid) or a folding mode.

    Shape:
        Returns ``(index, valid)``, both ``(L, K)``, see :func:`combine_dims`.
    """
    per_dim = []
    for n, o, k, s, p, d in zip(in_size, out_size, kernel_size, stride, pad_left, dilation):
        position = torch.arange(o)[:, None] * s - p + torch.arange(k)[None, :] * d  # (out_d, k_d)
        per_dim.append(fold(position, n, padding_mode))
    return combine_dims(in_size, per_dim)


def adaptive_index(in_size, out_size):
    """Flat input index and validity of every (output position, tap) pair of adaptive pooling.

    Window ``i`` along a dimension covers ``[floor(i·in/out), ceil((i+1)·in/out))``
    (:func:`layerlab.arith.adaptive_windows`); windows differ in width, so taps past a window's end
    are invalid.

    Shape:
        Returns ``(index, valid, widths)``: ``index`` and ``valid`` ``(L, K)`` (see
        :func:`combine_dims`), ``widths`` one ``(out_d,)`` tensor of window widths per dimension.
    """
    per_dim, widths = [], []
    for n, o in zip(in_size, out_size):
        bounds = torch.tensor(adaptive_windows(n, o)).view(o, 2)  # [start, end) per output position
        start, width = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
        taps = torch.arange(int(width.max()))[None, :]
        per_dim.append(((start[:, None] + taps).clamp(max=n - 1), taps < width[:, None]))
        widths.append(width)
    index, valid = combine_dims(in_size, per_dim)
    return index, valid, widths


def tile_position(out_size, tile_size) -> torch.Tensor:
    """``(L,)`` flat tile index ``p mod tile_size`` of every flat output position ``p``
    (:func:`layerlab.arith.cells.tile_index`)."""
    return tile_index(torch.arange(math.prod(out_size)), tuple(out_size), tuple(tile_size))


def structure_size(geometry: LayerGeometry, in_size) -> int:
    """Number of (output, input, tap) triples before dropping padding taps: ``C_in·C_out/groups·L·K``.

    ``L`` counts the output positions of a conv, local or tiled layer and the *input* positions of
    a transposed conv or transposed local layer (their windows scatter from the input).
    """
    positions = math.prod(in_size if geometry.kind in TRANSPOSED else geometry.output_size(in_size))
    return (geometry.in_channels * geometry.out_channels // geometry.groups * positions
            * math.prod(geometry.kernel_size))


def conv_family_entries(geometry: LayerGeometry, in_size, weight: torch.Tensor) -> Entries:
    """Entries of a conv, transposed conv, local, tiled or transposed local layer for a spatial input size.

    The weight layouts are torch's ``(C_out, C_in/groups, *k)`` for convs,
    ``(C_in, C_out/groups, *k)`` for transposed convs, and the location-major
    ``(*out_size | *tile_size, groups, C_in/groups, *k, C_out/groups)`` of Contract 3 for local and
    tiled layers (and low-rank ones, whose per-position weight is materialised first); a transposed
    local layer's ``(*in_size, groups, C_out/groups, *k, C_in/groups)`` is the weight of the local
    layer (``C_out → C_in`` over its output grid) whose matrix, transposed, is its own. The ties are
    :func:`layerlab.arith.cells.weight_id` of every entry, computed on tensors. No bias (see
    :func:`layerlab.convert.dense_bias`).
    """
    in_size = tuple(in_size)
    out_size = geometry.output_size(in_size)
    transposed = geometry.kind in TRANSPOSED
    if transposed:
        # the conv or local layer whose matrix this is the transpose of: (C_in <- C_out), out_size -> in_size
        c_in, c_out = geometry.out_channels, geometry.in_channels
        win_in, win_out = out_size, in_size
    else:
        c_in, c_out = geometry.in_channels, geometry.out_channels
        win_in, win_out = in_size, out_size
    groups = geometry.groups
    cg, og = c_in // groups, c_out // groups
    index, valid = window_index(win_in, win_out, geometry.kernel_size, geometry.stride, geometry.pad_left,
                                geometry.dilation, geometry.padding_mode)  # (L, K)
    L, K = index.shape
    l_in = math.prod(win_in)
    lv, kv = valid.nonzero().unbind(1)  # (V,) the (position, tap) pairs inside the input
    source = index[lv, kv]  # (V,) flat input position of each pair
    g = torch.arange(groups).view(groups, 1, 1, 1)  # broadcast to (G, O_g, C_g, V)
    o = torch.arange(og).view(1, og, 1, 1)
    c = torch.arange(cg).view(1, 1, cg, 1)
    full = (groups, og, cg, lv.numel())
    rows = ((g * og + o) * L + lv).expand(full).reshape(-1)
    cols = ((g * cg + c) * l_in + source).expand(full).reshape(-1)
    # the layer's own output and input channel (within the group) and position: a transposed layer's
    # window runs from its output to its input
    o_own, c_own, out_position, in_position = (c, o, source, lv) if transposed else (o, c, lv, source)
    kind = "local" if geometry.kind == "lowrank" else geometry.kind  # a low-rank weight comes materialised per position
    tie = weight_id(kind, g, o_own, c_own, kv, out_position, in_position, groups=groups,
                    per_in=geometry.in_channels // groups, per_out=geometry.out_channels // groups, taps=K,
                    out_spatial=out_size, tile_size=geometry.tile_size)
    tie = tie.expand(full).reshape(-1)
    shape = (c_out * L, c_in * l_in)
    if transposed:
        rows, cols, shape = cols, rows, (shape[1], shape[0])
    return Entries(rows=rows, cols=cols, values=weight.reshape(-1)[tie], tie=tie, shape=shape, offset=None)
