"""Flatten: ``torch.nn.Flatten`` with ``layer_spec()`` and a clear error for too few dims."""

from __future__ import annotations

import torch
from torch import nn

from layerlab.arith.specs import FlattenSpec
from layerlab.errors import ShapeError
from layerlab.nn._shape import ShapeDiagnosis, shape_str

__all__ = ["Flatten"]


class Flatten(ShapeDiagnosis, nn.Flatten):
    """Merge dims ``start_dim..end_dim`` into one: ``(B, C, H, W)`` → ``(B, C·H·W)`` by default.

    The step between a conv stack and a dense layer (PyTorch users write ``x.view(x.size(0), -1)``);
    a view when the input is contiguous. No parameters.

    Args:
        start_dim: first dim to flatten (torch dims, dim 0 = batch). Default: 1.
        end_dim: last dim to flatten. Default: -1.

    Shape:
        ``(B, *S)`` → ``(B, ∏S)`` with the defaults.

    Examples:
        >>> Flatten()(torch.randn(8, 64, 5, 5)).shape
        torch.Size([8, 1600])
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        try:
            return input.flatten(self.start_dim, self.end_dim)  # torch's Flatten.forward
        except (RuntimeError, IndexError):
            self._diagnose(input)
            raise

    def layer_spec(self):
        """This layer as a :class:`layerlab.arith.specs.FlattenSpec`."""
        return FlattenSpec(start_dim=self.start_dim, end_dim=self.end_dim)

    def _check_input(self, input: torch.Tensor) -> None:
        rank = max(input.dim(), 1)
        for name, dim in (("start_dim", self.start_dim), ("end_dim", self.end_dim)):
            if not -rank <= dim < rank:
                raise ShapeError(
                    f"{self!r}: {name}={dim} is out of range for a {input.dim()}-d input of shape "
                    f"{shape_str(input.shape)} (valid: {-rank}..{rank - 1}): the input has fewer dims "
                    "than expected; check the previous layer, or lower start_dim"
                )
