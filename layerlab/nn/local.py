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

from layerlab.arith.specs import LocalSpec
from layerlab.functional import local_conv
from layerlab.nn._window import _PositionBanksNd

__all__ = ["LocallyConnected1d", "LocallyConnected2d", "LocallyConnected3d"]

# why a local layer takes one input size (in its shape errors)
_FIXED_SIZE = "a local layer has one filter per position"


class _LocallyConnectedNd(_PositionBanksNd):
    """N-d locally connected layer; see :class:`LocallyConnected2d` for the documentation."""

    _budget_hint = (
        "A local layer stores one filter bank per output position; use a smaller input or a larger stride, "
        "or a conv or tiled layer"
    )

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
        self._set_input_size(input_size)
        self._create_parameters(device, dtype)

    def _bank_positions(self, in_size: tuple[int, ...], out_size: tuple[int, ...]) -> tuple[int, ...]:
        """A filter bank per output position."""
        return out_size

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

    def _check_loaded(self, in_size: tuple[int, ...], input: torch.Tensor) -> None:
        """The first input after loading a ``state_dict`` must produce the loaded output size."""
        self._check_loaded_output_size(in_size, input, "weights", why=_FIXED_SIZE)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *input_size)`` or unbatched ``(C_in, *input_size)`` → ``(B, C_out, *output_size)``."""
        ndim = self._ndim
        self._check_input(input, _FIXED_SIZE)
        unbatched = input.dim() == ndim + 1
        x = self._pad(input.unsqueeze(0) if unbatched else input)  # (B, C_in, *padded)
        out = local_conv(x, self.weight, self.bias, self.stride, self._op_padding, self.dilation, self.groups)
        return out.squeeze(0) if unbatched else out  # (B, C_out, *output_size)

    def layer_spec(self):
        """This layer as a :class:`layerlab.arith.specs.LocalSpec`."""
        return self._layer_spec(LocalSpec)


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
