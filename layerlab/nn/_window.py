"""Shared base of the layers layerlab computes itself (locally connected, tiled): arguments,
padding resolution, init and input checks.

Padding follows ``torch.nn.Conv*d``: an int/tuple pads both sides; ``'valid'`` is no padding;
``'same'`` (stride 1 only) pads ``d·(k − 1)`` in total, ``total // 2`` on the left and the odd
extra on the right (:func:`layerlab.arith.sizes.same_padding`). Zero, symmetric padding is passed to
the op; any other mode or an asymmetric ``'same'`` pads with ``F.pad`` first and calls the op with
``padding=0`` (as torch's conv does for ``padding_mode != 'zeros'``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from layerlab.arith._args import ntuple, positive_int
from layerlab.arith.sizes import DIM_NAMES, same_padding
from layerlab.errors import ArgumentError, ShapeError
from layerlab.nn._shape import shape_str

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
# F.pad's name for each padding_mode
_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


class _WindowedNd(nn.Module):
    """Arguments and padding of a windowed layer with ``(C_out/groups)·(C_in/groups)·∏k`` filters."""

    _ndim: int

    def _set_window_args(
        self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode
    ) -> None:
        who = type(self).__name__
        ndim = self._ndim
        self.in_channels = positive_int(who, "in_channels", in_channels)
        self.out_channels = positive_int(who, "out_channels", out_channels)
        self.kernel_size = ntuple(who, "kernel_size", kernel_size, ndim, minimum=1)
        self.stride = ntuple(who, "stride", stride, ndim, minimum=1)
        self.dilation = ntuple(who, "dilation", dilation, ndim, minimum=1)
        self.groups = positive_int(who, "groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ArgumentError(
                f"{who}: in_channels and out_channels must be divisible by groups. Received: "
                f"in_channels={in_channels}, out_channels={out_channels}, groups={groups}; choose "
                "groups dividing both"
            )
        if padding_mode not in PADDING_MODES:
            raise ArgumentError(
                f"{who}: padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}. "
                f"Received: padding_mode={padding_mode!r}"
            )
        self.padding_mode = padding_mode
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ArgumentError(
                    f"{who}: padding must be an int, a tuple of {ndim} ints, 'same' or 'valid'. "
                    f"Received: padding={padding!r}"
                )
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ArgumentError(
                    f"{who}: padding='same' needs stride=1 (as torch's conv), got stride={self.stride}: "
                    "give the padding as numbers, e.g. padding=(k - 1) // 2"
                )
            self.padding = padding
            pads = (
                tuple(same_padding(k, d) for k, d in zip(self.kernel_size, self.dilation))
                if padding == "same"
                else ((0, 0),) * ndim
            )
        else:
            self.padding = ntuple(who, "padding", padding, ndim, minimum=0)
            pads = tuple((p, p) for p in self.padding)
        self._pads = pads  # per dim (left, right)
        no_padding = all(p == 0 for pair in pads for p in pair)
        symmetric_zeros = no_padding or (padding_mode == "zeros" and all(left == right for left, right in pads))
        # padding passed to the op, and the F.pad argument (last dim first) when padding beforehand
        self._op_padding = tuple(left for left, _ in pads) if symmetric_zeros else (0,) * ndim
        self._pre_pad = None if symmetric_zeros else [p for pair in reversed(pads) for p in pair]
        if bias is True:
            self.bias_mode = "location"
        elif bias == "shared":
            self.bias_mode = "shared"
        elif bias is False or bias is None:
            self.bias_mode = None
        else:
            raise ArgumentError(
                f"{who}: bias must be True (one per output channel and location), 'shared' (one per "
                f"output channel) or False/None. Received: bias={bias!r}"
            )

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

    def _who(self) -> str:
        return f"{type(self).__name__}({self._window_repr()})"

