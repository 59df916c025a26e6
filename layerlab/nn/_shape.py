"""Shape diagnosis shared by the layerlab modules that subclass a ``torch.nn`` layer.

The modules do not check shapes on the success path (that would cost time on every call, and the
wrappers must stay within 3% of torch's speed). They run torch's forward inside ``try``; only when
torch raises do they diagnose the input and replace torch's cryptic message with a
:class:`~layerlab.errors.ShapeError` that names the layer, what it expected, what it got and the fix.
An error the diagnosis cannot explain is re-raised unchanged. Layers whose torch forward is a single
functional call repeat that call in their own ``forward`` (no extra Python call on the success path,
which matters for cheap layers such as ``Flatten``); the others call ``super().forward``.
"""

from __future__ import annotations

import torch

from layerlab.arith.sizes import DIM_NAMES
from layerlab.errors import LayerlabError, ShapeError


def shape_str(shape) -> str:
    """``(8, 3, 32, 32)`` as a string, also for a 1-element shape (no trailing comma)."""
    return "(" + ", ".join(str(int(n)) for n in shape) + ")"


def size_str(shape) -> str:
    """A spatial size written ``32×32``."""
    return "×".join(str(int(n)) for n in shape)


class ShapeDiagnosis:
    """Mixin: run the torch forward, and explain the input when torch rejects it.

    Subclasses implement :meth:`_check_input`, which raises :class:`ShapeError` for the problems it
    recognises and returns otherwise. As a last resort the layer's arith spec analyses the
    per-sample shape (e.g. an input smaller than a pooling window).
    """

    def forward(self, input: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        try:
            return super().forward(input, *args, **kwargs)
        except (RuntimeError, ValueError, IndexError):
            self._diagnose(input)
            raise

    def _diagnose(self, input) -> None:
        """Called when torch rejected ``input``: raise a ShapeError that explains it, if we can."""
        if isinstance(input, torch.Tensor):
            self._check_input(input)
            self._check_with_spec(input)

    def _check_input(self, input: torch.Tensor) -> None:
        raise NotImplementedError

    def _check_with_spec(self, input: torch.Tensor) -> None:
        ndim = getattr(self, "_ndim", None)
        per_sample = input.shape if ndim is not None and input.dim() == ndim + 1 else input.shape[1:]
        try:
            self.layer_spec().analyse(tuple(per_sample))
        except LayerlabError as err:
            raise ShapeError(f"{self!r} cannot take an input of shape {shape_str(input.shape)}: {err}") from None


def check_rank(layer, input: torch.Tensor, ndim: int, channel_name: str = "C") -> None:
    """Raise if ``input`` is neither ``(B, C, *spatial)`` nor unbatched ``(C, *spatial)``."""
    if input.dim() in (ndim + 1, ndim + 2):
        return
    spatial = ", ".join(DIM_NAMES[ndim])
    fix = (
        f"reshape it, e.g. x.view(B, {channel_name}, {spatial}), or use a {input.dim() - 2}d layer"
        if input.dim() >= 3
        else f"reshape it to (B, {channel_name}, {spatial}), e.g. x.view(B, 1, {spatial}) for one channel"
    )
    raise ShapeError(
        f"{layer!r} expects a {ndim + 2}-d input (B, {channel_name}, {spatial}) or a {ndim + 1}-d "
        f"unbatched input ({channel_name}, {spatial}), got a {input.dim()}-d input of shape "
        f"{shape_str(input.shape)}: {fix}"
    )


def check_channels(layer, input: torch.Tensor, ndim: int, expected: int, what: str = "in_channels") -> None:
    """Raise if the channel dim of a batched or unbatched ``(.., C, *spatial)`` input differs."""
    dim = input.dim() - ndim - 1
    got = input.shape[dim]
    if got == expected:
        return
    raise ShapeError(
        f"{layer!r} expects {expected} input channels (dim {dim} of the input), got {got} from an "
        f"input of shape {shape_str(input.shape)}: set {what}={got} to match the previous layer, "
        f"or feed it {expected}-channel inputs"
    )
