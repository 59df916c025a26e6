"""The few modules a converted Keras model needs beyond :mod:`layerlab.nn`.

- :class:`Permute`: moves dims between Keras's layout and torch's (channels last ↔ first).
- :class:`KerasReLU`: Keras's ``ReLU(max_value, negative_slope, threshold)``, its formula exactly.
- :class:`Rescale`: multiplies by a fixed map (turns a zero-padded average into Keras's average over
  the input elements only, for ``'same'`` pooling with uneven padding).
"""

from __future__ import annotations

import torch
from torch import nn

from layerlab.arith.reshape import PermuteSpec
from layerlab.arith.specs import ElementwiseSpec, elementwise

__all__ = ["Permute", "KerasReLU", "Rescale"]


class Permute(nn.Module):
    """``x.permute(0, *dims)``: reorder the per-sample dims, the batch stays first.

    Examples:
        >>> Permute((3, 1, 2))(torch.zeros(8, 28, 28, 1)).shape
        torch.Size([8, 1, 28, 28])
    """

    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = tuple(dims)
        PermuteSpec(self.dims)  # checks the argument

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return input.permute(0, *self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"

    def layer_spec(self) -> PermuteSpec:
        """This layer as a :class:`layerlab.arith.reshape.PermuteSpec`."""
        return PermuteSpec(self.dims)


class KerasReLU(nn.Module):
    """Keras's ``ReLU`` layer (``tf.keras.backend.relu``) with its three options::

        y = min(x·[x > threshold], max_value)      (x kept where x > threshold, else 0; then capped)
            − negative_slope·max(threshold − x, 0)

    With ``threshold = 0`` the first term is ``relu(x)`` capped at ``max_value``. Keras caps with
    ``clip(·, 0, max_value)`` only when ``max_value`` is given, so a negative ``threshold`` without
    ``max_value`` lets values in ``(threshold, 0]`` through unchanged; this module does the same.
    """

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0, threshold: float = 0.0) -> None:
        super().__init__()
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.threshold != 0:
            y = input * (input > self.threshold).to(input.dtype)
        else:
            y = torch.relu(input)
        if self.max_value is not None:
            y = y.clamp(0, self.max_value)
        if self.negative_slope != 0:
            y = y - self.negative_slope * torch.relu(self.threshold - input)
        return y

    def extra_repr(self) -> str:
        return f"max_value={self.max_value}, negative_slope={self.negative_slope}, threshold={self.threshold}"

    def layer_spec(self) -> ElementwiseSpec:
        """An element-wise ``ReLU`` (one activation op per element)."""
        return elementwise("ReLU")


class Rescale(nn.Module):
    """``x · f_1 ⊗ … ⊗ f_n``: one fixed factor per position of each spatial dim, multiplied over the dims
    and broadcast over batch and channels (``f_d`` holds as many values as the dim has positions).

    After a zero-padded ``AvgPool``, ``f_d = k_d / (taps of the window inside the input)`` turns the
    mean over the padded window into the mean over the input elements only.
    """

    def __init__(self, factors: list[torch.Tensor]) -> None:
        super().__init__()
        self.ndim = len(factors)
        for d, factor in enumerate(factors):  # factor d broadcast along spatial dim d of (B, C, *spatial)
            self.register_buffer(f"factor{d}", factor.reshape(-1, *(1,) * (self.ndim - 1 - d)))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        for d in range(self.ndim):
            input = input * getattr(self, f"factor{d}")
        return input

    def layer_spec(self) -> ElementwiseSpec:
        """An element-wise multiply (one op per factor and element)."""
        return ElementwiseSpec(name="Rescale", ops_per_element=self.ndim)
