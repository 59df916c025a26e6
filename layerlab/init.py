"""Xavier/Glorot and He/Kaiming initialisers whose fans are right for every layer kind.

torch's ``nn.init`` reads the fans from the weight's storage shape (dim 1 × the trailing dims for
fan_in, dim 0 × the trailing dims for fan_out). That is right for ``Linear`` and ``Conv*d`` but
wrong for a location-major local weight ``(*out_size, groups, C_in/g, *k, C_out/g)``: the fans
would mix output positions into the count. Keras 2's ``LocallyConnected2D`` made exactly that
mistake (its glorot init took fans from the storage shape), giving weights 6–135× smaller than
a ``Conv2D``'s. The fans of one output unit do not depend on weight sharing, so here:

- dense: ``fan_in = in_features``, ``fan_out = out_features``;
- conv / transposed conv: torch's rule on the torch weight (as ``nn.init``);
- local and tiled: ``fan_in = C_in/groups·∏k``, ``fan_out = C_out/groups·∏k`` — the matching conv's
  (for ``groups > 1`` torch counts a conv's fan_out as ``C_out·∏k``, ignoring groups; one input unit
  really reaches ``C_out/groups·∏k`` outputs, which is what layerlab uses for local layers);
- transposed local: its weight ``(*in_size, groups, C_out/g, *k, C_in/g)`` read as a local one,
  ``fan_in = C_out/groups·∏k``, ``fan_out = C_in/groups·∏k`` (torch's transposed-conv rule, with groups);
- low-rank local: its weight ``(R, C_out, C_in/g, *k)`` holds ``R`` conv kernels mixed per position,
  and one output unit still sums ``C_in/groups·∏k`` products, so the local layer's fans (the rank is
  not counted). Filling the bases with variance ``σ²`` gives the mixed kernel ``Σ_r α_r·weight[r]``
  the variance ``σ²·Σ_r α_r²``: at the layer's constant starting logits that is ``σ²`` with
  ``normalize="l2"``/``None`` (``α_r = 1/√R``) but ``σ²/R`` with ``"softmax"`` (``α_r = 1/R``),
  which the layer's own ``reset_parameters`` offsets by scaling its bases by ``√R``.

Formulas (Glorot & Bengio 2010; He et al. 2015)::

    xavier_uniform_: U(±a),  a = gain·√(6/(fan_in + fan_out))
    xavier_normal_:  N(0, σ²), σ = gain·√(2/(fan_in + fan_out))
    kaiming_uniform_: U(±b),  b = gain·√(3/fan),   gain = calculate_gain(nonlinearity, a)
    kaiming_normal_:  N(0, σ²), σ = gain/√fan,      fan = fan_in or fan_out (mode)

Every function takes a module (layerlab or torch, with a ``weight``) or a weight tensor plus its
``layout`` (``"dense"``, ``"conv"``, ``"local"``, ``"tiled"``); it fills the weight in place (the
bias is left alone, as ``torch.nn.init``) and returns what it was given. A low-rank weight has no
layout: its shape does not record ``groups``, which its ``fan_out`` needs, so pass the layer.

Examples:
    >>> import layerlab
    >>> layer = layerlab.LocallyConnected2d(3, 32, 3, input_size=(32, 32))
    >>> fans(layer)
    (27, 288)
    >>> fans(layerlab.LowRankLocallyConnected2d(3, 32, 3, rank=4, input_size=(32, 32)))
    (27, 288)
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.parameter import UninitializedParameter

from layerlab.errors import ArgumentError
from layerlab.nn.local import _LocallyConnectedNd
from layerlab.nn.local_transpose import _LocallyConnectedTransposeNd
from layerlab.nn.lowrank import _LowRankLocallyConnectedNd
from layerlab.nn.tiled import _TiledConvNd

__all__ = ["fans", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"]

LAYOUTS = ("dense", "conv", "local", "tiled")


def _local_fans(weight: torch.Tensor) -> tuple[int, int]:
    """Fans of a location-major ``(*positions, groups, C_in/g, *k, C_out/g)`` weight."""
    ndim = (weight.dim() - 3) // 2
    if weight.dim() != 2 * ndim + 3 or ndim < 1:
        raise ArgumentError(
            "layerlab.init: a 'local'/'tiled' weight must have shape (*positions, groups, C_in/groups, "
            f"*kernel_size, C_out/groups), rank 5, 7 or 9. Received: weight of shape {tuple(weight.shape)}"
        )
    taps = math.prod(weight.shape[ndim + 2 : 2 * ndim + 2])
    return weight.shape[ndim + 1] * taps, weight.shape[-1] * taps


def _resolve(target, layout: str | None) -> tuple[torch.Tensor, tuple[int, int]]:
    """The weight tensor to fill and its ``(fan_in, fan_out)``."""
    if isinstance(target, nn.Module):
        weight = getattr(target, "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise ArgumentError(
                f"layerlab.init: {target!r} has no weight tensor to initialise; pass a layer with a "
                "weight (Dense, Conv*, LocallyConnected*, TiledConv*, Linear) or a weight and its layout"
            )
        if isinstance(weight, UninitializedParameter):
            raise ArgumentError(
                f"layerlab.init: {target!r} has no weight yet (lazy layer): call it once on an input, "
                "or build it with in_features/input_size, then initialise"
            )
        if layout is None and isinstance(target, _LowRankLocallyConnectedNd):
            return weight, (target.fan_in, target.fan_out)  # the window layers' C_in/g·∏k, C_out/g·∏k
        if layout is None:
            is_local = isinstance(target, (_LocallyConnectedNd, _TiledConvNd, _LocallyConnectedTransposeNd))
            layout = "local" if is_local else "conv"  # torch's rule covers Linear and Conv*
    elif isinstance(target, torch.Tensor):
        weight = target
        if layout is None:
            raise ArgumentError(
                f"layerlab.init: a bare weight of shape {tuple(weight.shape)} needs its layout: pass "
                "layout='dense', 'conv', 'local' or 'tiled'"
            )
    else:
        raise ArgumentError(
            f"layerlab.init: expected a module or a weight tensor. Received: {type(target).__name__}"
        )
    if layout not in LAYOUTS:
        raise ArgumentError(
            f"layerlab.init: layout must be one of {', '.join(map(repr, LAYOUTS))}. Received: layout={layout!r}"
        )
    if layout in ("local", "tiled"):
        return weight, _local_fans(weight)
    if weight.dim() < 2:
        raise ArgumentError(
            f"layerlab.init: a '{layout}' weight needs at least 2 dims (out, in, *k). Received: weight "
            f"of shape {tuple(weight.shape)}"
        )
    return weight, nn.init._calculate_fan_in_and_fan_out(weight)


def fans(target, layout: str | None = None) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a module's weight, or of a weight with its ``layout``.

    Args:
        target: a module with a ``weight`` (layerlab or torch), or a weight tensor.
        layout: ``"dense"``, ``"conv"``, ``"local"`` or ``"tiled"``; inferred for modules.
            Default: None.

    Examples:
        >>> fans(torch.nn.Conv2d(3, 32, 3))
        (27, 288)
    """
    return _resolve(target, layout)[1]


def _fan(fan_in: int, fan_out: int, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ArgumentError(f"layerlab.init: mode must be 'fan_in' or 'fan_out'. Received: mode={mode!r}")
    return fan_in if mode == "fan_in" else fan_out


def xavier_uniform_(target, gain: float = 1.0, layout: str | None = None, generator=None):
    """Glorot uniform: ``U(±gain·√(6/(fan_in + fan_out)))`` with the fans of :func:`fans`.

    Args:
        target: module or weight tensor (filled in place, returned).
        gain: scale (``nn.init.calculate_gain``). Default: 1.0.
        layout: for a bare tensor. Default: None.
        generator: ``torch.Generator``. Default: None.
    """
    weight, (fan_in, fan_out) = _resolve(target, layout)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        weight.uniform_(-bound, bound, generator=generator)
    return target


def xavier_normal_(target, gain: float = 1.0, layout: str | None = None, generator=None):
    """Glorot normal: ``N(0, (gain·√(2/(fan_in + fan_out)))²)``; arguments as :func:`xavier_uniform_`."""
    weight, (fan_in, fan_out) = _resolve(target, layout)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    with torch.no_grad():
        weight.normal_(0.0, std, generator=generator)
    return target


def kaiming_uniform_(
    target, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
    layout: str | None = None, generator=None,
):
    """He uniform: ``U(±gain·√(3/fan))``, ``gain = nn.init.calculate_gain(nonlinearity, a)``.

    Args:
        target: module or weight tensor (filled in place, returned).
        a: negative slope of the leaky ReLU. Default: 0.
        mode: ``"fan_in"`` (keeps the forward variance) or ``"fan_out"``. Default: ``"fan_in"``.
        nonlinearity: Default: ``"leaky_relu"`` (with a=0, ReLU's gain √2).
        layout: for a bare tensor. Default: None.
        generator: ``torch.Generator``. Default: None.
    """
    weight, fan_pair = _resolve(target, layout)
    std = nn.init.calculate_gain(nonlinearity, a) / math.sqrt(_fan(*fan_pair, mode))
    bound = math.sqrt(3.0) * std
    with torch.no_grad():
        weight.uniform_(-bound, bound, generator=generator)
    return target


def kaiming_normal_(
    target, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
    layout: str | None = None, generator=None,
):
    """He normal: ``N(0, (gain/√fan)²)``; arguments as :func:`kaiming_uniform_`."""
    weight, fan_pair = _resolve(target, layout)
    std = nn.init.calculate_gain(nonlinearity, a) / math.sqrt(_fan(*fan_pair, mode))
    with torch.no_grad():
        weight.normal_(0.0, std, generator=generator)
    return target
