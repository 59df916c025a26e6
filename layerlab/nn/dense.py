"""Dense (fully connected) layer: ``torch.nn.Linear`` with an optional, inferred ``in_features``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

from layerlab.arith.specs import DenseSpec, dense_mismatch
from layerlab.errors import ShapeError
from layerlab.nn._budget import check_parameters
from layerlab.nn._shape import ShapeDiagnosis

__all__ = ["Dense"]


class Dense(ShapeDiagnosis, LazyModuleMixin, nn.Linear):
    r"""Fully connected layer: every output is a weighted sum of every input feature.

    ``y = x Wᵀ + b``, applied over the last dim (as ``torch.nn.Linear``).
    Params: ``in_features·out_features`` weights + ``out_features`` biases.

    ``in_features`` is keyword-only on purpose: ``Dense(784, 10)`` would otherwise read as
    "784 inputs" in torch's order but "784 outputs" in Keras' order. When it is omitted, it is
    inferred from ``input.shape[-1]`` at the first call (torch's lazy-module machinery, as
    ``nn.LazyLinear``), after which the layer keeps its class (it does not turn into ``nn.Linear``,
    so it keeps ``layer_spec()`` and its error messages). ``state_dict`` keys and shapes are those
    of ``nn.Linear``, so weights load both ways, also into a not yet initialised layer.

    Args:
        out_features: size of each output sample.
        in_features: size of each input sample; ``None`` infers it at the first call.
            Default: ``None``.
        bias: learn an additive bias. Default: ``True``.
        device, dtype: factory arguments. Default: ``None``.

    Shape:
        ``(*, in_features)`` → ``(*, out_features)``.

    Examples:
        >>> layer = Dense(10)
        >>> layer(torch.randn(8, 784)).shape
        torch.Size([8, 10])
        >>> layer.in_features
        784
    """

    cls_to_become = None

    def __init__(
        self,
        out_features: int,
        *,
        in_features: int | None = None,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        DenseSpec(out_features, in_features, bias)  # checks the arguments
        if in_features is not None:
            _check_size(in_features, out_features, bias, dtype, device)
            super().__init__(in_features, out_features, bias, **factory_kwargs)
            return
        # no tensors yet: the parameters are materialised at the first call
        super().__init__(0, 0, False)
        self.out_features = out_features
        self.weight = UninitializedParameter(**factory_kwargs)
        if bias:
            self.bias = UninitializedParameter(**factory_kwargs)

    def reset_parameters(self) -> None:
        """torch's ``nn.Linear`` init: W, b ~ U(±1/√in_features) (no-op until materialised)."""
        if not self.has_uninitialized_params() and self.in_features != 0:
            super().reset_parameters()

    def initialize_parameters(self, input: torch.Tensor) -> None:
        """Infer ``in_features`` from ``input.shape[-1]`` and materialise the parameters."""
        if input.dim() == 0:
            self._check_input(input)
        if self.has_uninitialized_params():
            _check_size(input.shape[-1], self.out_features, self.bias is not None, self.weight.dtype,
                             self.weight.device)
            with torch.no_grad():
                self.in_features = input.shape[-1]
                self.weight.materialize((self.out_features, self.in_features))
                if self.bias is not None:
                    self.bias.materialize((self.out_features,))
                self.reset_parameters()
        elif self.in_features == 0:  # parameters came from a state_dict
            self.in_features = self.weight.shape[1]

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        try:
            return F.linear(input, self.weight, self.bias)  # torch's Linear.forward
        except RuntimeError:
            self._diagnose(input)
            raise

    def extra_repr(self) -> str:
        inferred = "?" if self.has_uninitialized_params() else self.in_features
        return f"{self.out_features}, in_features={inferred}, bias={self.bias is not None}"

    def layer_spec(self):
        """This layer as a :class:`layerlab.arith.specs.DenseSpec` (``in_features`` None until known)."""
        known = not self.has_uninitialized_params() and self.in_features != 0
        return DenseSpec(
            out_features=self.out_features,
            in_features=self.in_features if known else None,
            bias=self.bias is not None,
        )

    def _check_input(self, input: torch.Tensor) -> None:
        if input.dim() == 0:
            features = self.in_features or "in_features"  # 0 while lazy
            raise ShapeError(
                f"{self!r} expects an input of shape (*, {features}), got a 0-d tensor: give it at "
                "least one dim, e.g. x.view(1, -1)"
            )
        if input.shape[-1] != self.in_features:
            raise ShapeError(dense_mismatch(repr(self), self.in_features, tuple(input.shape), batched=input.dim() > 1))


def _check_size(in_features: int, out_features: int, bias: bool, dtype: torch.dtype | None, device) -> None:
    """Refuse a weight and bias over the memory limit before allocating them."""
    params = DenseSpec(out_features, in_features, bias).analyse((in_features,)).params
    check_parameters(
        f"Dense({out_features}, in_features={in_features}, bias={bias})", params, dtype, device,
        "Use fewer features (pool or stride before this layer)",
    )
