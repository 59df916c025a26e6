"""Training memory measured: one real forward+backward of a model, and what autograd kept.

The summary's memory numbers are an **estimate** from the rows' shapes
(:func:`layerlab.arith.counts.activation_elements`: the network input and every row's output are
kept for backward). :func:`measure_memory` runs the model for real instead, once, in training mode,
at the given batch size, on the device its parameters live on:

* ``saved_for_backward``: the bytes of the distinct tensors autograd keeps for the backward pass,
  counted with :func:`torch.autograd.graph.saved_tensors_hooks` during the forward: each saved
  tensor's storage once (a view and its base are one storage), parameters and buffers left out
  (they exist with or without training). This is the quantity the estimate's
  ``activations_training`` predicts, on any device.
* ``peak``: on CUDA, ``torch.cuda.max_memory_allocated()`` over forward and backward minus what
  was allocated before (so: activations, gradients of activations and parameters, workspaces);
  ``None`` on CPU, which has no allocator statistics.

The model is not changed: parameters enter as detached aliases (their ``.grad`` stays untouched),
buffers as copies (BatchNorm's running statistics are not updated), the training flags are restored.
The backward pass starts from a gradient of ones on every output that needs one (no loss function,
which would save tensors of its own).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from layerlab.analysis.trace import tensors_in
from layerlab.errors import ArgumentError, ShapeError

__all__ = ["measure_memory"]


def _storage(tensor: torch.Tensor) -> tuple[int, int]:
    """``(address, bytes)`` of the storage under ``tensor`` (shared by all its views)."""
    storage = tensor.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


def measure_memory(model: nn.Module, input_shape: tuple[int, ...], *, batch_size: int = 1,
                   dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Run one forward+backward of ``model`` on ``(batch_size, *input_shape)`` random inputs and
    measure its training memory (see the module docstring).

    Args:
        model (nn.Module): with real parameters (not on the meta device).
        input_shape (tuple of int): per-sample input shape.
        batch_size (int): leading dimension of the input (default: 1).
        dtype (torch.dtype): of the input (default: torch.float32).

    Returns:
        ``{"device": "cpu", "saved_for_backward": bytes, "peak": bytes or None}``.

    Raises:
        ArgumentError: the model's parameters are on the meta device.
        ShapeError: the real forward or backward failed (torch's message).

    Examples:
        >>> measure_memory(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), (4,), batch_size=2)["saved_for_backward"]
        56
    """
    tensors = list(model.parameters()) + list(model.buffers())
    if any(t.is_meta for t in tensors):
        raise ArgumentError(
            f"measure_memory: {type(model).__name__} has parameters on the meta device; measuring runs the model "
            "for real. Build it on cpu or cuda (on the command line: --device cpu)"
        )
    device = tensors[0].device if tensors else torch.device("cpu")
    state = {
        **{name: p.detach().requires_grad_(p.requires_grad) for name, p in model.named_parameters()},
        **{name: b.clone() for name, b in model.named_buffers()},
    }
    kept = {_storage(t)[0] for t in state.values()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        address, size = _storage(tensor)
        if address not in kept:
            saved[address] = size
        return tensor

    x = torch.randn((batch_size, *input_shape), dtype=dtype, device=device)
    training = {m: m.training for m in model.modules()}
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    try:
        model.train()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            outputs = tensors_in(torch.func.functional_call(model, state, (x,), tie_weights=True, strict=False))
        needs = [t for t in outputs if t.requires_grad]
        if needs:
            torch.autograd.backward(needs, [torch.ones_like(t) for t in needs])
    except RuntimeError as err:
        raise ShapeError(f"measure_memory: the real forward+backward of {type(model).__name__} on input "
                         f"{(batch_size, *input_shape)} failed: {err}") from err
    finally:
        for module, flag in training.items():
            module.train(flag)
    peak = None
    if cuda:
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
    return {"device": device.type, "saved_for_backward": sum(saved.values()), "peak": peak}
