"""Locally connected layers: a convolution's windows with a separate filter bank at every position.

``out[b, g·O_g + o, p] = bias[g·O_g + o, p] + Σ_{c, t} x_pad[b, g·C_g + c, p·stride + t·dilation]
· weight[p, g, c, t, o]`` with ``C_g = C_in/groups``, ``O_g = C_out/groups``, ``p`` an output
position and ``t`` a kernel tap: the convolution's multiply-adds, without weight sharing
(cuda-convnet's "locally-connected" layer; Taigman et al. 2014, DeepFace). Conv ⊂ local ⊂ dense.

Params: ``∏out_size·(C_in/groups)·∏k·C_out`` weights, plus ``C_out·∏out_size`` biases (default,
one per channel and location) or ``C_out`` (``bias="shared"``).
"""

from __future__ import annotations

import torch
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import Parameter, UninitializedParameter

from layerlab.arith._args import ntuple
from layerlab.arith.specs import LocalSpec
from layerlab.errors import ShapeError
from layerlab.functional import local_conv
from layerlab.nn._shape import shape_str, size_str
from layerlab.nn._window import _WindowedNd

__all__ = ["LocallyConnected1d", "LocallyConnected2d", "LocallyConnected3d"]


class _LocallyConnectedNd(LazyModuleMixin, _WindowedNd):
    """N-d locally connected layer; see :class:`LocallyConnected2d` for the documentation."""

    # stay a layerlab layer after the lazy initialisation (torch's Lazy* modules change class)
    cls_to_become = None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool | str | None = True,
        padding_mode: str = "zeros",
        input_size=None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self._set_window_args(
            LocalSpec, in_channels, bias, padding_mode, out_channels=out_channels, kernel_size=kernel_size,
            stride=stride, padding=padding, dilation=dilation, groups=groups,
        )
        who = type(self).__name__
        self.input_size = None if input_size is None else ntuple(who, "input_size", input_size, self._ndim, minimum=1)
        factory_kwargs = {"device": device, "dtype": dtype}
        if self.input_size is None:
            self.weight = UninitializedParameter(**factory_kwargs)
            self.bias = None if self.bias_mode is None else UninitializedParameter(**factory_kwargs)
            return
        out_size = self._allocation_size(self.input_size, None, dtype, device)
        self.weight = Parameter(torch.empty(self._weight_shape(out_size), **factory_kwargs))
        self.bias = None if self.bias_mode is None else Parameter(torch.empty(self._bias_shape(out_size), **factory_kwargs))
        self.reset_parameters()

    def _bias_shape(self, out_size: tuple[int, ...]) -> tuple[int, ...]:
        return (self.out_channels, *out_size) if self.bias_mode == "location" else (self.out_channels,)

    def _analyse(self, in_size: tuple[int, ...], input: torch.Tensor | None):
        """The spec's report for spatial input ``in_size``; :class:`ShapeError` when the (padded,
        dilated) window does not fit."""
        try:
            return self.layer_spec().analyse((self.in_channels, *in_size))
        except ShapeError as err:
            got = f"an input of shape {shape_str(input.shape)}" if input is not None else "its input_size"
            raise ShapeError(f"{self._who()} cannot take {got}: {err}") from None

    def _allocation_size(self, in_size: tuple[int, ...], input: torch.Tensor | None, dtype, device) -> tuple[int, ...]:
        """The output size for ``in_size``, once its parameters are known to fit the memory limit."""
        report = self._analyse(in_size, input)
        self._check_parameters(
            report.params, dtype, device,
            "A local layer stores one filter bank per output position; use a smaller input or a larger stride, "
            "or a conv or tiled layer",
        )
        return report.output_shape[1:]

    @property
    def output_size(self) -> tuple[int, ...] | None:
        """Spatial output size ``(H_out, W_out)`` (``None`` until the input size is known)."""
        if self.has_uninitialized_params():
            return None
        return tuple(self.weight.shape[: self._ndim])

    def reset_parameters(self) -> None:
        """W, b ~ U(±1/√fan_in), fan_in = C_in/groups·∏kernel_size: torch's conv default.

        Why this fan_in: every output unit of a local layer sums exactly the C_in/groups·∏k products
        of one window, as the conv of the same shape does, so the same bound keeps the activations'
        scale. Fans read from the location-major storage shape would count output positions too
        (Keras 2's bug: its local weights came out 6–135× smaller than a Conv2D's). A no-op until
        the parameters are materialised (lazy layer before its first input).
        """
        if not self.has_uninitialized_params():
            self._init_uniform()

    def initialize_parameters(self, input: torch.Tensor) -> None:
        """Lazy init (forward pre-hook): record the input size, materialise the parameters.

        When the parameters were loaded from a ``state_dict`` before the first call, the first input
        must produce the loaded output size.
        """
        if self.input_size is not None:
            return  # built for a known size: forward checks every input against it
        self._check_rank_channels(input)
        in_size = tuple(input.shape[input.dim() - self._ndim :])
        if self.has_uninitialized_params():
            out_size = self._allocation_size(in_size, input, self.weight.dtype, self.weight.device)
            with torch.no_grad():
                self.weight.materialize(self._weight_shape(out_size))
                if self.bias is not None:
                    self.bias.materialize(self._bias_shape(out_size))
                self.input_size = in_size
                self.reset_parameters()
        else:
            out_size = self._analyse(in_size, input).output_shape[1:]
            if out_size != self.output_size:
                raise ShapeError(
                    f"{self._who()} holds weights for output size {size_str(self.output_size)}, but a "
                    f"{size_str(in_size)} input gives {size_str(out_size)}: a local layer has one "
                    "filter per position; feed inputs of the size the weights were trained on"
                )
            self.input_size = in_size

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *input_size)`` or unbatched ``(C_in, *input_size)`` → ``(B, C_out, *output_size)``."""
        ndim = self._ndim
        self._check_input(input, "a local layer has one filter per position")
        unbatched = input.dim() == ndim + 1
        x = self._pad(input.unsqueeze(0) if unbatched else input)  # (B, C_in, *padded)
        out = local_conv(x, self.weight, self.bias, self.stride, self._op_padding, self.dilation, self.groups)
        return out.squeeze(0) if unbatched else out  # (B, C_out, *output_size)

    def _who(self) -> str:
        size = "" if self.input_size is None else f", input_size={self.input_size}"
        return f"{type(self).__name__}({self._window_repr()}{size})"

    def extra_repr(self) -> str:
        size = "?" if self.input_size is None else self.input_size
        out = "?" if self.output_size is None else self.output_size
        return f"{self._window_repr()}, input_size={size}, output_size={out}"

    def layer_spec(self):
        """This layer as a :class:`layerlab.arith.specs.LocalSpec`."""
        return LocalSpec(
            ndim=self._ndim,
            out_channels=self.out_channels,
            kernel_size=self.kernel_size,
            in_channels=self.in_channels,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias_mode,
        )


class LocallyConnected1d(_LocallyConnectedNd):
    """1-d locally connected layer: a separate filter bank at every output position ``l``.

    Same arguments and output size as :class:`LocallyConnected2d`, with ``input_size=(L,)``.

    Shape:
        ``(B, C_in, L)`` → ``(B, C_out, L_out)``, ``L_out = floor((L + 2p − d(k−1) − 1)/s) + 1``.
        Weight ``(L_out, groups, C_in/groups, k, C_out/groups)``.

    Examples:
        >>> LocallyConnected1d(2, 4, 3, input_size=10)(torch.randn(8, 2, 10)).shape
        torch.Size([8, 4, 8])
    """

    _ndim = 1


class LocallyConnected2d(_LocallyConnectedNd):
    r"""2-d locally connected layer: the windows of ``Conv2d``, a separate filter bank at every (i, j).

    ``out[b, o, i, j] = bias[o, i, j] + Σ_{c, u, v} x_pad[b, c, i·s_h + u·d_h, j·s_w + v·d_w]
    · weight[i, j, g, c, u, v, o]`` (groups=1 shown).

    Params: ``H_out·W_out·(C_in/groups)·kh·kw·C_out`` weights + ``C_out·H_out·W_out`` biases
    (``bias="shared"``: ``C_out``). E.g. 3→32 channels, k=3, 'same' on 32×32: 884,736 weights.

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: window size, int or ``(kh, kw)``.
        stride: Default: 1.
        padding: int, ``(ph, pw)``, ``'same'`` (stride 1) or ``'valid'``. Default: 0.
        dilation: spacing between taps. Default: 1.
        groups: blocked connections, must divide both channel counts. Default: 1.
        bias: ``True`` (one per output channel and location, ``(C_out, H_out, W_out)``),
            ``"shared"`` (one per channel, ``(C_out,)``) or ``False``/``None``. Default: ``True``.
        padding_mode: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``. Default: ``'zeros'``.
        input_size: spatial input size ``(H, W)`` (an int broadcasts); ``None`` infers it at the
            first call (parameters stay uninitialised until then, as torch's Lazy modules). A later
            input of another size raises :class:`ShapeError`. Default: ``None``.
        device, dtype: factory arguments. Default: ``None``.

    Shape:
        - Input ``(B, C_in, H, W)`` or ``(C_in, H, W)``, ``(H, W) == input_size``.
        - Output ``(B, C_out, H_out, W_out)``, ``H_out = floor((H + 2p − d(k−1) − 1)/s) + 1``.

    Attributes:
        weight: ``(H_out, W_out, groups, C_in/groups, kh, kw, C_out/groups)`` (location-major),
            initialised U(±1/√fan_in), ``fan_in = C_in/groups·kh·kw`` (torch's conv default).
        bias: ``(C_out, H_out, W_out)``, ``(C_out,)`` or None; same init.

    Examples:
        >>> layer = LocallyConnected2d(3, 32, 3, padding="same", input_size=(32, 32))
        >>> layer(torch.randn(8, 3, 32, 32)).shape
        torch.Size([8, 32, 32, 32])
        >>> layer.weight.shape
        torch.Size([32, 32, 1, 3, 3, 3, 32])
    """

    _ndim = 2


class LocallyConnected3d(_LocallyConnectedNd):
    """3-d locally connected layer; as :class:`LocallyConnected2d` with ``input_size=(D, H, W)``.

    Shape:
        ``(B, C_in, D, H, W)`` → ``(B, C_out, D_out, H_out, W_out)``; weight
        ``(D_out, H_out, W_out, groups, C_in/groups, kd, kh, kw, C_out/groups)``.

    Examples:
        >>> LocallyConnected3d(1, 2, 3, input_size=(4, 5, 6))(torch.randn(2, 1, 4, 5, 6)).shape
        torch.Size([2, 2, 2, 3, 4])
    """

    _ndim = 3
