"""Normalisation layers: torch's BatchNorm/LayerNorm/GroupNorm plus ``layer_spec()`` and clear errors.

All of them compute ``y = (x − mean) / sqrt(var + eps) · γ + β``; they differ in which elements share
a mean and variance (Ioffe & Szegedy 2015; Ba et al. 2016; Wu & He 2018):

- BatchNorm: per channel, over the batch and all positions; keeps running stats for eval.
- LayerNorm: per sample, over the last ``len(normalized_shape)`` dims.
- GroupNorm: per sample and group of ``C/num_groups`` channels, over those channels and positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from layerlab.arith.sizes import DIM_NAMES
from layerlab.arith.specs import NormSpec
from layerlab.errors import ShapeError
from layerlab.nn._budget import ParameterBudget
from layerlab.nn._shape import ShapeDiagnosis, check_channels, shape_str

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm"]


class _BatchNormMixin(ShapeDiagnosis, ParameterBudget):
    """``layer_spec()`` and diagnosis for torch's BatchNorm subclasses (input ``(B, C, *spatial)``)."""

    _ranks: tuple[int, ...]

    def layer_spec(self):
        """This layer as a :class:`layerlab.arith.specs.NormSpec` of kind ``"batch"``."""
        return NormSpec(
            kind="batch",
            num_features=self.num_features,
            affine=self.affine,
            track_running_stats=self.track_running_stats,
        )

    def _check_input(self, input: torch.Tensor) -> None:
        if input.dim() not in self._ranks:
            shapes = " or ".join(
                f"{r}-d (B, C{''.join(', ' + n for n in DIM_NAMES.get(r - 2, ()))})" for r in self._ranks
            )
            raise ShapeError(
                f"{self!r} expects a {shapes} input, got a {input.dim()}-d input of shape "
                f"{shape_str(input.shape)}: use BatchNorm1d for (B, C) or (B, C, L), BatchNorm2d "
                "for (B, C, H, W), BatchNorm3d for (B, C, D, H, W)"
            )
        check_channels(self, input, input.dim() - 2, self.num_features, "num_features")


class BatchNorm1d(_BatchNormMixin, nn.BatchNorm1d):
    """``torch.nn.BatchNorm1d`` with ``layer_spec()``. ``(B, C)`` or ``(B, C, L)``, same shape out.

    Params: ``2C`` (γ, β); buffers: ``2C`` running stats + 1 counter.

    Examples:
        >>> BatchNorm1d(16)(torch.randn(8, 16)).shape
        torch.Size([8, 16])
    """

    _ranks = (2, 3)


class BatchNorm2d(_BatchNormMixin, nn.BatchNorm2d):
    """``torch.nn.BatchNorm2d`` with ``layer_spec()``. ``(B, C, H, W)``, same shape out.

    Examples:
        >>> BatchNorm2d(32)(torch.randn(8, 32, 14, 14)).shape
        torch.Size([8, 32, 14, 14])
    """

    _ranks = (4,)


class BatchNorm3d(_BatchNormMixin, nn.BatchNorm3d):
    """``torch.nn.BatchNorm3d`` with ``layer_spec()``. ``(B, C, D, H, W)``, same shape out.

    Examples:
        >>> BatchNorm3d(4)(torch.randn(2, 4, 3, 5, 5)).shape
        torch.Size([2, 4, 3, 5, 5])
    """

    _ranks = (5,)


class LayerNorm(ShapeDiagnosis, ParameterBudget, nn.LayerNorm):
    """``torch.nn.LayerNorm`` with ``layer_spec()``: normalises the last ``len(normalized_shape)`` dims.

    Params: ``2·∏normalized_shape`` with ``elementwise_affine`` (γ, β).

    Examples:
        >>> LayerNorm(64)(torch.randn(8, 10, 64)).shape
        torch.Size([8, 10, 64])
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        try:
            return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)
        except RuntimeError:
            self._diagnose(input)
            raise

    def layer_spec(self):
        """This layer as a :class:`layerlab.arith.specs.NormSpec` of kind ``"layer"``."""
        return NormSpec(
            kind="layer",
            normalized_shape=tuple(self.normalized_shape),
            affine=self.elementwise_affine,
            track_running_stats=False,
        )

    def _check_input(self, input: torch.Tensor) -> None:
        n = len(self.normalized_shape)
        got = tuple(input.shape[input.dim() - n :]) if input.dim() >= n else tuple(input.shape)
        if got != tuple(self.normalized_shape):
            raise ShapeError(
                f"{self!r} expects the last {n} dim(s) of the input to be "
                f"{shape_str(self.normalized_shape)}, got {shape_str(got)} from an input of shape "
                f"{shape_str(input.shape)}: set normalized_shape={got if n > 1 else got[-1:]} or "
                "move the normalised dims last (e.g. x.movedim(1, -1) for channels)"
            )


class GroupNorm(ShapeDiagnosis, ParameterBudget, nn.GroupNorm):
    """``torch.nn.GroupNorm`` with ``layer_spec()``. ``(B, C, *)``, same shape out.

    Params: ``2C`` with ``affine`` (γ, β per channel).

    Examples:
        >>> GroupNorm(4, 32)(torch.randn(8, 32, 14, 14)).shape
        torch.Size([8, 32, 14, 14])
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        try:
            return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)
        except RuntimeError:
            self._diagnose(input)
            raise

    def layer_spec(self):
        """This layer as a :class:`layerlab.arith.specs.NormSpec` of kind ``"group"``."""
        return NormSpec(
            kind="group",
            num_features=self.num_channels,
            num_groups=self.num_groups,
            affine=self.affine,
            track_running_stats=False,
        )

    def _check_input(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ShapeError(
                f"{self!r} expects an input (B, C, *) with C = {self.num_channels}, got a "
                f"{input.dim()}-d input of shape {shape_str(input.shape)}: add the batch dim, e.g. "
                "x.unsqueeze(0)"
            )
        check_channels(self, input, input.dim() - 2, self.num_channels, "num_channels")
