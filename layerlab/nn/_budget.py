"""Memory estimates of the modules, checked before torch allocates anything.

A module's parameters (and buffers) are counted before they are created, and the output of a
transposed convolution before the forward runs; past the limit of :mod:`layerlab.limits`
(``LAYERLAB_MAX_BYTES``, default 2 GiB) a :class:`~layerlab.errors.SizeLimitError` gives the
estimate and the fix instead of an allocator error or an out-of-memory kill.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable

import torch

from layerlab.limits import check_size, max_bytes_limit


def itemsize(dtype: torch.dtype | None) -> int:
    """Bytes per element of ``dtype`` (``None``: torch's default dtype)."""
    return (dtype or torch.get_default_dtype()).itemsize


def holds_memory(device) -> bool:
    """False when tensors created on ``device`` (``None``: the current default device) are ``meta``."""
    return torch.empty(0, device=device).device.type != "meta"


def check_parameters(who: str, elements: int, dtype: torch.dtype | None, device, hint: str,
                     what: str = "its parameters") -> None:
    """Raise :class:`~layerlab.errors.SizeLimitError` when ``elements`` parameters of ``dtype`` on
    ``device`` would be over the limit (parameters on the ``meta`` device take no memory)."""
    if holds_memory(device):
        check_size(f"{who}: {what}", elements, itemsize(dtype), hint=hint)


def check_output(describe: Callable[[], str], elements: int, like: torch.Tensor, hint: str) -> None:
    """Raise :class:`~layerlab.errors.SizeLimitError` when an output of ``elements`` elements of
    ``like``'s dtype would be over the limit (``meta`` tensors take no memory). Runs on every
    forward, so the message (``describe()``, e.g. the layer's repr) is built only when it is raised."""
    if not like.is_meta and elements * like.element_size() > max_bytes_limit():
        check_size(f"{describe()}: its output", elements, like.element_size(), hint=hint)


class ParameterBudget:
    """Mixin for subclasses of a ``torch.nn`` layer: count the layer's parameters and buffers first.

    The torch layer is built once on the ``meta`` device (shapes only: no memory, no random numbers
    drawn, torch's own argument checks); when its tensors fit the limit, the real layer is built.
    """

    _budget_hint = "Use fewer features"

    def __init__(self, *args, **kwargs) -> None:
        torch_layer = next(c for c in type(self).__mro__ if c.__module__.startswith("torch.nn.modules"))
        arguments = inspect.signature(torch_layer).bind(*args, **kwargs).arguments
        if holds_memory(arguments.get("device")):
            probe = torch_layer(**{**arguments, "device": "meta"})
            shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items() if k not in ("device", "dtype"))
            check_parameters(
                f"{type(self).__name__}({shown})",
                sum(t.numel() for t in itertools.chain(probe.parameters(), probe.buffers())),
                arguments.get("dtype"), arguments.get("device"), self._budget_hint,
                "its parameters and buffers" if any(True for _ in probe.buffers()) else "its parameters",
            )
        super().__init__(*args, **kwargs)
