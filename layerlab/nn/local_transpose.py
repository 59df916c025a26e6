"""Transposed locally connected layers: the adjoint of a locally connected layer, as ``ConvTranspose``
is of ``Conv``.

Every *input* position ``i`` has its own filter bank, which scatters into the output:
``out[b, g·O_g + o, i·s − p + t·d] += x[b, g·C_g + c, i] · weight[i, g, o, t, c]`` summed over
``i, c, t`` (+ bias), with ``C_g = C_in/groups``, ``O_g = C_out/groups``. The weight is, unchanged,
the weight of the :class:`~layerlab.nn.LocallyConnected2d` from ``C_out`` channels on this layer's
output grid to ``C_in`` channels on its input grid (same kernel, stride, padding, dilation, groups),
and the dense-equivalent matrix is that layer's, transposed. A ``ConvTranspose`` is the special case
of one filter bank at every position (:func:`layerlab.convert.conv_transpose_to_local`).

Params: ``∏in_size·C_in·(C_out/groups)·∏k`` weights, plus ``C_out·∏out_size`` biases (default, one
per channel and output position) or ``C_out`` (``bias="shared"``).
"""

from __future__ import annotations

import math

import torch

from layerlab.arith.specs import LocalTransposeSpec
from layerlab.errors import ShapeError
from layerlab.functional import local_conv_transpose
from layerlab.nn._shape import size_str
from layerlab.nn._window import _PositionBanksNd

__all__ = ["LocallyConnectedTranspose1d", "LocallyConnectedTranspose2d", "LocallyConnectedTranspose3d"]

# why a transposed local layer takes one input size (in its shape errors)
_FIXED_SIZE = "a transposed local layer has one filter per input position"


class _LocallyConnectedTransposeNd(_PositionBanksNd):
    """N-d transposed locally connected layer; see :class:`LocallyConnectedTranspose2d`."""

    _budget_hint = (
        "A transposed local layer stores one filter bank per input position; use a smaller input, "
        "or a ConvTranspose layer"
    )

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool | str | None = True,
        input_size=None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.output_padding = self._set_spec_args(
            LocalTransposeSpec, in_channels, bias, out_channels=out_channels, kernel_size=kernel_size,
            stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups,
        ).output_padding
        self.padding_mode = "zeros"  # as torch's ConvTranspose: zero padding only
        self._set_input_size(input_size)
        self._create_parameters(device, dtype)

    def _weight_shape(self, positions: tuple[int, ...]) -> tuple[int, ...]:
        """``(*in_size, groups, C_out/groups, *kernel_size, C_in/groups)``: the matching local layer's."""
        g = self.groups
        return (*positions, g, self.out_channels // g, *self.kernel_size, self.in_channels // g)

    def _bank_positions(self, in_size: tuple[int, ...], out_size: tuple[int, ...]) -> tuple[int, ...]:
        """A filter bank per input position."""
        return in_size

    @property
    def fan_in(self) -> int:
        """``C_out/groups·∏kernel_size``: torch's ConvTranspose fan_in (read from its weight's dim 1), which is
        also the fan_in of the matching local layer whose weight this is."""
        return self.out_channels // self.groups * math.prod(self.kernel_size)

    @property
    def fan_out(self) -> int:
        """``C_in/groups·∏kernel_size`` (the matching local layer's fan_out)."""
        return self.in_channels // self.groups * math.prod(self.kernel_size)

    @property
    def output_size(self) -> tuple[int, ...] | None:
        """Spatial output size (``None`` until the input size is known)."""
        if self.has_uninitialized_params():
            return None
        return self._analyse(tuple(self.weight.shape[: self._ndim]), None).output_shape[1:]

    def reset_parameters(self) -> None:
        """W, b ~ U(±1/√fan_in), ``fan_in = C_out/groups·∏kernel_size``: torch's ConvTranspose default
        (and the matching local layer's). A no-op until the parameters are materialised."""
        if not self.has_uninitialized_params():
            self._init_uniform()

    def _check_loaded(self, in_size: tuple[int, ...], input: torch.Tensor) -> None:
        """The first input after loading a ``state_dict`` must have the loaded input size."""
        loaded = tuple(self.weight.shape[: self._ndim])
        if in_size != loaded:
            raise ShapeError(
                f"{self._who()} holds weights for input size {size_str(loaded)}, got a "
                f"{size_str(in_size)} input: {_FIXED_SIZE}; feed inputs of the size the weights were trained on"
            )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *input_size)`` or unbatched ``(C_in, *input_size)`` → ``(B, C_out, *output_size)``."""
        ndim = self._ndim
        self._check_input(input, _FIXED_SIZE)
        unbatched = input.dim() == ndim + 1
        x = input.unsqueeze(0) if unbatched else input  # (B, C_in, *input_size)
        out = local_conv_transpose(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                   self.dilation, self.groups)
        return out.squeeze(0) if unbatched else out  # (B, C_out, *output_size)

    def _window_repr(self) -> str:
        """As the local layer's, with ``output_padding`` after ``padding`` (torch's ConvTranspose order)."""
        text = super()._window_repr()
        if self.output_padding == (0,) * self._ndim:
            return text
        after = f", padding={self.padding!r}" if self.padding != (0,) * self._ndim else f", kernel_size={self.kernel_size}"
        if self.stride != (1,) * self._ndim and after.startswith(", kernel"):
            after = f", stride={self.stride}"
        return text.replace(after, f"{after}, output_padding={self.output_padding}", 1)

    def layer_spec(self):
        """This layer as a :class:`layerlab.arith.specs.LocalTransposeSpec`."""
        return self._layer_spec(LocalTransposeSpec, output_padding=self.output_padding)


class LocallyConnectedTranspose1d(_LocallyConnectedTransposeNd):
    """1-d transposed locally connected layer: a separate filter bank at every input position ``l``.

    Same arguments as :class:`LocallyConnectedTranspose2d`, with ``input_size=(L,)``.

    Shape:
        ``(B, C_in, L)`` → ``(B, C_out, L_out)``, ``L_out = (L − 1)·s − 2p + d·(k − 1) + output_padding + 1``.
        Weight ``(L, groups, C_out/groups, k, C_in/groups)``.

    Examples:
        >>> LocallyConnectedTranspose1d(2, 4, 3, stride=2, input_size=5)(torch.randn(8, 2, 5)).shape
        torch.Size([8, 4, 11])
    """

    _ndim = 1


class LocallyConnectedTranspose2d(_LocallyConnectedTransposeNd):
    r"""2-d transposed locally connected layer: the windows of ``ConvTranspose2d``, a separate filter
    bank at every input position (i, j).

    ``out[b, o, i·s_h − p_h + u·d_h, j·s_w − p_w + v·d_w] += x[b, c, i, j] · weight[i, j, g, o, u, v, c]``
    summed over ``i, j, c, u, v`` (groups=1 shown), plus ``bias[o, ...]``. The weight is the weight of
    ``LocallyConnected2d(out_channels, in_channels, kernel_size, stride, padding, dilation, groups,
    input_size=output_size)``, whose output grid is this layer's input grid: this layer computes that
    layer's input gradient, and its dense-equivalent matrix is that layer's transposed.

    Params: ``H·W·C_in·(C_out/groups)·kh·kw`` weights + ``C_out·H_out·W_out`` biases
    (``bias="shared"``: ``C_out``).

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: window size, int or ``(kh, kw)``.
        stride: Default: 1.
        padding: crop of each side of the full output, int or ``(ph, pw)`` (as torch's
            ConvTranspose: no strings). Default: 0.
        output_padding: extra size on the right, smaller than stride or dilation. Default: 0.
        dilation: spacing between taps. Default: 1.
        groups: blocked connections, must divide both channel counts. Default: 1.
        bias: ``True`` (one per output channel and output position, ``(C_out, H_out, W_out)``),
            ``"shared"`` (one per channel, ``(C_out,)``) or ``False``/``None``. Default: ``True``.
        input_size: spatial input size ``(H, W)`` (an int broadcasts); ``None`` infers it at the
            first call (parameters stay uninitialised until then, as torch's Lazy modules). A later
            input of another size raises :class:`ShapeError`. Default: ``None``.
        device, dtype: factory arguments. Default: ``None``.

    Shape:
        - Input ``(B, C_in, H, W)`` or ``(C_in, H, W)``, ``(H, W) == input_size``.
        - Output ``(B, C_out, H_out, W_out)``, ``H_out = (H − 1)·s − 2p + d·(k − 1) + output_padding + 1``.

    Attributes:
        weight: ``(H, W, groups, C_out/groups, kh, kw, C_in/groups)`` (location-major over the
            *input* grid), initialised U(±1/√fan_in), ``fan_in = C_out/groups·kh·kw`` (torch's
            ConvTranspose default).
        bias: ``(C_out, H_out, W_out)``, ``(C_out,)`` or None; same init.

    Examples:
        >>> layer = LocallyConnectedTranspose2d(16, 3, 4, stride=2, padding=1, input_size=(8, 8))
        >>> layer(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 3, 16, 16])
        >>> layer.weight.shape
        torch.Size([8, 8, 1, 3, 4, 4, 16])
    """

    _ndim = 2


class LocallyConnectedTranspose3d(_LocallyConnectedTransposeNd):
    """3-d transposed locally connected layer; as :class:`LocallyConnectedTranspose2d` with
    ``input_size=(D, H, W)``.

    Shape:
        ``(B, C_in, D, H, W)`` → ``(B, C_out, D_out, H_out, W_out)``; weight
        ``(D, H, W, groups, C_out/groups, kd, kh, kw, C_in/groups)``.

    Examples:
        >>> LocallyConnectedTranspose3d(2, 1, 2, stride=2, input_size=(2, 3, 2))(torch.randn(1, 2, 2, 3, 2)).shape
        torch.Size([1, 1, 4, 6, 4])
    """

    _ndim = 3
