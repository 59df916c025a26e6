"""Convolutions and transposed convolutions: torch's layers plus ``layer_spec()`` and clear errors.

The maths, parameters, ``state_dict`` keys and speed are exactly those of ``torch.nn.Conv*d`` /
``torch.nn.ConvTranspose*d`` (these classes subclass them); layerlab adds the arith description
(:meth:`layer_spec`) and a :class:`~layerlab.errors.ShapeError` naming the layer when an input has
the wrong rank or channel count.

Conv output size (PyTorch docs; Dumoulin & Visin 2016)::

    out = floor((in + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1

Transposed conv output size::

    out = (in − 1)·stride − 2·padding + dilation·(kernel − 1) + output_padding + 1
"""

from __future__ import annotations

import math

import torch
from torch import nn

from layerlab.arith.sizes import transposed_output_size
from layerlab.arith.specs import ConvSpec, ConvTransposeSpec
from layerlab.nn._budget import ParameterBudget, check_output
from layerlab.nn._shape import ShapeDiagnosis, check_channels, check_rank, shape_str
from layerlab.nn._window import window_arguments

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]


class _TorchWindowNdMixin(ShapeDiagnosis, ParameterBudget):
    """Input diagnosis and a parameter estimate shared by the ``torch.nn.Conv*d`` and
    ``torch.nn.ConvTranspose*d`` subclasses."""

    _ndim: int
    _budget_hint = "Use fewer channels or a smaller kernel"

    def _check_input(self, input: torch.Tensor) -> None:
        check_rank(self, input, self._ndim, "C_in")
        check_channels(self, input, self._ndim, self.in_channels)


class _ConvNdMixin(_TorchWindowNdMixin):
    """``layer_spec()``, input diagnosis and a parameter estimate for ``torch.nn.Conv*d`` subclasses."""

    def layer_spec(self):
        """This layer as a :class:`layerlab.arith.specs.ConvSpec`."""
        return ConvSpec(**window_arguments(self), bias=self.bias is not None,
                        padding_mode=self.padding_mode)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        try:
            return self._conv_forward(input, self.weight, self.bias)  # torch's Conv*d.forward
        except RuntimeError:
            self._diagnose(input)
            raise


class _ConvTransposeNdMixin(_TorchWindowNdMixin):
    """``layer_spec()``, input diagnosis and parameter and output estimates for
    ``torch.nn.ConvTranspose*d`` subclasses."""

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """torch's forward, once the output is known to fit the memory limit (a large stride
        multiplies the input size)."""
        self._check_output_bytes(input, output_size)
        return super().forward(input, output_size)

    def _check_output_bytes(self, input: torch.Tensor, output_size: list[int] | None) -> None:
        shape, ndim = input.shape, self._ndim
        batch_dims = len(shape) - ndim - 1  # 1 batched, 0 unbatched; else the diagnosis explains the rank
        if batch_dims not in (0, 1):
            return
        elements = self.out_channels * (shape[0] if batch_dims else 1)
        if output_size is None:
            for row in zip(shape[-ndim:], self.kernel_size, self.stride, self.padding, self.output_padding, self.dilation):
                elements *= transposed_output_size(*row)
        else:
            elements *= math.prod(output_size[-ndim:])
        check_output(lambda: f"{self!r} on an input of shape {shape_str(shape)}", elements, input,
                     "Use a smaller stride or a smaller input")

    def layer_spec(self):
        """This layer as a :class:`layerlab.arith.specs.ConvTransposeSpec`."""
        return ConvTransposeSpec(**window_arguments(self), bias=self.bias is not None,
                                 output_padding=self.output_padding)


class Conv1d(_ConvNdMixin, nn.Conv1d):
    """``torch.nn.Conv1d`` with ``layer_spec()`` and clear shape errors.

    Args: as ``torch.nn.Conv1d`` (``in_channels``, ``out_channels``, ``kernel_size``, ``stride=1``,
    ``padding=0`` (int, tuple, ``'same'`` or ``'valid'``), ``dilation=1``, ``groups=1``,
    ``bias=True``, ``padding_mode='zeros'``, ``device=None``, ``dtype=None``).

    Shape:
        ``(B, C_in, L)`` → ``(B, C_out, L_out)``, ``L_out = floor((L + 2p − d(k−1) − 1)/s) + 1``.

    Examples:
        >>> Conv1d(2, 4, 3)(torch.randn(8, 2, 10)).shape
        torch.Size([8, 4, 8])
    """

    _ndim = 1


class Conv2d(_ConvNdMixin, nn.Conv2d):
    """``torch.nn.Conv2d`` with ``layer_spec()`` and clear shape errors.

    Params: ``C_out·(C_in/groups)·kh·kw`` weights (+ ``C_out`` biases).

    Args: as ``torch.nn.Conv2d``.

    Shape:
        ``(B, C_in, H, W)`` → ``(B, C_out, H_out, W_out)`` with the conv formula per dim.

    Examples:
        >>> Conv2d(3, 32, 3, padding="same")(torch.randn(8, 3, 32, 32)).shape
        torch.Size([8, 32, 32, 32])
    """

    _ndim = 2


class Conv3d(_ConvNdMixin, nn.Conv3d):
    """``torch.nn.Conv3d`` with ``layer_spec()`` and clear shape errors.

    Args: as ``torch.nn.Conv3d``.

    Shape:
        ``(B, C_in, D, H, W)`` → ``(B, C_out, D_out, H_out, W_out)`` with the conv formula per dim.

    Examples:
        >>> Conv3d(1, 2, 3)(torch.randn(2, 1, 5, 6, 7)).shape
        torch.Size([2, 2, 3, 4, 5])
    """

    _ndim = 3


class ConvTranspose1d(_ConvTransposeNdMixin, nn.ConvTranspose1d):
    """``torch.nn.ConvTranspose1d`` with ``layer_spec()`` and clear shape errors.

    Args: as ``torch.nn.ConvTranspose1d``.

    Shape:
        ``(B, C_in, L)`` → ``(B, C_out, (L − 1)s − 2p + d(k − 1) + output_padding + 1)``.

    Examples:
        >>> ConvTranspose1d(4, 2, 4, stride=2, padding=1)(torch.randn(8, 4, 16)).shape
        torch.Size([8, 2, 32])
    """

    _ndim = 1


class ConvTranspose2d(_ConvTransposeNdMixin, nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` with ``layer_spec()`` and clear shape errors.

    Params: ``C_in·(C_out/groups)·kh·kw`` weights (+ ``C_out`` biases); weight shape
    ``(C_in, C_out/groups, kh, kw)``.

    Args: as ``torch.nn.ConvTranspose2d``.

    Shape:
        ``(B, C_in, H, W)`` → ``(B, C_out, H_out, W_out)`` with the transposed formula per dim.

    Examples:
        >>> ConvTranspose2d(100, 512, 4)(torch.randn(2, 100, 1, 1)).shape
        torch.Size([2, 512, 4, 4])
    """

    _ndim = 2


class ConvTranspose3d(_ConvTransposeNdMixin, nn.ConvTranspose3d):
    """``torch.nn.ConvTranspose3d`` with ``layer_spec()`` and clear shape errors.

    Args: as ``torch.nn.ConvTranspose3d``.

    Shape:
        ``(B, C_in, D, H, W)`` → ``(B, C_out, D_out, H_out, W_out)`` with the transposed formula.

    Examples:
        >>> ConvTranspose3d(2, 1, 2, stride=2)(torch.randn(1, 2, 3, 3, 3)).shape
        torch.Size([1, 1, 6, 6, 6])
    """

    _ndim = 3
