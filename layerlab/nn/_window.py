"""Shared base of the layers layerlab computes itself (locally connected, tiled): arguments,
padding resolution, init and input checks.

Padding follows ``torch.nn.Conv*d``: an int/tuple pads both sides; ``'valid'`` is no padding;
``'same'`` (stride 1 only) pads ``d·(k − 1)`` in total, ``total // 2`` on the left and the odd
extra on the right (the spec's ``padding_pairs()``). Zero, symmetric padding is passed to the op;
any other mode or an asymmetric ``'same'`` pads with ``F.pad`` first and calls the op with
``padding=0`` (as torch's conv does for ``padding_mode != 'zeros'``).

The arguments are checked by building the layer's :mod:`layerlab.arith` spec (``LocalSpec``,
``TiledSpec``), so each mistake is explained in the same words by the module and by arith.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from layerlab.arith._args import choice, positive_int
from layerlab.arith.sizes import DIM_NAMES, PADDING_MODES
from layerlab.errors import ArgumentError, ShapeError
from layerlab.nn._budget import check_parameters
from layerlab.nn._shape import shape_str, size_str

# F.pad's name for each padding_mode
_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def _bias_mode(who: str, bias) -> str | None:
    """The spec's bias (``"location"``/``"shared"``/``None``) for the module's torch-style argument."""
    if bias is True:
        return "location"
    if bias == "shared":
        return "shared"
    if bias is False or bias is None:
        return None
    raise ArgumentError(
        f"{who}: bias must be True (one per output channel and location), 'shared' (one per "
        f"output channel) or False/None. Received: bias={bias!r}"
    )


class _WindowedNd(nn.Module):
    """Arguments and padding of a windowed layer with ``(C_out/groups)·(C_in/groups)·∏k`` filters."""

    _ndim: int

    def _set_window_args(self, spec_type, in_channels, bias, padding_mode, **arguments):
        """Check the arguments by building the layer's arith spec (``LocalSpec``/``TiledSpec``), store
        them normalised and resolve the padding; returns the spec.

        ``in_channels`` is required here (the spec would infer it); ``bias`` is torch-style
        (``True``/``'shared'``/``False``/``None``); ``padding_mode`` is the module's (the spec
        describes zero padding).
        """
        who = type(self).__name__
        in_channels = positive_int(who, "in_channels", in_channels)
        spec = spec_type(ndim=self._ndim, in_channels=in_channels, bias=_bias_mode(who, bias), **arguments)
        self.padding_mode = choice(who, "padding_mode", padding_mode, PADDING_MODES)
        self.in_channels, self.out_channels, self.groups = spec.in_channels, spec.out_channels, spec.groups
        self.kernel_size, self.stride, self.dilation = spec.kernel_size, spec.stride, spec.dilation
        self.padding, self.bias_mode = spec.padding, spec.bias
        pads = spec.padding_pairs()
        self._pads = pads  # per dim (left, right)
        no_padding = all(p == 0 for pair in pads for p in pair)
        symmetric_zeros = no_padding or (padding_mode == "zeros" and all(left == right for left, right in pads))
        # padding passed to the op, and the F.pad argument (last dim first) when padding beforehand
        self._op_padding = tuple(left for left, _ in pads) if symmetric_zeros else (0,) * self._ndim
        self._pre_pad = None if symmetric_zeros else [p for pair in reversed(pads) for p in pair]
        return spec

    def _check_parameters(self, params: int, dtype, device, hint: str) -> None:
        """Refuse ``params`` parameters over the memory limit before allocating them."""
        check_parameters(self._who(), params, dtype, device, hint)

    @property
    def fan_in(self) -> int:
        """Inputs of one output unit: ``C_in/groups·∏kernel_size`` (the matching conv's fan_in)."""
        return self.in_channels // self.groups * math.prod(self.kernel_size)

    @property
    def fan_out(self) -> int:
        """Outputs one input unit reaches per position: ``C_out/groups·∏kernel_size`` (as conv)."""
        return self.out_channels // self.groups * math.prod(self.kernel_size)

    def _weight_shape(self, positions: tuple[int, ...]) -> tuple[int, ...]:
        """``(*positions, groups, C_in/groups, *kernel_size, C_out/groups)`` (Contract 3)."""
        g = self.groups
        return (*positions, g, self.in_channels // g, *self.kernel_size, self.out_channels // g)

    def _init_uniform(self) -> None:
        # U(±1/√fan_in) with fan_in = C_in/groups·∏k, the distribution torch gives a conv of the same
        # shape (kaiming_uniform_(a=√5) has bound √6/√((1 + 5)·fan_in) = 1/√fan_in; its bias bound is
        # 1/√fan_in too). Each output unit sums exactly fan_in products, as in the conv, so this keeps
        # the activations' scale. The fans must NOT come from the storage shape: torch's
        # _calculate_fan_in_and_fan_out would read dims 1 and 2.. of the location-major weight, and
        # Keras 2's glorot init did exactly that, giving local weights 6–135× smaller than a conv's.
        bound = 1.0 / math.sqrt(self.fan_in)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def _pad(self, input: torch.Tensor) -> torch.Tensor:
        """Pad beforehand when the op's symmetric zero padding cannot express ``padding``."""
        if self._pre_pad is None:
            return input
        return F.pad(input, self._pre_pad, mode=_PAD_MODE[self.padding_mode])

    def _window_repr(self) -> str:
        """``in, out, kernel_size=..`` plus the non-default arguments, as torch's conv repr."""
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        if self.stride != (1,) * self._ndim:
            text += f", stride={self.stride}"
        if self.padding != (0,) * self._ndim:
            text += f", padding={self.padding!r}"
        if self.dilation != (1,) * self._ndim:
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias_mode != "location":
            text += f", bias={'shared' if self.bias_mode == 'shared' else False!r}"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode!r}"
        return text

    def _check_rank_channels(self, input: torch.Tensor) -> None:
        """Raise unless ``input`` is ``(B, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``."""
        ndim = self._ndim
        spatial = ", ".join(DIM_NAMES[ndim])
        if input.dim() not in (ndim + 1, ndim + 2):
            raise ShapeError(
                f"{self._who()} expects a {ndim + 2}-d input (B, C_in, {spatial}) or a {ndim + 1}-d "
                f"unbatched input (C_in, {spatial}), got a {input.dim()}-d input of shape "
                f"{shape_str(input.shape)}: reshape it, e.g. x.view(B, {self.in_channels}, {spatial})"
            )
        channels = input.shape[input.dim() - ndim - 1]
        if channels != self.in_channels:
            raise ShapeError(
                f"{self._who()} expects {self.in_channels} input channels, got {channels} from an "
                f"input of shape {shape_str(input.shape)}: set in_channels={channels} to match the "
                f"previous layer, or feed it {self.in_channels}-channel inputs"
            )

    def _check_input(self, input: torch.Tensor, why: str) -> None:
        """Raise unless ``input`` is ``(B, C_in, *input_size)`` or unbatched ``(C_in, *input_size)``
        for a layer built for one input size; ``why`` says what ties it to that size."""
        ndim = self._ndim
        if input.dim() != ndim + 2 or input.shape[1] != self.in_channels:
            self._check_rank_channels(input)
        if input.shape[input.dim() - ndim :] != self.input_size:
            raise ShapeError(
                f"{self._who()} was built for {size_str(self.input_size)} inputs, got "
                f"{size_str(input.shape[input.dim() - ndim:])}: {why}; build a new layer or resize the input"
            )

    def _who(self) -> str:
        return f"{type(self).__name__}({self._window_repr()})"

