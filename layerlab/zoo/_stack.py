"""Helpers the model builders share: argument checks, width scaling, and a shape-tracking stack."""

from __future__ import annotations

import math

from torch import nn

import layerlab.nn as L
from layerlab.errors import ArgumentError, LayerlabError, ShapeError

# layer classes by number of spatial dims
CONV = {1: L.Conv1d, 2: L.Conv2d}
CONV_T = {1: L.ConvTranspose1d, 2: L.ConvTranspose2d}
LOCAL = {1: L.LocallyConnected1d, 2: L.LocallyConnected2d}
LOWRANK = {1: L.LowRankLocallyConnected1d, 2: L.LowRankLocallyConnected2d}
TILED = {1: L.TiledConv1d, 2: L.TiledConv2d}
MAX_POOL = {1: L.MaxPool1d, 2: L.MaxPool2d}
AVG_POOL = {1: L.AvgPool1d, 2: L.AvgPool2d}
BATCH_NORM = {1: L.BatchNorm1d, 2: L.BatchNorm2d}


def scaled(base: int, width: float) -> int:
    """``max(1, round(base · width))``: a channel or unit count scaled by ``width``."""
    return max(1, round(base * width))


def check_build_args(name: str, input_shape, num_classes, width) -> tuple[tuple[int, ...], int, float]:
    """Validate the arguments of :func:`layerlab.zoo.build`; return them normalised."""
    if not isinstance(input_shape, (tuple, list)) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in input_shape
    ):
        raise ArgumentError(
            f"zoo model {name!r}: input_shape must be a tuple of positive ints, (C, L) or (C, H, W) "
            f"per sample without the batch dim. Received: input_shape={input_shape!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ArgumentError(f"zoo model {name!r}: num_classes must be a positive int. Received: "
                            f"num_classes={num_classes!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise ArgumentError(f"zoo model {name!r}: width must be a positive finite number (1.0 = the "
                            f"documented size). Received: width={width!r}")
    return tuple(input_shape), num_classes, float(width)


def spatial_ndim(name: str, input_shape: tuple[int, ...], allowed=(1, 2)) -> int:
    """Number of spatial dims of ``(C, *spatial)``, checked against ``allowed``."""
    ndim = len(input_shape) - 1
    if ndim not in allowed:
        forms = " or ".join({1: "(C, L)", 2: "(C, H, W)"}[n] for n in allowed)
        raise ShapeError(
            f"zoo model {name!r} takes inputs {forms} per sample. Received: input_shape={input_shape}"
            + ("; add a channel dim, e.g. (1, L)" if ndim == 0 else "")
        )
    return ndim


class Stack:
    """Appends layers while tracking the per-sample output shape through each ``layer_spec()``.

    Args:
        name: the model's name, for error messages.
        input_shape: per-sample input shape ``(C, *spatial)``.

    Attributes:
        shape: the per-sample shape after the layers added so far.
        layers: the modules added so far.
    """

    def __init__(self, name: str, input_shape: tuple[int, ...]) -> None:
        self.name = name
        self.input_shape = input_shape
        self.shape = input_shape
        self.layers: list[nn.Module] = []
        self.macs = 0

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def spatial(self) -> tuple[int, ...]:
        return self.shape[1:]

    def add(self, module: nn.Module, *, shape: tuple[int, ...] | None = None) -> None:
        """Append ``module``; its output shape (and MACs) come from its spec unless ``shape`` gives the
        shape (a layer without MACs, such as global pooling)."""
        if shape is None:
            try:
                report = module.layer_spec().analyse(self.shape)
                shape = report.output_shape
                self.macs += report.macs
            except LayerlabError as err:
                raise ShapeError(
                    f"zoo model {self.name!r} does not fit input_shape={self.input_shape}: layer "
                    f"{len(self.layers) + 1} ({module!r}) gets {self.shape}: {err}"
                ) from None
        self.shape = tuple(shape)
        self.layers.append(module)

    def sequential(self) -> nn.Sequential:
        return nn.Sequential(*self.layers)
