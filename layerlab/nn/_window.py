"""Shared bases of the layers layerlab computes itself (locally connected, transposed local,
low-rank local, tiled): arguments, padding resolution, parameters, init, lazy initialisation and
input checks.

- :class:`_WindowedNd`: every such layer (arguments, padding, fans, init, input checks, spec).
- :class:`_LazyWindowedNd`: the layers whose parameters depend on the input size, given as
  ``input_size`` or read from the first input (torch's lazy modules).
- :class:`_PositionBanksNd`: the lazy layers with one filter bank per position of a grid
  (local: the output grid; transposed local: the input grid).

:func:`window_arguments` (the spec arguments every windowed layer stores) also serves the
``torch.nn.Conv*d`` / ``ConvTranspose*d`` subclasses of :mod:`layerlab.nn.conv`.

Padding follows ``torch.nn.Conv*d``: an int/tuple pads both sides; ``'valid'`` is no padding;
``'same'`` (stride 1 only) pads ``d·(k − 1)`` in total, ``total // 2`` on the left and the odd
extra on the right (the spec's ``padding_pairs()``). Zero, symmetric padding is passed to the op;
any other mode or an asymmetric ``'same'`` pads with ``F.pad`` first and calls the op with
``padding=0`` (as torch's conv does for ``padding_mode != 'zeros'``).

The arguments are checked by building the layer's :mod:`layerlab.arith` spec (``LocalSpec``,
``LocalTransposeSpec``, ``LowRankLocalSpec``, ``TiledSpec``), so each mistake is explained in the
same words by the module and by arith.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import Parameter, UninitializedParameter

from layerlab.arith._args import choice, ntuple, positive_int
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


def window_arguments(layer) -> dict:
    """The spec arguments every windowed layer stores under torch's names (``ndim`` from ``_ndim``):
    ``layer``'s, for its arith spec (``LocalSpec``, ``ConvSpec``, ...) with the kind's ``bias`` and
    own arguments added."""
    return {
        "ndim": layer._ndim,
        "out_channels": layer.out_channels,
        "kernel_size": layer.kernel_size,
        "in_channels": layer.in_channels,
        "stride": layer.stride,
        "padding": layer.padding,
        "dilation": layer.dilation,
        "groups": layer.groups,
    }


def element_count(*shapes: tuple[int, ...] | None) -> int:
    """Elements of tensors of ``shapes`` (``None``: no tensor)."""
    return sum(math.prod(shape) for shape in shapes if shape is not None)


class _WindowedNd(nn.Module):
    """Arguments and padding of a windowed layer with ``(C_out/groups)·(C_in/groups)·∏k`` filters."""

    _ndim: int

    def _set_spec_args(self, spec_type, in_channels, bias, **arguments):
        """Check the arguments by building the layer's arith spec ``spec_type``, store the ones every
        window layer has, normalised by the spec, and return the spec (for the kind's own arguments).

        ``in_channels`` is required here (the spec would infer it); ``bias`` is torch-style
        (``True``/``'shared'``/``False``/``None``).
        """
        who = type(self).__name__
        in_channels = positive_int(who, "in_channels", in_channels)
        spec = spec_type(ndim=self._ndim, in_channels=in_channels, bias=_bias_mode(who, bias), **arguments)
        self.in_channels, self.out_channels, self.groups = spec.in_channels, spec.out_channels, spec.groups
        self.kernel_size, self.stride, self.dilation = spec.kernel_size, spec.stride, spec.dilation
        self.padding, self.bias_mode = spec.padding, spec.bias
        return spec

    def _set_window_args(self, spec_type, in_channels, bias, padding_mode, **arguments):
        """:meth:`_set_spec_args`, then check ``padding_mode`` (the module's: the spec describes zero
        padding) and resolve the padding; returns the spec."""
        spec = self._set_spec_args(spec_type, in_channels, bias, **arguments)
        self.padding_mode = choice(type(self).__name__, "padding_mode", padding_mode, PADDING_MODES)
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

    def _layer_spec(self, spec_type, **own):
        """This layer as its arith spec ``spec_type``, from the stored arguments every window layer has
        and ``own``, the kind's own (e.g. ``tile_size``, ``rank``)."""
        return spec_type(**window_arguments(self), bias=self.bias_mode, **own)

    def _weight_shape(self, positions: tuple[int, ...]) -> tuple[int, ...]:
        """``(*positions, groups, C_in/groups, *kernel_size, C_out/groups)`` (Contract 3)."""
        g = self.groups
        return (*positions, g, self.in_channels // g, *self.kernel_size, self.out_channels // g)

    def _bias_shape(self, positions: tuple[int, ...]) -> tuple[int, ...] | None:
        """``(C_out, *positions)`` for a bias per location, ``(C_out,)`` shared, ``None`` without bias."""
        if self.bias_mode is None:
            return None
        return (self.out_channels, *positions) if self.bias_mode == "location" else (self.out_channels,)

    def _new_parameters(self, weight_shape: tuple[int, ...], bias_shape: tuple[int, ...] | None, device, dtype) -> None:
        """Uninitialised (``torch.empty``) ``weight`` and ``bias`` (``None`` when ``bias_shape`` is)."""
        factory_kwargs = {"device": device, "dtype": dtype}
        self.weight = Parameter(torch.empty(weight_shape, **factory_kwargs))
        self.bias = None if bias_shape is None else Parameter(torch.empty(bias_shape, **factory_kwargs))

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


class _LazyWindowedNd(LazyModuleMixin, _WindowedNd):
    """A window layer whose parameters depend on the input size: ``input_size`` given, or read from
    the first input (the parameters stay uninitialised until then, as torch's Lazy modules).

    Subclasses implement :meth:`_materialize` and :meth:`_check_loaded`.
    """

    # stay a layerlab layer after the lazy initialisation (torch's Lazy* modules change class)
    cls_to_become = None

    def _set_input_size(self, input_size) -> None:
        """Store ``input_size`` (``None``, an int or a tuple of ``ndim`` positive ints)."""
        who = type(self).__name__
        self.input_size = None if input_size is None else ntuple(who, "input_size", input_size, self._ndim, minimum=1)

    def _analyse(self, in_size: tuple[int, ...], input: torch.Tensor | None):
        """The spec's report for spatial input ``in_size``; :class:`ShapeError` when the input does not
        fit (the padded, dilated window does not fit, or a transposed layer's padding crops the whole
        output)."""
        try:
            return self.layer_spec().analyse((self.in_channels, *in_size))
        except ShapeError as err:
            got = f"an input of shape {shape_str(input.shape)}" if input is not None else "its input_size"
            raise ShapeError(f"{self._who()} cannot take {got}: {err}") from None

    def initialize_parameters(self, input: torch.Tensor) -> None:
        """Lazy init (forward pre-hook): record the input size, materialise the parameters.

        When the parameters were loaded from a ``state_dict`` before the first call, the first input
        must fit them (the loaded output size; for a transposed layer, the loaded input size).
        """
        if self.input_size is not None:
            return  # built for a known size: forward checks every input against it
        self._check_rank_channels(input)
        in_size = tuple(input.shape[input.dim() - self._ndim :])
        if self.has_uninitialized_params():
            self._materialize(in_size, input)
        else:
            self._check_loaded(in_size, input)
        self.input_size = in_size

    def _materialize(self, in_size: tuple[int, ...], input: torch.Tensor) -> None:
        """Materialise and initialise the parameters for spatial input size ``in_size``."""
        raise NotImplementedError

    def _check_loaded(self, in_size: tuple[int, ...], input: torch.Tensor) -> None:
        """Raise :class:`ShapeError` unless the loaded parameters fit spatial input size ``in_size``."""
        raise NotImplementedError

    def _check_loaded_output_size(
        self, in_size: tuple[int, ...], input: torch.Tensor, held: str, why: str = ""
    ) -> None:
        """Raise :class:`ShapeError` unless spatial input size ``in_size`` gives the output size of the
        loaded parameters; ``held`` names them, ``why`` (optional) says why the size is fixed."""
        out_size = self._analyse(in_size, input).output_shape[1:]
        if out_size != self.output_size:
            reason = f"{why}; " if why else ""
            raise ShapeError(
                f"{self._who()} holds {held} for output size {size_str(self.output_size)}, but a "
                f"{size_str(in_size)} input gives {size_str(out_size)}: {reason}feed inputs of the size "
                "the weights were trained on"
            )

    def _who(self) -> str:
        size = "" if self.input_size is None else f", input_size={self.input_size}"
        return f"{type(self).__name__}({self._window_repr()}{size})"


class _PositionBanksNd(_LazyWindowedNd):
    """A lazy window layer with a filter bank at every position of one grid (:meth:`_bank_positions`)
    and a bias per output position (``bias_mode="location"``) or per channel.

    Subclasses set ``_budget_hint`` (the fix a :class:`SizeLimitError` suggests).
    """

    _budget_hint: str

    def _bank_positions(self, in_size: tuple[int, ...], out_size: tuple[int, ...]) -> tuple[int, ...]:
        """The grid with one filter bank per position (the weight's leading dims)."""
        raise NotImplementedError

    def _create_parameters(self, device, dtype) -> None:
        """Uninitialised parameters without ``input_size`` (lazy); else parameters of the shapes it
        gives, once they are known to fit the memory limit, initialised."""
        if self.input_size is None:
            factory_kwargs = {"device": device, "dtype": dtype}
            self.weight = UninitializedParameter(**factory_kwargs)
            self.bias = None if self.bias_mode is None else UninitializedParameter(**factory_kwargs)
            return
        out_size = self._allocation_size(self.input_size, None, dtype, device)
        weight_shape = self._weight_shape(self._bank_positions(self.input_size, out_size))
        self._new_parameters(weight_shape, self._bias_shape(out_size), device, dtype)
        self.reset_parameters()

    def _allocation_size(self, in_size: tuple[int, ...], input: torch.Tensor | None, dtype, device) -> tuple[int, ...]:
        """The output size for ``in_size``, once its parameters are known to fit the memory limit."""
        report = self._analyse(in_size, input)
        self._check_parameters(report.params, dtype, device, self._budget_hint)
        return report.output_shape[1:]

    def _materialize(self, in_size: tuple[int, ...], input: torch.Tensor) -> None:
        out_size = self._allocation_size(in_size, input, self.weight.dtype, self.weight.device)
        with torch.no_grad():
            self.weight.materialize(self._weight_shape(self._bank_positions(in_size, out_size)))
            if self.bias is not None:
                self.bias.materialize(self._bias_shape(out_size))
            self.reset_parameters()

    def extra_repr(self) -> str:
        size = "?" if self.input_size is None else self.input_size
        out = "?" if self.output_size is None else self.output_size
        return f"{self._window_repr()}, input_size={size}, output_size={out}"
