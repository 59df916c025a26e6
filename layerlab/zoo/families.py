r"""The layer-type families ``layerlab compare`` trains: one template, different layers.

Each builder takes a per-sample ``input_shape`` ``(C, L)`` or ``(C, H, W)``, ``num_classes`` and
``width``, and returns an ``nn.Sequential`` of layerlab layers that outputs logits ``(B, num_classes)``
(no softmax: use ``cross_entropy``). With ``c = scaled(32, width)`` channels and
``h = scaled(100, width)`` hidden units (``scaled(n, w) = max(1, round(n·w))``):

=============  ==============================================================================
``logistic``   Flatten → Dense(K)  (multinomial logistic regression; ``width`` has no effect)
``mlp``        Flatten → Dense(h) → ReLU → Dense(h) → ReLU → Dense(K)
``cnn``        [Conv(c, k=5, pad=2) → ReLU → MaxPool(2)] × 2 → Flatten → Dense(h) → ReLU → Dense(K)
``lcn``        ``cnn`` with LocallyConnected(c, k=5, pad=2) layers (a filter per position)
``tiled``      ``cnn`` with TiledConv(c, k=5, pad=2, tile_size=2) layers
``lowrank``    ``cnn`` with LowRankLocallyConnected(c_r, k=5, pad=2, rank=4) layers, ``c_r`` channels
               chosen so that the model's MACs are closest to the ``cnn``'s at the same width
``allconv``    Conv(c, 5, pad=2) → ReLU → Conv(c, 3, stride=2, pad=1) → ReLU → Conv(c, 3, pad=1)
               → ReLU → Conv(c, 3, stride=2, pad=1) → ReLU → Conv(K, 1) → GlobalAvgPool
=============  ==============================================================================

``cnn``, ``lcn`` and ``tiled`` have identical layer shapes and MACs; only the weight sharing differs
(conv ⊂ tiled ⊂ local). ``lowrank`` computes its ``R`` basis convolutions (``R·c_r`` output channels)
and then mixes them per position, so at ``c`` channels it would cost ~``R``× the cnn's MACs; with
``c_r`` channels it costs the same as the cnn (within a few %), the compute ``layerlab compare``
matches across the sharing axis. ``allconv`` (Springenberg et al. 2015, "Striving for simplicity") has no dense
layer: stride-2 convolutions replace pooling and global average pooling replaces the dense head.
The MLP's 100 hidden units follow the MNIST-1D paper (Greydanus & Kobak 2020).

Parameter count as a function of width (for ``c``, ``h`` from ``width``; ``F = C·∏spatial``,
``S1``/``S2`` = number of positions after the first/second block, ``k = 5`` taps per dim):
``mlp`` = F·h + h + h² + h + h·K + K; ``cnn`` = C·kᵈ·c + c + c·kᵈ·c + c + c·S2·h + h + h·K + K;
``lcn`` multiplies each conv's weights and biases by its number of output positions (S0, S1 before
pooling). Conv/dense terms grow ~width², so ``width_for_params`` solves for a budget numerically.

On MNIST-1D with ``layerlab compare``'s recipe (docs/zoo.md has the command and its table), the
dense models ignore shuffled positions, every model with locality loses accuracy, and the more
weight sharing, the more it loses.
"""

from __future__ import annotations

import torch
from torch import nn

import layerlab.nn as L
from layerlab.zoo._stack import CONV, LOCAL, LOWRANK, MAX_POOL, TILED, Stack, scaled, spatial_ndim

__all__ = ["logistic", "mlp", "cnn", "lcn", "tiled", "lowrank", "allconv"]

CHANNELS = 32
HIDDEN = 100
KERNEL = 5
TILE = 2
RANK = 4


def logistic(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Sequential:
    """Multinomial logistic regression: Flatten → Dense(num_classes). ``width`` is ignored."""
    s = Stack("logistic", input_shape)
    s.add(L.Flatten())
    s.add(L.Dense(num_classes, in_features=s.shape[0]))
    return s.sequential()


def mlp(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Sequential:
    """Two hidden dense layers of ``scaled(100, width)`` units with ReLU."""
    s = Stack("mlp", input_shape)
    s.add(L.Flatten())
    for _ in range(2):
        s.add(L.Dense(scaled(HIDDEN, width), in_features=s.shape[0]))
        s.add(L.ReLU())
    s.add(L.Dense(num_classes, in_features=s.shape[0]))
    return s.sequential()


def _lenet_stack(name: str, input_shape, num_classes: int, width: float, make_layer,
                 channels: int | None = None) -> Stack:
    # [window layer(c, k=5, pad=2) → ReLU → MaxPool(2)] × 2 → Flatten → Dense(h) → ReLU → Dense(K)
    ndim = spatial_ndim(name, input_shape)
    s = Stack(name, input_shape)
    for _ in range(2):
        s.add(make_layer(ndim, s, scaled(CHANNELS, width) if channels is None else channels))
        s.add(L.ReLU())
        s.add(MAX_POOL[ndim](2))
    s.add(L.Flatten())
    s.add(L.Dense(scaled(HIDDEN, width), in_features=s.shape[0]))
    s.add(L.ReLU())
    s.add(L.Dense(num_classes, in_features=s.shape[0]))
    return s


def _lenet_style(name: str, input_shape, num_classes: int, width: float, make_layer) -> nn.Sequential:
    return _lenet_stack(name, input_shape, num_classes, width, make_layer).sequential()


def _conv_layer(ndim: int, s: Stack, c: int) -> nn.Module:
    return CONV[ndim](s.channels, c, KERNEL, padding=KERNEL // 2)


def cnn(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Sequential:
    """LeNet-style CNN: conv → pool → conv → pool → flatten → dense → out.

    Examples:
        >>> import torch
        >>> cnn((1, 40), 10)(torch.randn(8, 1, 40)).shape
        torch.Size([8, 10])
    """
    return _lenet_style("cnn", input_shape, num_classes, width, _conv_layer)


def lcn(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Sequential:
    """``cnn``'s architecture with locally connected layers (bias per channel and position)."""
    return _lenet_style("lcn", input_shape, num_classes, width,
                        lambda ndim, s, c: LOCAL[ndim](s.channels, c, KERNEL, padding=KERNEL // 2,
                                                       bias=True, input_size=s.spatial))


def tiled(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0, *,
          tile_size: int = TILE) -> nn.Sequential:
    """``cnn``'s architecture with tiled convolutions: weights shared between positions equal modulo
    ``tile_size`` (an int, the same along every spatial dim; default 2), bias per channel and tile position."""
    return _lenet_style("tiled", input_shape, num_classes, width,
                        lambda ndim, s, c: TILED[ndim](s.channels, c, KERNEL, tile_size=tile_size,
                                                       padding=KERNEL // 2, bias=True))


def _lowrank_layer(rank: int):
    """The ``make_layer`` of ``lowrank``'s window layers: ``LowRankLocallyConnected(c, k=5, pad=2, rank)``."""
    def make_layer(ndim: int, s: Stack, c: int) -> nn.Module:
        return LOWRANK[ndim](s.channels, c, KERNEL, rank, padding=KERNEL // 2, input_size=s.spatial)

    return make_layer


def lowrank(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0, *,
            rank: int = RANK) -> nn.Sequential:
    """``cnn``'s architecture with low-rank locally connected layers, at the ``cnn``'s MACs.

    Each window layer is ``LowRankLocallyConnected(c_r, k=5, pad=2, rank)`` with the layer's
    defaults (factorised combining weights, softmax over the ``rank`` bases per position, bias per
    basis bank). Its MACs are those of a convolution with ``rank·c_r`` outputs, so ``c_r`` is the
    channel count (at most the cnn's ``c``) whose model MACs are closest to the ``cnn``'s at the same
    ``width``: compare the families at equal compute. The dense head is the cnn's.

    Examples:
        >>> import torch
        >>> lowrank((1, 40), 10, rank=4)(torch.randn(2, 1, 40)).shape
        torch.Size([2, 10])
    """
    make_layer = _lowrank_layer(rank)
    with torch.device("meta"):  # MACs from the layer specs: shapes only, nothing allocated
        target = _lenet_stack("lowrank", input_shape, num_classes, width, _conv_layer).macs

        def excess(c: int) -> int:
            return _lenet_stack("lowrank", input_shape, num_classes, width, make_layer, c).macs - target

        lo, hi = 1, scaled(CHANNELS, width)  # the smallest c with excess(c) >= 0 lies in [lo, hi]
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if excess(mid) >= 0 else (mid + 1, hi)
        channels = lo if lo == 1 or abs(excess(lo)) <= abs(excess(lo - 1)) else lo - 1
    return _lenet_stack("lowrank", input_shape, num_classes, width, make_layer, channels).sequential()


def allconv(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Sequential:
    """All-convolutional net: strided convs instead of pooling, a global-average-pooling head.

    Examples:
        >>> import torch
        >>> allconv((1, 28, 28), 10)(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    ndim = spatial_ndim("allconv", input_shape)
    conv = CONV[ndim]
    c = scaled(CHANNELS, width)
    s = Stack("allconv", input_shape)
    for kernel, stride in ((5, 1), (3, 2), (3, 1), (3, 2)):
        s.add(conv(s.channels, c, kernel, stride=stride, padding=kernel // 2))
        s.add(L.ReLU())
    s.add(conv(s.channels, num_classes, 1))
    s.add(L.GlobalAvgPool(), shape=(num_classes,))
    return s.sequential()
