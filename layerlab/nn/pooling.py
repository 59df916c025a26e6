"""Pooling layers: torch's max/avg pools plus ``layer_spec()``, and N-d global pools.

A pool replaces each window by its max (or mean); output size as a convolution's::

    out = floor((in + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1   (ceil with ceil_mode)

``GlobalAvgPool`` / ``GlobalMaxPool`` reduce every spatial dim of ``(B, C, *spatial)`` to one value
and return ``(B, C)`` (flattened, like Keras' ``GlobalAveragePooling2D``): the head of all-conv /
GoogLeNet-style networks that replaces the final dense layers (Lin et al. 2013, "Network in network").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from layerlab.arith.specs import AdaptivePoolSpec, PoolSpec
from layerlab.errors import ShapeError
from layerlab.nn._shape import ShapeDiagnosis, check_rank, shape_str

__all__ = [
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "GlobalAvgPool", "GlobalMaxPool",
]


class _PoolNdMixin(ShapeDiagnosis):
    """``layer_spec()`` and rank diagnosis for torch's max/avg pool subclasses."""

    _ndim: int
    _op: str

    def layer_spec(self):
        """This layer as a :class:`layerlab.arith.specs.PoolSpec`."""
        return PoolSpec(
            ndim=self._ndim,
            op=self._op,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=getattr(self, "dilation", 1),
            ceil_mode=self.ceil_mode,
            count_include_pad=getattr(self, "count_include_pad", True),
        )

    def _check_input(self, input: torch.Tensor) -> None:
        check_rank(self, input, self._ndim)


class MaxPool1d(_PoolNdMixin, nn.MaxPool1d):
    """``torch.nn.MaxPool1d`` with ``layer_spec()``. ``(B, C, L)`` → ``(B, C, L_out)``; no params.

    Examples:
        >>> MaxPool1d(2)(torch.randn(8, 4, 10)).shape
        torch.Size([8, 4, 5])
    """

    _ndim, _op = 1, "max"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        try:
            return F.max_pool1d(
                input, self.kernel_size, self.stride, self.padding, self.dilation,
                ceil_mode=self.ceil_mode, return_indices=self.return_indices,
            )
        except RuntimeError:
            self._diagnose(input)
            raise


class MaxPool2d(_PoolNdMixin, nn.MaxPool2d):
    """``torch.nn.MaxPool2d`` with ``layer_spec()``. ``(B, C, H, W)`` → ``(B, C, H_out, W_out)``.

    Examples:
        >>> MaxPool2d(2)(torch.randn(8, 32, 28, 28)).shape
        torch.Size([8, 32, 14, 14])
    """

    _ndim, _op = 2, "max"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        try:
            return F.max_pool2d(
                input, self.kernel_size, self.stride, self.padding, self.dilation,
                ceil_mode=self.ceil_mode, return_indices=self.return_indices,
            )
        except RuntimeError:
            self._diagnose(input)
            raise


class MaxPool3d(_PoolNdMixin, nn.MaxPool3d):
    """``torch.nn.MaxPool3d`` with ``layer_spec()``. ``(B, C, D, H, W)`` → pooled per dim.

    Examples:
        >>> MaxPool3d(2)(torch.randn(2, 4, 8, 8, 8)).shape
        torch.Size([2, 4, 4, 4, 4])
    """

    _ndim, _op = 3, "max"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        try:
            return F.max_pool3d(
                input, self.kernel_size, self.stride, self.padding, self.dilation,
                ceil_mode=self.ceil_mode, return_indices=self.return_indices,
            )
        except RuntimeError:
            self._diagnose(input)
            raise


class AvgPool1d(_PoolNdMixin, nn.AvgPool1d):
    """``torch.nn.AvgPool1d`` with ``layer_spec()``. ``(B, C, L)`` → ``(B, C, L_out)``; no params.

    Examples:
        >>> AvgPool1d(2)(torch.randn(8, 4, 10)).shape
        torch.Size([8, 4, 5])
    """

    _ndim, _op = 1, "avg"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        try:
            return F.avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)
        except RuntimeError:
            self._diagnose(input)
            raise


class AvgPool2d(_PoolNdMixin, nn.AvgPool2d):
    """``torch.nn.AvgPool2d`` with ``layer_spec()``. ``(B, C, H, W)`` → ``(B, C, H_out, W_out)``.

    Examples:
        >>> AvgPool2d(2)(torch.randn(8, 32, 28, 28)).shape
        torch.Size([8, 32, 14, 14])
    """

    _ndim, _op = 2, "avg"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        try:
            return F.avg_pool2d(
                input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                self.count_include_pad, self.divisor_override,
            )
        except RuntimeError:
            self._diagnose(input)
            raise


class AvgPool3d(_PoolNdMixin, nn.AvgPool3d):
    """``torch.nn.AvgPool3d`` with ``layer_spec()``. ``(B, C, D, H, W)`` → pooled per dim.

    Examples:
        >>> AvgPool3d(2)(torch.randn(2, 4, 8, 8, 8)).shape
        torch.Size([2, 4, 4, 4, 4])
    """

    _ndim, _op = 3, "avg"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        try:
            return F.avg_pool3d(
                input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                self.count_include_pad, self.divisor_override,
            )
        except RuntimeError:
            self._diagnose(input)
            raise


class _GlobalPool(nn.Module):
    """Reduce every spatial dim of ``(B, C, *spatial)`` (1 to 3 spatial dims) to ``(B, C)``."""

    _op: str

    def __init__(self) -> None:
        super().__init__()
        # number of spatial dims of the last input (None before the first call); layer_spec uses it
        self.ndim: int | None = None

    def _spatial_dims(self, input: torch.Tensor) -> tuple[int, ...]:
        if not 3 <= input.dim() <= 5:
            raise ShapeError(
                f"{self!r} expects an input (B, C, *spatial) with 1 to 3 spatial dims, got a "
                f"{input.dim()}-d input of shape {shape_str(input.shape)}: it pools feature maps; "
                + (
                    "a (B, features) input has nothing to pool, drop this layer"
                    if input.dim() < 3
                    else "merge dims first, e.g. x.flatten(2)"
                )
            )
        self.ndim = input.dim() - 2
        return tuple(range(2, input.dim()))

    def layer_spec(self):
        """This layer as a :class:`layerlab.arith.specs.AdaptivePoolSpec` with output size 1, flattened.

        The number of spatial dims is the one of the last input (2 before the first call).
        """
        return AdaptivePoolSpec(ndim=self.ndim or 2, op=self._op, output_size=1, flatten_output=True)


class GlobalAvgPool(_GlobalPool):
    """Global average pooling: ``y[b, c] = mean over all positions p of x[b, c, p]``.

    No parameters. Works on 1-d, 2-d and 3-d feature maps; same result as
    ``nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())`` for 2-d.

    Shape:
        ``(B, C, *spatial)`` → ``(B, C)``.

    Examples:
        >>> GlobalAvgPool()(torch.randn(8, 64, 7, 7)).shape
        torch.Size([8, 64])
    """

    _op = "avg"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return input.mean(dim=self._spatial_dims(input))  # (B, C)


class GlobalMaxPool(_GlobalPool):
    """Global max pooling: ``y[b, c] = max over all positions p of x[b, c, p]``.

    No parameters. Same result as ``nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())`` for 2-d.

    Shape:
        ``(B, C, *spatial)`` → ``(B, C)``.

    Examples:
        >>> GlobalMaxPool()(torch.randn(8, 64, 7, 7)).shape
        torch.Size([8, 64])
    """

    _op = "max"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return input.amax(dim=self._spatial_dims(input))  # (B, C)
