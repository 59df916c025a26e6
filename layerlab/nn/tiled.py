"""Tiled convolutions: filter banks shared between positions equal modulo a tile size.

Output position ``p`` uses ``weight[p mod tile_size]`` (Le et al. 2010, "Tiled convolutional neural
networks"): partial weight sharing between a convolution (tile 1) and a locally connected layer
(tile = output size). The weights do not depend on the input size, so a tiled layer takes inputs of
any size.

Params: ``∏tile_size·(C_in/groups)·∏k·C_out`` weights, plus ``C_out·∏tile_size`` biases (default)
or ``C_out`` (``bias="shared"``).
"""

from __future__ import annotations

import torch

from layerlab.arith.specs import TiledSpec
from layerlab.functional.tiled import tiled_conv
from layerlab.nn._window import _WindowedNd, element_count

__all__ = ["TiledConv1d", "TiledConv2d", "TiledConv3d"]


class _TiledConvNd(_WindowedNd):
    """N-d tiled convolution; see :class:`TiledConv2d` for the documentation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        tile_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool | str | None = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.tile_size = self._set_window_args(
            TiledSpec, in_channels, bias, padding_mode, out_channels=out_channels, kernel_size=kernel_size,
            tile_size=tile_size, stride=stride, padding=padding, dilation=dilation, groups=groups,
        ).tile_size
        weight_shape, bias_shape = self._weight_shape(self.tile_size), self._bias_shape(self.tile_size)
        self._check_parameters(
            element_count(weight_shape, bias_shape), dtype, device,
            "Use a smaller tile_size, fewer channels or a smaller kernel",
        )
        self._new_parameters(weight_shape, bias_shape, device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """W, b ~ U(±1/√fan_in), fan_in = C_in/groups·∏kernel_size: torch's conv default."""
        self._init_uniform()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *in_size)`` or unbatched ``(C_in, *in_size)`` → ``(B, C_out, *out_size)``."""
        ndim = self._ndim
        if input.dim() != ndim + 2 or input.shape[1] != self.in_channels:
            self._check_rank_channels(input)
        unbatched = input.dim() == ndim + 1
        x = self._pad(input.unsqueeze(0) if unbatched else input)  # (B, C_in, *padded)
        out = tiled_conv(x, self.weight, self.bias, self.stride, self._op_padding, self.dilation, self.groups)
        return out.squeeze(0) if unbatched else out  # (B, C_out, *out_size)

    def _window_repr(self) -> str:
        return super()._window_repr().replace(
            f"kernel_size={self.kernel_size}", f"kernel_size={self.kernel_size}, tile_size={self.tile_size}"
        )

    def extra_repr(self) -> str:
        return self._window_repr()

    def layer_spec(self):
        """This layer as a :class:`layerlab.arith.specs.TiledSpec`."""
        return self._layer_spec(TiledSpec, tile_size=self.tile_size)


class TiledConv1d(_TiledConvNd):
    """1-d tiled convolution; as :class:`TiledConv2d` with ``tile_size=(T,)``.

    Examples:
        >>> TiledConv1d(2, 4, 3, tile_size=2)(torch.randn(8, 2, 10)).shape
        torch.Size([8, 4, 8])
    """

    _ndim = 1


class TiledConv2d(_TiledConvNd):
    r"""2-d tiled convolution: output position (i, j) uses the filter bank ``weight[i mod th, j mod tw]``.

    ``out[b, o, i, j] = bias[o, i mod th, j mod tw] + Σ_{c, u, v} x_pad[b, c, i·s_h + u·d_h,
    j·s_w + v·d_w] · weight[i mod th, j mod tw, g, c, u, v, o]`` (groups=1 shown).
    ``tile_size=1`` is ``Conv2d``; ``tile_size = output size`` is ``LocallyConnected2d``.

    Params: ``th·tw·(C_in/groups)·kh·kw·C_out`` weights + ``C_out·th·tw`` biases (``"shared"``: ``C_out``).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
        padding_mode, device, dtype: as :class:`LocallyConnected2d` (defaults 1, 0, 1, 1, True,
            'zeros', None, None).
        tile_size: ``(th, tw)`` or an int; positions equal modulo it share weights.

    Shape:
        ``(B, C_in, H, W)`` → ``(B, C_out, H_out, W_out)`` with the conv formula per dim.

    Attributes:
        weight: ``(th, tw, groups, C_in/groups, kh, kw, C_out/groups)``, U(±1/√fan_in) as conv.
        bias: ``(C_out, th, tw)``, ``(C_out,)`` or None.

    Examples:
        >>> layer = TiledConv2d(3, 16, 3, tile_size=2, padding=1)
        >>> layer(torch.randn(8, 3, 32, 32)).shape
        torch.Size([8, 16, 32, 32])
        >>> layer.weight.shape
        torch.Size([2, 2, 1, 3, 3, 3, 16])
    """

    _ndim = 2


class TiledConv3d(_TiledConvNd):
    """3-d tiled convolution; as :class:`TiledConv2d` with ``tile_size=(td, th, tw)``.

    Examples:
        >>> TiledConv3d(1, 2, 3, tile_size=2)(torch.randn(2, 1, 4, 5, 6)).shape
        torch.Size([2, 2, 2, 3, 4])
    """

    _ndim = 3
