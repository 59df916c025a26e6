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
``allconv``    Conv(c, 5, pad=2) → ReLU → Conv(c, 3, stride=2, pad=1) → ReLU → Conv(c, 3, pad=1)
               → ReLU → Conv(c, 3, stride=2, pad=1) → ReLU → Conv(K, 1) → GlobalAvgPool
=============  ==============================================================================

``cnn``, ``lcn`` and ``tiled`` have identical layer shapes; only the weight sharing differs (conv ⊂
tiled ⊂ local). ``allconv`` (Springenberg et al. 2015, "Striving for simplicity") has no dense
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

from torch import nn

import layerlab.nn as L
from layerlab.zoo._stack import CONV, LOCAL, MAX_POOL, TILED, Stack, scaled, spatial_ndim

__all__ = ["logistic", "mlp", "cnn", "lcn", "tiled", "allconv"]

CHANNELS = 32
HIDDEN = 100
KERNEL = 5
TILE = 2


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


def _lenet_style(name: str, input_shape, num_classes: int, width: float, make_layer) -> nn.Sequential:
    # [window layer(c, k=5, pad=2) → ReLU → MaxPool(2)] × 2 → Flatten → Dense(h) → ReLU → Dense(K)
    ndim = spatial_ndim(name, input_shape)
    s = Stack(name, input_shape)
    for _ in range(2):
        s.add(make_layer(ndim, s, scaled(CHANNELS, width)))
        s.add(L.ReLU())
        s.add(MAX_POOL[ndim](2))
    s.add(L.Flatten())
    s.add(L.Dense(scaled(HIDDEN, width), in_features=s.shape[0]))
    s.add(L.ReLU())
    s.add(L.Dense(num_classes, in_features=s.shape[0]))
    return s.sequential()


def cnn(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Sequential:
    """LeNet-style CNN: conv → pool → conv → pool → flatten → dense → out.

    Examples:
        >>> import torch
        >>> cnn((1, 40), 10)(torch.randn(8, 1, 40)).shape
        torch.Size([8, 10])
    """
    return _lenet_style("cnn", input_shape, num_classes, width,
                        lambda ndim, s, c: CONV[ndim](s.channels, c, KERNEL, padding=KERNEL // 2))


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
