"""Low-rank locally connected layers: ``rank`` basis filter banks, mixed per output position.

Elsayed et al. 2020, "Revisiting spatial invariance with low-rank local connectivity" (ICML): the
filter bank at output position ``p`` is ``Σ_r α[p, r]·weight[r]``, a mix of ``R`` basis banks (each
a conv kernel) by learned combining weights. ``R = 1`` is a convolution; with ``combining="full"``
and ``normalize=None``, ``R = ∏out_size`` expresses every locally connected layer (one basis per
position, ``α`` the identity). In between, ``R`` sets how much the positions share.

Computed as ONE convolution with ``R·C_out`` output channels followed by the per-position mix
(:func:`layerlab.functional.lowrank_local_conv`).

Params: ``R·C_out·(C_in/groups)·∏k`` basis weights, ``R·Σout`` combining weights (``"full"``:
``R·∏out``), plus ``R·C_out`` biases (default; ``"shared"``: ``C_out``).
"""

from __future__ import annotations

import math

import torch
from torch.nn.parameter import UninitializedParameter

from layerlab.arith.sizes import DIM_NAMES
from layerlab.arith.specs import LowRankLocalSpec
from layerlab.functional.lowrank import combining_weights, lowrank_local_conv
from layerlab.nn._window import _LazyWindowedNd, element_count

__all__ = ["LowRankLocallyConnected1d", "LowRankLocallyConnected2d", "LowRankLocallyConnected3d"]


class _LowRankLocallyConnectedNd(_LazyWindowedNd):
    """N-d low-rank locally connected layer; see :class:`LowRankLocallyConnected2d`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        rank: int,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool | str | None = True,
        padding_mode: str = "zeros",
        input_size=None,
        combining: str = "factorized",
        normalize: str | None = "softmax",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        spec = self._set_window_args(
            LowRankLocalSpec, in_channels, bias, padding_mode, out_channels=out_channels,
            kernel_size=kernel_size, rank=rank, stride=stride, padding=padding, dilation=dilation,
            groups=groups, combining=combining, normalize=normalize,
        )
        self.rank, self.combining, self.normalize = spec.rank, spec.combining, spec.normalize
        self._set_input_size(input_size)
        factory_kwargs = {"device": device, "dtype": dtype}
        weight_shape = (self.rank, self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        bias_shape = {"location": (self.rank, self.out_channels), "shared": (self.out_channels,)}.get(self.bias_mode)
        out_size = None
        if self.input_size is not None:
            out_size = self._analyse(self.input_size, None).output_shape[1:]
        self._check_parameters(
            element_count(weight_shape, bias_shape) + (0 if out_size is None else spec.combining_count(out_size)),
            dtype, device, "Use a smaller rank, fewer channels or a smaller kernel",
        )
        self._new_parameters(weight_shape, bias_shape, device, dtype)
        for name in self._combining_names():
            setattr(self, name, UninitializedParameter(**factory_kwargs))
        if out_size is not None:
            self._materialize_combining(out_size)
        self.reset_parameters()

    def _combining_names(self) -> tuple[str, ...]:
        """``combining_h``, ``combining_w`` ("factorized", one per spatial dim) or ``combining_hw`` ("full")."""
        dims = [dim.lower() for dim in DIM_NAMES[self._ndim]]
        if self.combining == "full":
            return ("combining_" + "".join(dims),)
        return tuple(f"combining_{dim}" for dim in dims)

    def _combining_shapes(self, out_size: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        if self.combining == "full":
            return ((*out_size, self.rank),)
        return tuple((n, self.rank) for n in out_size)

    def _materialize_combining(self, out_size: tuple[int, ...]) -> None:
        with torch.no_grad():
            for name, shape in zip(self._combining_names(), self._combining_shapes(out_size)):
                getattr(self, name).materialize(shape)

    def _combining_logits(self) -> torch.Tensor | list[torch.Tensor]:
        logits = [getattr(self, name) for name in self._combining_names()]
        return logits[0] if self.combining == "full" else logits

    def combining_weights(self) -> torch.Tensor:
        """``α``: the normalised combining weights of every output position, ``(*out_size, R)``."""
        return combining_weights(self._combining_logits(), self.normalize)

    @property
    def output_size(self) -> tuple[int, ...] | None:
        """Spatial output size ``(H_out, W_out)`` (``None`` until the input size is known)."""
        if self.has_uninitialized_params():
            return None
        params = [getattr(self, name) for name in self._combining_names()]
        if self.combining == "full":
            return tuple(params[0].shape[: self._ndim])
        return tuple(p.shape[0] for p in params)

    def reset_parameters(self) -> None:
        """Basis weights and biases ~ U(±b), combining logits constant (the layer starts as a conv).

        ``b = 1/√fan_in`` (``fan_in = C_in/groups·∏k``, torch's conv default), times ``√R`` with
        ``normalize="softmax"``: the constant logits give every position ``α = 1/R`` (softmax) or
        ``1/√R`` (``"l2"``, ``None``: each of the ``n`` factorized factors ``1/(n·√R)``, as Elsayed
        et al.), so the mixed kernel is a conv kernel whose entries have the variance of torch's
        conv init. The combining logits are set once known (lazy layer before its first input).
        """
        self._init_uniform()
        if self.normalize == "softmax":
            with torch.no_grad():
                self.weight.mul_(math.sqrt(self.rank))
                if self.bias is not None:
                    self.bias.mul_(math.sqrt(self.rank))
        if self.has_uninitialized_params():
            return
        names = self._combining_names()
        with torch.no_grad():
            for name in names:
                getattr(self, name).fill_(1.0 / (len(names) * math.sqrt(self.rank)))

    def _materialize(self, in_size: tuple[int, ...], input: torch.Tensor) -> None:
        """The combining weights for the output size of ``in_size`` (the bases exist already)."""
        out_size = self._analyse(in_size, input).output_shape[1:]
        bases = sum(p.numel() for p in (self.weight, self.bias) if p is not None)
        self._check_parameters(
            bases + self.layer_spec().combining_count(out_size), self.weight.dtype, self.weight.device,
            "Use a smaller rank, or combining='factorized'",
        )
        self._materialize_combining(out_size)
        self.reset_parameters()

    def _check_loaded(self, in_size: tuple[int, ...], input: torch.Tensor) -> None:
        """The first input after loading a ``state_dict`` must produce the loaded output size."""
        self._check_loaded_output_size(in_size, input, "combining weights")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *input_size)`` or unbatched ``(C_in, *input_size)`` → ``(B, C_out, *output_size)``."""
        ndim = self._ndim
        self._check_input(input, "it has combining weights per position")
        unbatched = input.dim() == ndim + 1
        x = self._pad(input.unsqueeze(0) if unbatched else input)  # (B, C_in, *padded)
        out = lowrank_local_conv(
            x, self.weight, self.combining_weights(), self.bias, self.stride, self._op_padding,
            self.dilation, self.groups,
        )
        return out.squeeze(0) if unbatched else out  # (B, C_out, *output_size)

    def _window_repr(self) -> str:
        text = super()._window_repr().replace(
            f"kernel_size={self.kernel_size}", f"kernel_size={self.kernel_size}, rank={self.rank}"
        )
        if self.combining != "factorized":
            text += f", combining={self.combining!r}"
        if self.normalize != "softmax":
            text += f", normalize={self.normalize!r}"
        return text

    def extra_repr(self) -> str:
        size = "" if self.input_size is None else f", input_size={self.input_size}"
        return self._window_repr() + size

    def layer_spec(self):
        """This layer as a :class:`layerlab.arith.specs.LowRankLocalSpec`."""
        return self._layer_spec(LowRankLocalSpec, rank=self.rank, combining=self.combining, normalize=self.normalize)


class LowRankLocallyConnected1d(_LowRankLocallyConnectedNd):
    """1-d low-rank locally connected layer; as :class:`LowRankLocallyConnected2d` with
    ``input_size=(L,)`` (``"factorized"`` and ``"full"`` combining coincide in 1-d: one
    ``combining_l`` of shape ``(L_out, R)``).

    Examples:
        >>> LowRankLocallyConnected1d(2, 4, 3, rank=2)(torch.randn(8, 2, 10)).shape
        torch.Size([8, 4, 8])
    """

    _ndim = 1


class LowRankLocallyConnected2d(_LowRankLocallyConnectedNd):
    r"""2-d low-rank locally connected layer: ``rank`` conv filter banks mixed per output position.

    ``out[b, o, i, j] = Σ_r α[i, j, r]·(bias[r, o] + Σ_{c, u, v} x_pad[b, c, i·s_h + u·d_h,
    j·s_w + v·d_w]·weight[r, o, c, u, v])`` (groups=1 shown): position (i, j) uses the kernel
    ``Σ_r α[i, j, r]·weight[r]`` (Elsayed et al. 2020, low-rank local connectivity, "LRLC").

    Combining weights, as the paper's default: ``"factorized"`` logits ``combining_h[i] +
    combining_w[j]`` (a row and a column vector of ``R`` each, shared along the other axis: few
    parameters and a smooth spatial structure), normalised per position by a softmax (``α ≥ 0``,
    ``Σ_r α = 1``: every kernel is a convex mix of the bases, so ``R = 1`` is exactly a conv). The
    paper's other options are here too: ``combining="full"`` (one logit vector per position) and
    ``normalize="l2"``/``None``. ``combining="full", normalize=None`` with ``R = H_out·W_out`` can
    set ``α`` to the identity, so it expresses every ``LocallyConnected2d`` exactly
    (:func:`layerlab.convert.local_to_lowrank`); softmax and factorized logits cannot reach one-hot
    weights exactly.

    Bias: by default one per basis bank and channel, mixed by ``α`` like the kernels (the bias of
    the one ``R·C_out`` convolution, no extra op), so both ends stay exact with their bias: a
    conv's per-channel bias at ``R = 1`` and a local layer's per-position bias at ``R = H_out·W_out``.
    The paper's code adds instead a per-channel bias and a spatial bias (row + column) shared by
    the channels; ``bias="shared"`` gives the per-channel one.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode,
            input_size, device, dtype: as :class:`LocallyConnected2d` (defaults 1, 0, 1, 1,
            'zeros', None, None, None). ``groups`` works as in a conv: every basis bank is grouped.
        rank: number of basis filter banks ``R``.
        bias: ``True`` (``(R, C_out)``, mixed per position), ``"shared"`` (``(C_out,)``, added
            after the mix) or ``False``/``None``. Default: ``True``.
        combining: ``"factorized"`` or ``"full"``. Default: ``"factorized"``.
        normalize: ``"softmax"``, ``"l2"`` or ``None``. Default: ``"softmax"``.

    Shape:
        ``(B, C_in, H, W)`` → ``(B, C_out, H_out, W_out)`` with the conv formula per dim;
        ``(H, W) == input_size``.

    Attributes:
        weight: ``(R, C_out, C_in/groups, kh, kw)``: ``weight[r]`` is a conv weight.
        bias: ``(R, C_out)``, ``(C_out,)`` or None.
        combining_h, combining_w: ``(H_out, R)`` and ``(W_out, R)`` logits (``"factorized"``), or
            combining_hw: ``(H_out, W_out, R)`` (``"full"``).

    Examples:
        >>> layer = LowRankLocallyConnected2d(3, 16, 3, rank=4, padding=1)
        >>> layer(torch.randn(8, 3, 32, 32)).shape
        torch.Size([8, 16, 32, 32])
        >>> layer.weight.shape, layer.combining_h.shape, layer.combining_weights().shape
        (torch.Size([4, 16, 3, 3, 3]), torch.Size([32, 4]), torch.Size([32, 32, 4]))
    """

    _ndim = 2


class LowRankLocallyConnected3d(_LowRankLocallyConnectedNd):
    """3-d low-rank locally connected layer; as :class:`LowRankLocallyConnected2d` with
    ``input_size=(D, H, W)`` (factorized logits ``combining_d``, ``combining_h``, ``combining_w``).

    Examples:
        >>> LowRankLocallyConnected3d(1, 2, 3, rank=2)(torch.randn(2, 1, 4, 5, 6)).shape
        torch.Size([2, 2, 2, 3, 4])
    """

    _ndim = 3
