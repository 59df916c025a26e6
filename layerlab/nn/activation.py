"""Activations, dropout and identity: torch's layers plus ``layer_spec()``.

They act element by element (softmax along one dim), keep the shape, and accept any input shape,
so there is nothing to diagnose: each class only adds :meth:`layer_spec` returning an
:class:`layerlab.arith.specs.ElementwiseSpec` named after the class. Formulas:

- ReLU ``max(0, x)``; LeakyReLU ``max(0, x) + negative_slope·min(0, x)``; ELU ``x`` if ``x > 0``
  else ``α(eˣ − 1)``; GELU ``x·Φ(x)``; SiLU ``x·σ(x)``; Tanh; Sigmoid ``σ(x) = 1/(1 + e⁻ˣ)``.
- Softmax ``eˣⁱ / Σⱼ eˣʲ`` along ``dim`` (one label per input); LogSoftmax its log.
- Dropout zeroes each element with probability ``p`` in training and scales the rest by ``1/(1−p)``.

Examples:
    >>> import torch
    >>> ReLU()(torch.tensor([-1.0, 2.0]))
    tensor([0., 2.])
"""

from __future__ import annotations

from torch import nn

from layerlab.arith.specs import elementwise

__all__ = [
    "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax",
    "Dropout", "Identity",
]


class _Elementwise:
    """``layer_spec()`` for shape-preserving, parameter-free layers."""

    def layer_spec(self):
        """This layer as a :class:`layerlab.arith.specs.ElementwiseSpec` named after its class."""
        return elementwise(type(self).__name__)


class ReLU(_Elementwise, nn.ReLU):
    """``torch.nn.ReLU``: ``max(0, x)``. Shape: any, unchanged."""


class LeakyReLU(_Elementwise, nn.LeakyReLU):
    """``torch.nn.LeakyReLU``: ``max(0, x) + negative_slope·min(0, x)`` (default slope 0.01)."""


class ELU(_Elementwise, nn.ELU):
    """``torch.nn.ELU``: ``x`` for ``x > 0``, else ``alpha·(exp(x) − 1)`` (default alpha 1)."""


class GELU(_Elementwise, nn.GELU):
    """``torch.nn.GELU``: ``x·Φ(x)``, Φ the standard normal CDF (``approximate='tanh'`` optional)."""


class SiLU(_Elementwise, nn.SiLU):
    """``torch.nn.SiLU`` (swish): ``x·sigmoid(x)``."""


class Tanh(_Elementwise, nn.Tanh):
    """``torch.nn.Tanh``: ``tanh(x)``."""


class Sigmoid(_Elementwise, nn.Sigmoid):
    """``torch.nn.Sigmoid``: ``1/(1 + exp(−x))``; the multi-label output head."""


class Softmax(_Elementwise, nn.Softmax):
    """``torch.nn.Softmax``: ``exp(x_i)/Σ_j exp(x_j)`` along ``dim``; the one-label output head."""


class LogSoftmax(_Elementwise, nn.LogSoftmax):
    """``torch.nn.LogSoftmax``: ``log softmax(x)`` along ``dim`` (pair it with ``nn.NLLLoss``)."""


class Dropout(_Elementwise, nn.Dropout):
    """``torch.nn.Dropout``: zero each element with probability ``p`` in training, scale by 1/(1−p)."""


class Identity(_Elementwise, nn.Identity):
    """``torch.nn.Identity``: returns its input."""
