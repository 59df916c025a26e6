"""Exact conversions between layer types: conv → local → dense, tiled/low-rank ↔ local, dense → conv (FCN).

Every conversion returns a new module whose output equals the original's (to float rounding;
exactly in float64 up to summation order): the *same* linear map written with less sharing.

- :func:`conv_to_local`: copy the conv's filter to every output position (conv bias → the local
  layer's ``"shared"`` bias, so it stays compact).
- :func:`tiled_to_local`: position ``p`` gets the filter bank ``weight[p mod tile_size]``.
- :func:`lowrank_to_local`: position ``p`` gets its mixed filter bank ``Σ_r α[p, r]·weight[r]``;
  :func:`local_to_lowrank` writes any local layer as a low-rank one of rank ``∏out_size``.
- :func:`local_to_dense` / :func:`conv_to_dense`: the dense-equivalent matrix
  (:func:`~layerlab.convert.dense_matrix`) as a :class:`~layerlab.nn.Dense` on ``x.flatten(1)``.
- :func:`dense_to_conv`: a Dense after ``Flatten`` of ``C×H×W`` is a conv with kernel ``H×W``
  (output ``1×1``); on larger inputs it slides (fully convolutional networks, Long et al. 2015).

The new module has the original's dtype and device; parameters are fresh copies (no sharing).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from layerlab.arith._args import ntuple
from layerlab.convert.entries import tile_position
from layerlab.convert.geometry import check_input, geometry_of
from layerlab.convert.matrix import dense_bias, dense_matrix
from layerlab.errors import ArgumentError, ShapeError
from layerlab.functional.lowrank import lowrank_local_bias, lowrank_local_weight
from layerlab.limits import check_size
from layerlab.nn import (
    Conv1d,
    Conv2d,
    Conv3d,
    Dense,
    LocallyConnected1d,
    LocallyConnected2d,
    LocallyConnected3d,
    LowRankLocallyConnected1d,
    LowRankLocallyConnected2d,
    LowRankLocallyConnected3d,
)

__all__ = ["conv_to_local", "tiled_to_local", "lowrank_to_local", "local_to_lowrank", "local_to_dense",
           "conv_to_dense", "dense_to_conv"]


def _spatial(input_size, ndim: int, who: str) -> tuple[int, ...]:
    """Spatial input size (no channel or batch dimension): an int (broadcast) or ``ndim`` positive ints."""
    return ntuple(who, "input_size", input_size, ndim, minimum=1,
                  fix="give the spatial input size only, without the channel and batch dimensions")


def _geometry(layer, kinds: tuple[str, ...], who: str):
    geometry = geometry_of(layer)
    if geometry is None or geometry.kind not in kinds:
        names = {"conv": "Conv1d/2d/3d", "transpose": "ConvTranspose1d/2d/3d", "local": "LocallyConnected1d/2d/3d",
                 "tiled": "TiledConv1d/2d/3d", "lowrank": "LowRankLocallyConnected1d/2d/3d"}
        raise ArgumentError(
            f"{who}: expected a {' or '.join(names[k] for k in kinds)} layer (torch.nn or layerlab). "
            f"Received: {layer!r}"
        )
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in layer.parameters(recurse=False)):
        raise ArgumentError(f"{who}: {layer!r} is a lazy layer whose weight is not materialised yet. Run one "
                            "forward pass on an input of the right shape first")
    return geometry


def _padding_arg(layer):
    """The layer's ``padding`` argument as given (``'same'``/``'valid'`` kept)."""
    return layer.padding if isinstance(layer.padding, str) else tuple(layer.padding)


def _local_class(ndim: int):
    return (LocallyConnected1d, LocallyConnected2d, LocallyConnected3d)[ndim - 1]


def _conv_class(ndim: int):
    return (Conv1d, Conv2d, Conv3d)[ndim - 1]


def _new_local(layer, geometry, input_size, bias_mode, weight: torch.Tensor, bias: torch.Tensor | None):
    """A LocallyConnectedNd with ``layer``'s window arguments and the given parameters."""
    local = _local_class(geometry.ndim)(
        geometry.in_channels, geometry.out_channels, geometry.kernel_size, stride=geometry.stride,
        padding=_padding_arg(layer), dilation=geometry.dilation, groups=geometry.groups,
        bias={"location": True, "shared": "shared", None: False}[bias_mode], padding_mode=geometry.padding_mode, input_size=input_size, device="meta",
        dtype=weight.dtype,
    )
    local.weight = nn.Parameter(weight.contiguous())
    local.bias = None if bias is None else nn.Parameter(bias.contiguous())
    return local


def conv_weight_to_local(weight: torch.Tensor, groups: int, out_size) -> torch.Tensor:
    """Repeat a conv filter at every output position in the local layout (Contract 3).

    Shape:
        ``(C_out, C_in/groups, *k)`` → ``(*out_size, groups, C_in/groups, *k, C_out/groups)``.
    """
    c_out, cg, *kernel = weight.shape
    bank = weight.reshape(groups, c_out // groups, cg, *kernel).movedim(1, -1)  # (G, C_in/G, *k, C_out/G)
    return bank.expand(*out_size, *bank.shape).clone()


def _check_local_size(layer, geometry, out_size, dtype, max_bytes, who):
    """Refuse before building a local weight of ``∏out_size·C_in/groups·∏k·C_out`` elements past the limit."""
    elements = math.prod(out_size) * geometry.in_channels // geometry.groups * math.prod(geometry.kernel_size) \
        * geometry.out_channels
    check_size(f"{who}({layer!r}) with output size {tuple(out_size)}", elements, dtype.itemsize, max_bytes=max_bytes,
               hint="A local layer stores one filter bank per output position; use a smaller input")


def conv_to_local(conv, input_size, *, max_bytes: int | None = None) -> nn.Module:
    """The locally connected layer with the conv's filter at every position (exact).

    ``out[p] = Σ weight[p] · window(x, p)`` with ``weight[p] = w`` for all ``p``: the same multiply-adds
    as the conv (conv ⊂ local). A conv bias becomes the local layer's ``"shared"`` bias.

    Args:
        conv: ``torch.nn.Conv1d/2d/3d`` or a layerlab conv (any stride, padding incl. ``'same'``,
            padding_mode, dilation, groups).
        input_size: spatial input size (an int or one int per dimension); the local layer has one
            filter bank per output position, so it is built for this size.
        max_bytes: memory limit for the local weight (default: ``$LAYERLAB_MAX_BYTES`` or 2 GiB).

    Returns:
        ``LocallyConnected{1,2,3}d`` with ``input_size`` set.

    Examples:
        >>> local = conv_to_local(torch.nn.Conv2d(3, 8, 3, padding=1), (6, 6))
        >>> tuple(local.weight.shape)  # (*out_size, groups, C_in, *k, C_out)
        (6, 6, 1, 3, 3, 3, 8)
    """
    who = "conv_to_local"
    geometry = _geometry(conv, ("conv",), who)
    size = _spatial(input_size, geometry.ndim, who)
    out_size = check_input(geometry, (geometry.in_channels, *size), f"{who}({conv!r})")
    _check_local_size(conv, geometry, out_size, conv.weight.dtype, max_bytes, who)
    with torch.no_grad():
        weight = conv_weight_to_local(conv.weight.detach(), geometry.groups, out_size)
        bias = None if conv.bias is None else conv.bias.detach().clone()
    return _new_local(conv, geometry, size, None if bias is None else "shared", weight, bias)


def tiled_to_local(tiled, input_size=None, *, max_bytes: int | None = None) -> nn.Module:
    """The locally connected layer equal to a tiled conv on a given input size (exact).

    Position ``p`` uses the tiled layer's filter bank ``weight[p mod tile_size]`` and, for a
    ``"location"`` bias, ``bias[:, p mod tile_size]``.

    Args:
        tiled: ``TiledConv{1,2,3}d``.
        input_size: spatial input size (default: ``tiled.input_size`` when the layer has one; a
            tiled conv accepts any size, so usually it must be given).
        max_bytes: memory limit for the local weight (default: ``$LAYERLAB_MAX_BYTES`` or 2 GiB).

    Returns:
        ``LocallyConnected{1,2,3}d`` with the same bias mode.

    Examples:
        >>> from layerlab.nn import TiledConv1d
        >>> tiled_to_local(TiledConv1d(2, 4, 3, tile_size=2), 10).weight.shape  # (L, G, C_in, k, C_out)
        torch.Size([8, 1, 2, 3, 4])
    """
    who = "tiled_to_local"
    geometry = _geometry(tiled, ("tiled",), who)
    if input_size is None:
        input_size = getattr(tiled, "input_size", None)
        if input_size is None:
            raise ArgumentError(f"{who}: {tiled!r} works on any input size; pass input_size=(...) (the "
                                "spatial size the local layer is built for). Received: input_size=None")
    size = _spatial(input_size, geometry.ndim, who)
    out_size = check_input(geometry, (geometry.in_channels, *size), f"{who}({tiled!r})")
    _check_local_size(tiled, geometry, out_size, tiled.weight.dtype, max_bytes, who)

    tiles = tile_position(out_size, geometry.tile_size)  # (L,) flat tile of each position
    with torch.no_grad():
        bank = tiled.weight.detach().reshape(math.prod(geometry.tile_size), *tiled.weight.shape[geometry.ndim:])
        weight = bank[tiles].reshape(*out_size, *bank.shape[1:])
        bias, mode = tiled.bias, getattr(tiled, "bias_mode", None)
        if bias is not None and bias.dim() > 1:  # "location": (C_out, *tile_size) -> (C_out, *out_size)
            bias = bias.detach().reshape(bias.shape[0], -1)[:, tiles].reshape(bias.shape[0], *out_size)
        elif bias is not None:
            bias = bias.detach().clone()
    return _new_local(tiled, geometry, size, mode, weight, bias)


def lowrank_to_local(lowrank, *, max_bytes: int | None = None) -> nn.Module:
    """The locally connected layer equal to a low-rank one (exact).

    Position ``p`` gets the mixed filter bank ``Σ_r α[p, r]·weight[r]`` and, for the default bias,
    ``Σ_r α[p, r]·bias[r]`` (a ``"location"`` bias); a ``"shared"`` bias stays shared.

    Args:
        lowrank: ``LowRankLocallyConnected{1,2,3}d`` with a known input size (built with
            ``input_size`` or called once).
        max_bytes: memory limit for the local weight (default: ``$LAYERLAB_MAX_BYTES`` or 2 GiB).

    Returns:
        ``LocallyConnected{1,2,3}d`` with the same ``input_size``.

    Examples:
        >>> from layerlab.nn import LowRankLocallyConnected2d
        >>> lowrank_to_local(LowRankLocallyConnected2d(3, 8, 3, rank=2, input_size=6)).weight.shape
        torch.Size([4, 4, 1, 3, 3, 3, 8])
    """
    who = "lowrank_to_local"
    geometry = _geometry(lowrank, ("lowrank",), who)
    out_size = geometry.output_size(geometry.input_size)
    _check_local_size(lowrank, geometry, out_size, lowrank.weight.dtype, max_bytes, who)
    with torch.no_grad():
        alpha = lowrank.combining_weights()
        weight = lowrank_local_weight(lowrank.weight.detach(), alpha, geometry.groups)
        bias = lowrank_local_bias(lowrank.bias, alpha)
        bias = None if bias is None else bias.detach().clone()
    return _new_local(lowrank, geometry, geometry.input_size, lowrank.bias_mode, weight, bias)


def local_to_lowrank(local) -> nn.Module:
    """The low-rank layer of rank ``∏out_size`` equal to a locally connected layer (exact).

    One basis bank per output position (``weight[p]`` = the local filter bank at ``p``, in conv
    layout) and ``combining="full", normalize=None`` logits set to the identity, so position ``p``
    mixes only its own bank: every local layer is a low-rank layer of full rank. A ``"location"``
    bias becomes the per-basis bias, a ``"shared"`` one stays shared.

    Args:
        local: ``LocallyConnected{1,2,3}d`` with a known input size.

    Returns:
        ``LowRankLocallyConnected{1,2,3}d`` with ``rank = ∏out_size``.

    Examples:
        >>> from layerlab.nn import LocallyConnected1d
        >>> local_to_lowrank(LocallyConnected1d(2, 4, 3, input_size=10)).weight.shape  # (R, C_out, C_in, k)
        torch.Size([8, 4, 2, 3])
    """
    geometry = _geometry(local, ("local",), "local_to_lowrank")
    ndim = geometry.ndim
    out_size = tuple(local.weight.shape[:ndim])
    positions = math.prod(out_size)
    lowrank = (LowRankLocallyConnected1d, LowRankLocallyConnected2d, LowRankLocallyConnected3d)[ndim - 1](
        geometry.in_channels, geometry.out_channels, geometry.kernel_size, positions, stride=geometry.stride,
        padding=_padding_arg(local), dilation=geometry.dilation, groups=geometry.groups,
        bias={"location": True, "shared": "shared", None: False}[local.bias_mode],
        padding_mode=geometry.padding_mode, input_size=geometry.input_size, combining="full", normalize=None,
        device="meta", dtype=local.weight.dtype,
    )
    with torch.no_grad():
        # (*out, G, C_in/G, *k, O_g) -> (L, G, O_g, C_in/G, *k) -> (L, C_out, C_in/G, *k)
        bank = local.weight.detach().flatten(0, ndim - 1).movedim(-1, 2).flatten(1, 2)
        lowrank.weight = nn.Parameter(bank.contiguous())
        if local.bias is not None:
            bias = local.bias.detach()
            lowrank.bias = nn.Parameter(bias.flatten(1).T.contiguous() if bias.dim() > 1 else bias.clone())
        identity = torch.eye(positions, dtype=local.weight.dtype, device=local.weight.device)
        setattr(lowrank, lowrank._combining_names()[0], nn.Parameter(identity.reshape(*out_size, positions)))
    return lowrank


def _dense_from(layer, input_shape, max_bytes):
    """A Dense holding ``dense_matrix(layer)`` and ``dense_bias(layer)`` (size-checked first)."""
    matrix = dense_matrix(layer, input_shape, max_bytes=max_bytes)
    has_bias = getattr(layer, "bias", None) is not None
    out_f, in_f = matrix.shape
    dense = Dense(out_f, in_features=in_f, bias=has_bias, device="meta", dtype=matrix.dtype)
    dense.weight = nn.Parameter(matrix)
    if has_bias:
        dense.bias = nn.Parameter(dense_bias(layer, input_shape))
    return dense


def local_to_dense(local, *, max_bytes: int | None = None) -> nn.Module:
    """The Dense layer equal to a locally connected (or low-rank local) layer on ``x.flatten(1)`` (exact).

    Its weight is the local layer's dense-equivalent matrix: the local weights inside the windows,
    zeros elsewhere (local ⊂ dense). A location bias becomes the Dense bias as is.

    Args:
        local: ``LocallyConnected{1,2,3}d`` or ``LowRankLocallyConnected{1,2,3}d`` (its
            ``input_size`` fixes the shapes).
        max_bytes: memory limit (default: ``$LAYERLAB_MAX_BYTES`` or 2 GiB).

    Shape:
        The Dense maps ``(B, C_in·∏input_size)`` → ``(B, C_out·∏output_size)``; reshape with
        ``.view(B, C_out, *output_size)`` (or use :func:`convert_model`, which wraps it).

    Examples:
        >>> from layerlab.nn import LocallyConnected2d
        >>> local_to_dense(LocallyConnected2d(1, 2, 3, input_size=(6, 6)))
        Dense(32, in_features=36, bias=True)
    """
    geometry = _geometry(local, ("local", "lowrank"), "local_to_dense")
    return _dense_from(local, (geometry.in_channels, *geometry.input_size), max_bytes)


def conv_to_dense(conv, input_size, *, max_bytes: int | None = None) -> nn.Module:
    """The Dense layer equal to a conv (or transposed conv) on ``x.flatten(1)`` (exact).

    Its weight is the block-Toeplitz dense-equivalent matrix (conv ⊂ dense): ``C_out·∏out`` rows,
    ``C_in·∏in`` columns; refused with :class:`~layerlab.errors.SizeLimitError` past the limit.

    Args:
        conv: ``Conv*d`` or ``ConvTranspose*d`` (torch.nn or layerlab).
        input_size: spatial input size (an int or one int per dimension).
        max_bytes: memory limit (default: ``$LAYERLAB_MAX_BYTES`` or 2 GiB).

    Examples:
        >>> conv_to_dense(torch.nn.Conv2d(3, 32, 3, padding=1), (32, 32)).weight.shape
        torch.Size([32768, 3072])
    """
    who = "conv_to_dense"
    geometry = _geometry(conv, ("conv", "transpose"), who)
    size = _spatial(input_size, geometry.ndim, who)
    return _dense_from(conv, (geometry.in_channels, *size), max_bytes)


def dense_to_conv(dense, input_shape) -> nn.Module:
    """Convolutionalise a Dense that reads a flattened ``C×H×W`` map: a conv with kernel ``H×W``.

    ``Dense(x.flatten(1))`` equals ``conv(x)`` (output ``1×1``); on a larger input the conv slides and
    its output at ``[0, 0]`` is the Dense output on the top-left ``H×W`` crop (FCN, Long et al. 2015).
    A Dense on ``C×1×1`` maps becomes a ``1×1`` conv.

    Args:
        dense: ``torch.nn.Linear`` or layerlab ``Dense`` with ``in_features = C·∏spatial``.
        input_shape: the per-sample shape before ``Flatten``: ``(C, L)``, ``(C, H, W)`` or
            ``(C, D, H, W)`` (use ``(C, 1, 1)`` for a Dense on channel vectors).

    Returns:
        layerlab ``Conv{1,2,3}d(C, out_features, kernel_size=spatial)``.

    Examples:
        >>> conv = dense_to_conv(torch.nn.Linear(16 * 5 * 5, 120), (16, 5, 5))
        >>> conv(torch.randn(1, 16, 9, 9)).shape
        torch.Size([1, 120, 5, 5])
    """
    who = "dense_to_conv"
    if not isinstance(dense, nn.Linear):
        raise ArgumentError(f"{who}: expected a Dense or torch.nn.Linear layer. Received: {dense!r}")
    if isinstance(dense.weight, nn.parameter.UninitializedParameter):
        raise ArgumentError(f"{who}: {dense!r} is a lazy layer whose weight is not materialised yet. Run one "
                            "forward pass first")
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list, torch.Size)) else None
    if shape is None or not 2 <= len(shape) <= 4 or not all(isinstance(n, int) and n >= 1 for n in shape):
        raise ArgumentError(
            f"{who}: input_shape must be the per-sample shape before Flatten with 1 to 3 spatial sizes, "
            f"e.g. (16, 5, 5), or (C, 1, 1) for a Dense on channel vectors. Received: input_shape={input_shape!r}"
        )
    if math.prod(shape) != dense.in_features:
        raise ShapeError(
            f"{who}: {dense!r} has in_features={dense.in_features}, but input_shape={shape} flattens to "
            f"{math.prod(shape)}; pass the shape of the map the Dense reads"
        )
    channels, *spatial = shape
    conv = _conv_class(len(spatial))(channels, dense.out_features, tuple(spatial), bias=dense.bias is not None,
                                      device="meta", dtype=dense.weight.dtype)
    with torch.no_grad():
        conv.weight = nn.Parameter(dense.weight.detach().reshape(dense.out_features, *shape).clone())
        conv.bias = None if dense.bias is None else nn.Parameter(dense.bias.detach().clone())
    return conv
