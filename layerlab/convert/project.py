"""Projections back down the chain dense → local → conv, with the loss reported.

Going *up* (conv → local → dense) is exact; going down drops what the smaller layer cannot hold:

- :func:`local_to_conv`: the conv whose filter is the mean of the local layer's position filters —
  the least-squares shared filter (minimises ``Σ_p ‖w_p − w‖²``); a location bias becomes its mean
  per channel.
- :func:`dense_to_local`: keep the dense weights inside the local windows, drop the rest.

Both return ``(module, loss)``: ``loss = ‖θ − θ̂‖_F / ‖θ‖_F``, the relative Frobenius norm of what
is dropped, over all parameters of the source layer (weight and bias concatenated; the
dense-equivalent matrix for :func:`dense_to_local`). ``loss == 0`` exactly when the projection
is exact (a local layer with equal filters, a dense layer that is zero outside the windows).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from layerlab.convert.entries import conv_family_entries
from layerlab.convert.geometry import check_input
from layerlab.convert.layers import _conv_class, _geometry, _new_local, _padding_arg, _spatial
from layerlab.errors import ArgumentError, ShapeError

__all__ = ["local_to_conv", "dense_to_local"]


def _relative(dropped_sq: torch.Tensor, total_sq: torch.Tensor) -> float:
    total = float(total_sq)
    return math.sqrt(max(float(dropped_sq), 0.0) / total) if total > 0 else 0.0


def local_to_conv(local) -> tuple[nn.Module, float]:
    """Project a locally connected layer onto a conv: shared filter = mean of the position filters.

    ``w = (1/L) Σ_p weight[p]`` over the ``L = ∏output_size`` positions (the least-squares shared
    filter); bias ``b[c] = mean_p bias[c, p]`` for a location bias, copied for a shared one.

    Args:
        local: ``LocallyConnected{1,2,3}d``.

    Returns:
        ``(conv, loss)``: layerlab ``Conv{1,2,3}d`` with the same window arguments and
        ``loss = ‖θ − θ̂‖_F / ‖θ‖_F`` over weight and bias (0.0 when every position has the same
        filter, e.g. after :func:`~layerlab.convert.conv_to_local`).

    Examples:
        >>> local = conv_to_local(torch.nn.Conv2d(1, 2, 3), (5, 5))
        >>> conv, loss = local_to_conv(local)
        >>> loss
        0.0
    """
    geometry = _geometry(local, ("local",), "local_to_conv")
    ndim = geometry.ndim
    with torch.no_grad():  # float64 sums: the mean of equal float32 filters is exactly that filter
        weight = local.weight.detach().to(torch.float64)  # (*out, G, C_in/G, *k, C_out/G)
        mean = weight.mean(dim=tuple(range(ndim)))  # (G, C_in/G, *k, C_out/G)
        dropped = (weight - mean).square().sum()
        total = weight.square().sum()
        conv_weight = mean.movedim(-1, 1).reshape(geometry.out_channels, *mean.shape[1:-1])  # (C_out, C_in/G, *k)
        bias = None
        if local.bias is not None:
            b = local.bias.detach().to(torch.float64).reshape(local.bias.shape[0], -1)  # (C_out, 1 | positions)
            bias = b.mean(dim=1)  # (C_out,)
            dropped = dropped + (b - bias[:, None]).square().sum()
            total = total + b.square().sum()
    dtype = local.weight.dtype
    conv = _conv_class(ndim)(
        geometry.in_channels, geometry.out_channels, geometry.kernel_size, stride=geometry.stride,
        padding=_padding_arg(local), dilation=geometry.dilation, groups=geometry.groups, bias=bias is not None,
        padding_mode=geometry.padding_mode, device="meta", dtype=dtype,
    )
    conv.weight = nn.Parameter(conv_weight.to(dtype).contiguous())
    conv.bias = None if bias is None else nn.Parameter(bias.to(dtype))
    return conv, _relative(dropped, total)


def dense_to_local(dense, like, *, input_size=None) -> tuple[nn.Module, float]:
    """Project a dense layer onto a local layer's windows: keep the in-window weights, drop the rest.

    Entry ``(row, col)`` of the Dense weight is copied to the local weight that connects the same
    output and input features; entries no window covers are dropped. Taps that fall on zero padding
    connect nothing and are set to 0. The Dense bias (one per output feature) becomes the local
    layer's location bias exactly.

    Args:
        dense: ``torch.nn.Linear`` / layerlab ``Dense`` on ``x.flatten(1)``, with
            ``in_features = C_in·∏input_size`` and ``out_features = C_out·∏output_size``.
        like: the structure to project on: a ``LocallyConnected*d`` (its ``input_size`` is used) or
            a conv (``torch.nn``/layerlab ``Conv*d``, then ``input_size`` is required).
        input_size: spatial input size when ``like`` is a conv (default: ``None``).

    Returns:
        ``(local, loss)``: ``LocallyConnected{1,2,3}d`` shaped like ``like`` (bias ``"location"`` when
        the Dense has a bias) and ``loss = ‖dropped weights‖_F / ‖(W, b)‖_F``.

    Raises:
        ArgumentError: ``like`` is neither, a non-zero padding_mode (several taps would share one
            dense entry), or ``input_size`` missing for a conv.
        ShapeError: the Dense's sizes do not match ``like`` on that input.

    Examples:
        >>> local, loss = dense_to_local(torch.nn.Linear(36, 32), torch.nn.Conv2d(1, 2, 3), input_size=(6, 6))
        >>> tuple(local.weight.shape), 0 < loss < 1  # (*out_size, G, C_in, *k, C_out); most weights dropped
        ((4, 4, 1, 1, 3, 3, 2), True)
    """
    who = "dense_to_local"
    if not isinstance(dense, nn.Linear) or isinstance(dense.weight, nn.parameter.UninitializedParameter):
        raise ArgumentError(f"{who}: expected a materialised Dense or torch.nn.Linear. Received: {dense!r}")
    geometry = _geometry(like, ("local", "conv"), who)
    if geometry.padding_mode != "zeros":
        raise ArgumentError(
            f"{who}: like={like!r} pads with padding_mode={geometry.padding_mode!r}, where several taps read "
            "the same input and one dense entry cannot be split between them. Use a layer with zero padding"
        )
    if geometry.kind == "local":
        size = geometry.input_size
    elif input_size is None:
        raise ArgumentError(f"{who}: like={like!r} is a conv, which works on any size; pass input_size=(...). "
                            "Received: input_size=None")
    else:
        size = _spatial(input_size, geometry.ndim, who)
    out_size = check_input(geometry, (geometry.in_channels, *size), f"{who}(like={like!r})")
    expected = (geometry.out_channels * math.prod(out_size), geometry.in_channels * math.prod(size))
    if tuple(dense.weight.shape) != expected:
        raise ShapeError(
            f"{who}: {dense!r} has weight shape {tuple(dense.weight.shape)}, but {like!r} on input size {size} "
            f"needs [out_features, in_features] = {list(expected)}; pick the like-layer and input_size the "
            "Dense was trained for"
        )
    local_shape = (*out_size, geometry.groups, geometry.in_channels // geometry.groups, *geometry.kernel_size,
                   geometry.out_channels // geometry.groups)
    local_geometry = type(geometry)(**{**geometry.__dict__, "kind": "local"})
    with torch.no_grad():
        w = dense.weight.detach()
        weight = torch.zeros(math.prod(local_shape), dtype=w.dtype, device=w.device)  # flat local weight
        entries = conv_family_entries(local_geometry, size, weight)  # rows, cols and the local tie of each
        kept = w[entries.rows, entries.cols]
        weight[entries.tie] = kept
        total = w.square().sum()
        dropped = total - kept.square().sum()
        bias = None
        if dense.bias is not None:
            bias = dense.bias.detach().reshape(geometry.out_channels, *out_size).clone()
            total = total + bias.square().sum()
    local = _new_local(like, geometry, size, None if bias is None else "location", weight.reshape(local_shape), bias)
    return local, _relative(dropped, total)
