r"""Classic image classifiers from the literature, rebuilt from layerlab layers.

All take ``(C, H, W)`` (or ``(C, L)``: the same stack with 1-d layers) and return logits.
``width`` scales every channel and unit count by ``max(1, round(n·width))``.

``lenet5`` — LeCun et al. 1998, in its common modern form: Conv(6, 5) → Tanh → AvgPool(2) →
Conv(16, 5) → Tanh → AvgPool(2) → Flatten → Dense(120) → Tanh → Dense(84) → Tanh → Dense(K).
On the classic 1×32×32 input with K = 10: 156 + 2,416 + 48,120 + 10,164 + 850 = **61,706**
parameters (C3 fully connected to S2, no trainable subsampling, a dense output instead of RBF
units). On MNIST's 28×28 the flatten has 16·4·4 = 256 features (44,426 parameters).

``tf_cifar10`` — the TensorFlow CIFAR-10 tutorial net (``cifar10.py`` of tensorflow/models, on 24×24
crops): conv1 Conv(64, 5, 'same') → ReLU → pool1 MaxPool(3, stride 2, 'same') → norm1 LRN →
conv2 Conv(64, 5, 'same') → ReLU → norm2 LRN → pool2 MaxPool(3, 2, 'same') → **local3** Dense(384)
→ ReLU → **local4** Dense(192) → ReLU → softmax_linear Dense(K). Despite their names, local3 and
local4 are *fully connected*: the tutorial reshapes pool2 to a vector and multiplies it by a
(2304, 384) matrix. TF's 'same' max pooling (out = ceil(n/2)) is ``MaxPool(3, 2, padding=1)`` here
(same size; TF pads only at the end, torch on both sides). LRN is ``torch.nn.LocalResponseNorm(9,
alpha=0.001, beta=0.75, k=1)`` = TF's ``lrn(depth_radius=4, bias=1, alpha=0.001/9, beta=0.75)``
(torch divides alpha by the size). 1,068,298 parameters on 3×24×24 with K = 10.

``tf_cifar10_local`` — the same net with local3/local4 *truly* locally connected, as their names
promise: pool2 → LocallyConnected(32, 3, pad 1) → ReLU → LocallyConnected(32, 3, pad 1) → ReLU →
Flatten → Dense(K) (the 32-channel 3×3 local layers of cuda-convnet below).

``cuda_convnet`` — Krizhevsky's cuda-convnet conv+local CIFAR-10 net (``layers-conv-local-11pct.cfg``,
24×24 crops): conv1 Conv(64, 5, pad 2) → ReLU → pool1 MaxPool(3, 2, ceil) → rnorm1 LRN(9) → conv2
Conv(64, 5, pad 2) → ReLU → rnorm2 LRN(9) → pool2 MaxPool(3, 2, ceil) → local3 LocallyConnected(32,
3, pad 1) → ReLU → local4 LocallyConnected(32, 3, pad 1) → ReLU → fc10 Dense(K). cuda-convnet's pools
count ``ceil((n − 3)/2) + 1`` outputs, hence ``ceil_mode=True``; its local layers have one bias per
filter and position. The response norms use the LRN above (cuda-convnet's scale/pow constants
0.001/0.75; its exact normaliser differs slightly).

LRN has no layerlab layer, so ``summary`` lists it as unknown (it has no parameters).
"""

from __future__ import annotations

from torch import nn

import layerlab.nn as L
from layerlab.zoo._stack import AVG_POOL, CONV, LOCAL, MAX_POOL, Stack, scaled, spatial_ndim

__all__ = ["lenet5", "tf_cifar10", "tf_cifar10_local", "cuda_convnet"]


def _lrn() -> nn.LocalResponseNorm:
    return nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0)


def lenet5(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Sequential:
    """LeNet-5 (61,706 parameters on 1×32×32 with 10 classes).

    Examples:
        >>> import torch
        >>> lenet5((1, 32, 32), 10)(torch.randn(2, 1, 32, 32)).shape
        torch.Size([2, 10])
    """
    ndim = spatial_ndim("lenet5", input_shape)
    s = Stack("lenet5", input_shape)
    for c in (6, 16):
        s.add(CONV[ndim](s.channels, scaled(c, width), 5))
        s.add(L.Tanh())
        s.add(AVG_POOL[ndim](2))
    s.add(L.Flatten())
    for units in (120, 84):
        s.add(L.Dense(scaled(units, width), in_features=s.shape[0]))
        s.add(L.Tanh())
    s.add(L.Dense(num_classes, in_features=s.shape[0]))
    return s.sequential()


def _tf_features(name: str, input_shape, width: float) -> tuple[Stack, int]:
    # conv1 → relu → pool1 → norm1 → conv2 → relu → norm2 → pool2 of the TF tutorial
    ndim = spatial_ndim(name, input_shape)
    s = Stack(name, input_shape)
    s.add(CONV[ndim](s.channels, scaled(64, width), 5, padding=2))
    s.add(L.ReLU())
    s.add(MAX_POOL[ndim](3, stride=2, padding=1))
    s.add(_lrn(), shape=s.shape)
    s.add(CONV[ndim](s.channels, scaled(64, width), 5, padding=2))
    s.add(L.ReLU())
    s.add(_lrn(), shape=s.shape)
    s.add(MAX_POOL[ndim](3, stride=2, padding=1))
    return s, ndim


def tf_cifar10(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Sequential:
    """The TensorFlow CIFAR-10 tutorial net; its ``local3``/``local4`` are dense layers.

    Examples:
        >>> import torch
        >>> tf_cifar10((3, 24, 24), 10)(torch.randn(2, 3, 24, 24)).shape
        torch.Size([2, 10])
    """
    s, _ = _tf_features("tf_cifar10", input_shape, width)
    s.add(L.Flatten())
    for units in (384, 192):  # local3, local4: fully connected
        s.add(L.Dense(scaled(units, width), in_features=s.shape[0]))
        s.add(L.ReLU())
    s.add(L.Dense(num_classes, in_features=s.shape[0]))
    return s.sequential()


def _local_head(s: Stack, ndim: int, num_classes: int, width: float) -> nn.Sequential:
    # local3 → relu → local4 → relu → flatten → dense(K): truly locally connected 3×3 layers
    for _ in range(2):
        s.add(LOCAL[ndim](s.channels, scaled(32, width), 3, padding=1, input_size=s.spatial))
        s.add(L.ReLU())
    s.add(L.Flatten())
    s.add(L.Dense(num_classes, in_features=s.shape[0]))
    return s.sequential()


def tf_cifar10_local(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Sequential:
    """The TensorFlow CIFAR-10 tutorial net with truly locally connected ``local3``/``local4``."""
    s, ndim = _tf_features("tf_cifar10_local", input_shape, width)
    return _local_head(s, ndim, num_classes, width)


def cuda_convnet(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Sequential:
    """cuda-convnet's conv+local CIFAR-10 net (layers-conv-local-11pct).

    Examples:
        >>> import torch
        >>> cuda_convnet((3, 24, 24), 10)(torch.randn(2, 3, 24, 24)).shape
        torch.Size([2, 10])
    """
    ndim = spatial_ndim("cuda_convnet", input_shape)
    s = Stack("cuda_convnet", input_shape)
    s.add(CONV[ndim](s.channels, scaled(64, width), 5, padding=2))
    s.add(L.ReLU())
    s.add(MAX_POOL[ndim](3, stride=2, ceil_mode=True))
    s.add(_lrn(), shape=s.shape)
    s.add(CONV[ndim](s.channels, scaled(64, width), 5, padding=2))
    s.add(L.ReLU())
    s.add(_lrn(), shape=s.shape)
    s.add(MAX_POOL[ndim](3, stride=2, ceil_mode=True))
    return _local_head(s, ndim, num_classes, width)
