"""The dense-equivalent matrix of any linear layer: ``y.flatten(1) = x.flatten(1) @ M.T + b``.

:func:`dense_matrix` returns ``M`` (``[out_features, in_features]``, input and output flattened
C-major) and :func:`dense_bias` the constant part ``b`` (the layer's bias, or a BatchNorm's shift),
which is *not* part of ``M``. Both are built constructively from the layer's weights by index
arithmetic (:mod:`layerlab.convert.entries`); ``sparse=True`` builds a COO tensor without ever
forming the dense one. Memory is estimated first (:mod:`layerlab.limits`).

Supported layers: ``Linear``/``Dense`` (on ``(..., in_features)``), ``Conv*d``,
``ConvTranspose*d``, ``LocallyConnected*d``, ``TiledConv*d``, ``LowRankLocallyConnected*d``, ``AvgPool*d``,
``AdaptiveAvgPool*d``, ``BatchNorm*d`` in eval mode with running statistics, and the identities
``Flatten``, ``Unflatten``, ``Identity`` and ``Dropout*`` in eval mode.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from layerlab.analysis.modules import spec_of
from layerlab.arith import output_sizes
from layerlab.convert.entries import (
    Entries,
    adaptive_index,
    conv_family_entries,
    structure_size,
    tile_position,
    window_index,
)
from layerlab.convert.geometry import check_input, geometry_of
from layerlab.errors import ArgumentError, ShapeError
from layerlab.functional.lowrank import lowrank_local_bias, lowrank_local_weight
from layerlab.limits import check_size, format_bytes

__all__ = ["dense_matrix", "dense_bias", "layer_entries", "estimate_entries", "SUPPORTED"]

SUPPORTED = ("Linear/Dense, Conv1d/2d/3d, ConvTranspose1d/2d/3d, LocallyConnected1d/2d/3d, "
             "TiledConv1d/2d/3d, LowRankLocallyConnected1d/2d/3d, AvgPool1d/2d/3d, AdaptiveAvgPool1d/2d/3d, GlobalAvgPool, BatchNorm1d/2d/3d in eval "
             "mode, Flatten, Unflatten, Identity, Dropout in eval mode")

_IDENTITIES = (nn.Flatten, nn.Unflatten, nn.Identity)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_AVG_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE_AVG = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)


def _spec_name(layer) -> str | None:
    spec_fn = getattr(layer, "layer_spec", None)
    return type(spec_fn()).__name__ if spec_fn is not None else None


def _kind(layer) -> str:
    """Classify a module: dense, conv (family), avgpool, adaptive, global, batchnorm, identity."""
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in layer.parameters(recurse=False)):
        raise ArgumentError(
            f"dense_matrix: {layer!r} is a lazy layer whose weight is not materialised yet. Run one "
            "forward pass on an input of the right shape first"
        )
    if isinstance(layer, nn.Linear) or _spec_name(layer) == "DenseSpec":
        return "dense"
    if geometry_of(layer) is not None:
        return "conv"
    if isinstance(layer, _AVG_POOLS):
        return "avgpool"
    if isinstance(layer, _ADAPTIVE_AVG):
        return "adaptive"
    spec = layer.layer_spec() if _spec_name(layer) == "AdaptivePoolSpec" else None
    if spec is not None and spec.op == "avg" and spec.flatten_output:
        return "global"  # layerlab GlobalAvgPool: mean over all positions, (C, *spatial) -> (C,)
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        if layer.training or not layer.track_running_stats or layer.running_mean is None:
            raise ArgumentError(
                f"dense_matrix: {layer!r} normalises with the statistics of the batch (training "
                "mode or track_running_stats=False), which is not a fixed linear map of one sample. "
                "Call layer.eval() on a BatchNorm that tracks running statistics"
            )
        return "batchnorm"
    if isinstance(layer, _IDENTITIES):
        return "identity"
    if isinstance(layer, _DROPOUTS):
        if layer.training and layer.p > 0:
            raise ArgumentError(
                f"dense_matrix: {layer!r} in training mode multiplies by a random mask, not a fixed "
                "matrix. Call layer.eval() first"
            )
        return "identity"
    raise ArgumentError(
        f"dense_matrix: {layer!r} is not a linear layer (not of the form y = M·x + b), so it has no "
        f"dense-equivalent matrix. Supported: {SUPPORTED}. For a non-linear layer (ReLU, MaxPool, "
        "...) use the Jacobian at an input: torch.autograd.functional.jacobian"
    )


def _shape(input_shape, who: str) -> tuple[int, ...]:
    if isinstance(input_shape, int) and not isinstance(input_shape, bool):
        input_shape = (input_shape,)
    try:
        shape = tuple(int(n) for n in input_shape)
    except (TypeError, ValueError):
        shape = None
    if not shape or any(n < 1 for n in shape):
        raise ShapeError(f"{who}: input_shape must be a per-sample shape of positive sizes (no batch "
                         f"dimension), e.g. (3, 32, 32). Received: input_shape={input_shape!r}")
    return shape


def _channelwise(channels: int, in_size, index, valid, weight_per_position, dtype) -> Entries:
    """Entries of an op applied to each channel alone with per-output-position weights."""
    L, K = index.shape
    l_in = math.prod(in_size)
    c = torch.arange(channels).view(channels, 1, 1)
    l = torch.arange(L).view(1, L, 1)
    full = (channels, L, K)
    mask = valid.view(1, L, K).expand(full)
    rows = (c * L + l).expand(full)[mask]
    cols = (c * l_in + index.view(1, L, K)).expand(full)[mask]
    values = weight_per_position.to(dtype).view(1, L, 1).expand(full)[mask]
    return Entries(rows=rows, cols=cols, values=values, tie=None, shape=(channels * L, channels * l_in),
                   offset=None)


def _avgpool_entries(layer, shape, dtype) -> Entries:
    ndim = next(n for n, cls in enumerate(_AVG_POOLS, start=1) if isinstance(layer, cls))
    who = f"dense_matrix({layer!r})"
    if len(shape) != ndim + 1:
        raise ShapeError(f"{who}: expected a per-sample input (C, *spatial) with {ndim} spatial sizes. "
                         f"Received: input_shape={shape}")
    spec = spec_of(layer)
    kernel, stride, padding = spec.kernel_size, spec.stride, spec.padding
    in_size = shape[1:]
    out = output_sizes(in_size, kernel, stride, padding, spec.dilation, spec.ceil_mode)
    if any(o < 1 for o in out):
        raise ShapeError(f"{who}: the input {shape} is too small for kernel_size={kernel}; output would "
                         f"be {out}. Use a larger input or a smaller kernel")
    index, valid = window_index(in_size, out, kernel, stride, padding, (1,) * ndim)
    divisor = torch.ones((1,) * ndim, dtype=torch.float64)
    for d, (n, o, k, s, p) in enumerate(zip(in_size, out, kernel, stride, padding)):
        start = torch.arange(o) * s - p
        if layer.count_include_pad:
            size = torch.minimum(start + k, torch.tensor(n + p)) - start
        else:
            size = torch.minimum(start + k, torch.tensor(n)) - start.clamp(min=0)
        view = [1] * ndim
        view[d] = o
        divisor = divisor * size.to(torch.float64).view(view)
    override = getattr(layer, "divisor_override", None)
    if override:
        divisor = torch.full(out, float(override), dtype=torch.float64)
    return _channelwise(shape[0], in_size, index, valid, 1.0 / divisor.expand(out).reshape(-1), dtype)


def _adaptive_entries(layer, shape, dtype) -> Entries:
    ndim = next(n for n, cls in enumerate(_ADAPTIVE_AVG, start=1) if isinstance(layer, cls))
    who = f"dense_matrix({layer!r})"
    if len(shape) != ndim + 1:
        raise ShapeError(f"{who}: expected a per-sample input (C, *spatial) with {ndim} spatial sizes. "
                         f"Received: input_shape={shape}")
    in_size = shape[1:]
    out = spec_of(layer).analyse(shape).output_shape[1:]  # an output_size of None keeps that input size
    index, valid, widths = adaptive_index(in_size, out)
    counts = torch.ones((1,) * ndim, dtype=torch.float64)
    for d, (o, width) in enumerate(zip(out, widths)):
        view = [1] * ndim
        view[d] = o
        counts = counts * width.to(torch.float64).view(view)
    return _channelwise(shape[0], in_size, index, valid, 1.0 / counts.expand(out).reshape(-1), dtype)


def _batchnorm_entries(layer, shape, dtype) -> Entries:
    who = f"dense_matrix({layer!r})"
    if shape[0] != layer.num_features:
        raise ShapeError(f"{who}: expected {layer.num_features} channels first in the per-sample input "
                         f"shape. Received: input_shape={shape}")
    scale = torch.rsqrt(layer.running_var.to(torch.float64) + layer.eps)
    shift = -layer.running_mean.to(torch.float64) * scale
    if layer.affine:
        scale = scale * layer.weight.to(torch.float64)
        shift = shift * layer.weight.to(torch.float64) + layer.bias.to(torch.float64)
    per_channel = math.prod(shape[1:])
    n = shape[0] * per_channel
    diag = torch.arange(n)
    return Entries(rows=diag, cols=diag, values=scale.repeat_interleave(per_channel).to(dtype), tie=None,
                   shape=(n, n), offset=shift.repeat_interleave(per_channel).to(dtype))


def _dense_entries(layer, shape) -> Entries:
    weight = layer.weight  # (out_features, in_features)
    out_f, in_f = weight.shape
    if shape[-1] != in_f:
        raise ShapeError(
            f"{layer!r}: expected {in_f} input features in the last dimension. Received: "
            f"input_shape={shape}; flatten the input first (Flatten) or fix in_features"
        )
    rest = math.prod(shape[:-1])
    r = torch.arange(rest).view(rest, 1, 1)
    o = torch.arange(out_f).view(1, out_f, 1)
    i = torch.arange(in_f).view(1, 1, in_f)
    full = (rest, out_f, in_f)
    tie = (o * in_f + i).expand(full).reshape(-1)
    bias = getattr(layer, "bias", None)
    return Entries(
        rows=(r * out_f + o).expand(full).reshape(-1),
        cols=(r * in_f + i).expand(full).reshape(-1),
        values=weight.reshape(-1)[tie],
        tie=tie,
        shape=(rest * out_f, rest * in_f),
        offset=None if bias is None else bias.repeat(rest),
    )


def _conv_weight(layer, geometry) -> torch.Tensor:
    """The weight in the layout of :func:`conv_family_entries` (a low-rank layer's per position)."""
    if geometry.kind == "lowrank":
        return lowrank_local_weight(layer.weight, layer.combining_weights(), geometry.groups)
    return layer.weight


def _conv_offset(layer, geometry, in_size) -> torch.Tensor | None:
    bias = getattr(layer, "bias", None)
    if geometry.kind == "lowrank" and bias is not None:
        bias = lowrank_local_bias(bias, layer.combining_weights())  # (C_out, *out_size) or (C_out,)
    if bias is None:
        return None
    out = geometry.output_size(in_size)
    L = math.prod(out)
    if bias.dim() == 1:  # (C_out,) shared over positions
        return bias.repeat_interleave(L)
    if geometry.kind == "tiled":  # (C_out, *tile_size)
        return bias.reshape(bias.shape[0], -1)[:, tile_position(out, geometry.tile_size)].reshape(-1)
    return bias.reshape(-1)  # (C_out, *out_size) per location


def estimate_entries(layer, input_shape) -> tuple[int, tuple[int, int]]:
    """``(entries, (out_features, in_features))`` of a layer's matrix, computed without allocating.

    ``entries`` is an upper bound of the structurally non-zero entries (exact with zero padding
    when every tap is inside the input).
    """
    shape = _shape(input_shape, f"dense_matrix({layer!r})")
    kind = _kind(layer)
    if kind == "conv":
        geometry = geometry_of(layer)
        out = check_input(geometry, shape, repr(layer))
        return structure_size(geometry, shape[1:]), (geometry.out_channels * math.prod(out), math.prod(shape))
    if kind == "dense":
        out_f, in_f = layer.weight.shape
        rest = math.prod(shape[:-1])
        return rest * out_f * in_f, (rest * out_f, rest * in_f)
    if kind in ("identity", "batchnorm"):
        n = math.prod(shape)
        return n, (n, n)
    entries = _entries_unchecked(layer, shape, torch.float64)  # pools: small index tensors only
    return int(entries.rows.numel()), entries.shape


def _entries_unchecked(layer, shape, dtype) -> Entries:
    kind = _kind(layer)
    if kind == "dense":
        return _dense_entries(layer, shape)
    if kind == "conv":
        geometry = geometry_of(layer)
        check_input(geometry, shape, repr(layer))
        entries = conv_family_entries(geometry, shape[1:], _conv_weight(layer, geometry))
        offset = _conv_offset(layer, geometry, shape[1:])
        return Entries(entries.rows, entries.cols, entries.values, entries.tie, entries.shape, offset)
    if kind == "avgpool":
        return _avgpool_entries(layer, shape, dtype)
    if kind == "adaptive":
        return _adaptive_entries(layer, shape, dtype)
    if kind == "batchnorm":
        return _batchnorm_entries(layer, shape, dtype)
    if kind == "global":
        if len(shape) < 2:
            raise ShapeError(f"dense_matrix({layer!r}): expected a per-sample input (C, *spatial) with 1 to 3 "
                             f"spatial sizes. Received: input_shape={shape}")
        channels, positions = shape[0], math.prod(shape[1:])
        return Entries(rows=torch.arange(channels).repeat_interleave(positions), cols=torch.arange(channels * positions),
                       values=torch.full((channels * positions,), 1.0 / positions, dtype=dtype), tie=None,
                       shape=(channels, channels * positions), offset=None)
    n = math.prod(shape)
    diag = torch.arange(n)
    return Entries(rows=diag, cols=diag, values=torch.ones(n, dtype=dtype), tie=None, shape=(n, n), offset=None)


def _dtype(layer, dtype):
    if dtype is not None:
        return dtype
    weight = getattr(layer, "weight", None)
    return weight.dtype if isinstance(weight, torch.Tensor) else torch.get_default_dtype()


def layer_entries(layer, input_shape, *, max_bytes: int | None = None, dtype=None) -> Entries:
    """The :class:`~layerlab.convert.entries.Entries` of a linear layer (size-checked first).

    Args:
        layer: a supported linear module (see :data:`SUPPORTED`).
        input_shape: per-sample input shape, e.g. ``(3, 32, 32)``.
        max_bytes: memory limit (default: ``$LAYERLAB_MAX_BYTES`` or 2 GiB).
        dtype: dtype of the values of constant layers (default: the weight's dtype, else torch's
            default dtype).
    """
    dtype = _dtype(layer, dtype)
    n, _ = estimate_entries(layer, input_shape)
    check_size(f"the structure of {layer!r} on input {tuple(input_shape)}", n, 3 * 8 + dtype.itemsize,
               max_bytes=max_bytes, hint="Use a smaller input shape")
    return _entries_unchecked(layer, _shape(input_shape, repr(layer)), dtype)


def dense_matrix(layer, input_shape, *, sparse: bool = False, max_bytes: int | None = None,
                 dtype=None) -> torch.Tensor:
    """The matrix ``M`` with ``layer(x).flatten(1) == x.flatten(1) @ M.T + dense_bias(layer, ...)``.

    Built by index arithmetic from the layer's weights (no autograd): a conv's matrix is
    block-Toeplitz with ``C_out·C_in/groups·∏k`` distinct values, a local layer's has a sparsity
    mask and no ties, a transposed conv's is the transpose of the conv with the same weight. The
    bias (or a BatchNorm's shift) is *not* in ``M``: get it from :func:`dense_bias`.

    Args:
        layer: a linear module: Linear/Dense, Conv*, ConvTranspose*, LocallyConnected*, TiledConv*,
            LowRankLocallyConnected*,
            AvgPool*, AdaptiveAvgPool*, BatchNorm* (eval mode), Flatten, Identity, Dropout (eval).
        input_shape: per-sample input shape without batch dimension, e.g. ``(3, 32, 32)``.
        sparse: return a coalesced ``torch.sparse_coo_tensor`` built without the dense form
            (default: ``False``).
        max_bytes: refuse (:class:`~layerlab.errors.SizeLimitError`) when the result would exceed
            this many bytes (default: ``$LAYERLAB_MAX_BYTES`` or 2 GiB).
        dtype: dtype for layers without weights (default: the weight's dtype or torch's default).

    Shape:
        ``[out_features, in_features]`` with ``in_features = ∏input_shape`` and
        ``out_features = ∏output_shape`` (C-major flattening, as ``x.flatten(1)``).

    Raises:
        ArgumentError: the layer is not linear (ReLU, MaxPool, BatchNorm in training mode, ...).
        ShapeError: the input shape does not fit the layer.
        SizeLimitError: the estimate exceeds the limit; nothing was allocated.

    Examples:
        >>> conv = torch.nn.Conv2d(1, 1, 3, bias=False)
        >>> dense_matrix(conv, (1, 6, 6)).shape
        torch.Size([16, 36])
    """
    dtype = _dtype(layer, dtype)
    n, (out_f, in_f) = estimate_entries(layer, input_shape)
    who = f"dense_matrix({layer!r}) on input {tuple(input_shape)}"
    if not sparse:
        check_size(who, out_f * in_f, dtype.itemsize, max_bytes=max_bytes,
                   hint=f"The layer has at most {n:,} structural non-zeros "
                   f"(~{format_bytes(n * (16 + dtype.itemsize))} as sparse=True); use sparse=True or "
                   "an aggregated picture")
    entries = layer_entries(layer, input_shape, max_bytes=max_bytes, dtype=dtype)
    with torch.no_grad():
        values = entries.values.detach().to(dtype)  # on the layer's device
        rows, cols = entries.rows.to(values.device), entries.cols.to(values.device)
        if sparse:
            indices = torch.stack([rows, cols])
            return torch.sparse_coo_tensor(indices, values, entries.shape, check_invariants=True).coalesce()
        matrix = torch.zeros(entries.shape, dtype=dtype, device=values.device)
        return matrix.index_put_((rows, cols), values, accumulate=True)


def dense_bias(layer, input_shape, *, dtype=None) -> torch.Tensor:
    """The constant part ``b`` of ``layer(x).flatten(1) == x.flatten(1) @ M.T + b``.

    The layer's bias broadcast over output positions (per location for local layers, per tile for
    tiled ones), a BatchNorm's ``beta − mean·gamma/sqrt(var + eps)``, or zeros.

    Shape:
        ``(out_features,)``.

    Examples:
        >>> conv = torch.nn.Conv1d(2, 3, 3)
        >>> dense_bias(conv, (2, 5)).shape  # 3 channels × 3 positions
        torch.Size([9])
    """
    dtype = _dtype(layer, dtype)
    _, (out_f, _) = estimate_entries(layer, input_shape)
    kind = _kind(layer)
    shape = _shape(input_shape, repr(layer))
    if kind in ("avgpool", "adaptive", "global", "identity"):
        return torch.zeros(out_f, dtype=dtype)  # layers without parameters: on the CPU
    if kind == "batchnorm":
        offset = _batchnorm_entries(layer, shape, dtype).offset
    elif kind == "dense":
        bias = getattr(layer, "bias", None)
        offset = None if bias is None else bias.repeat(math.prod(shape[:-1]))
    else:
        offset = _conv_offset(layer, geometry_of(layer), shape[1:])
    if offset is None:
        return torch.zeros(out_f, dtype=dtype, device=layer.weight.device)
    return offset.detach().to(dtype).clone()
