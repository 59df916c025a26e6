"""``build``, the ``MODELS`` registry, parameter counting and the width solver."""

from __future__ import annotations

import inspect
import math
from typing import Callable

import torch
from torch import nn

from layerlab.errors import ArgumentError, SizeLimitError
from layerlab.limits import ENV_VAR, format_bytes, max_bytes_limit
from layerlab.zoo import classic, families, generative, segmentation
from layerlab.zoo._stack import check_build_args

__all__ = ["MODELS", "build", "count_params", "model_options", "width_for_params"]

# name -> builder(input_shape, num_classes, width) -> nn.Module
MODELS: dict[str, Callable[..., nn.Module]] = {
    "logistic": families.logistic,
    "mlp": families.mlp,
    "cnn": families.cnn,
    "lcn": families.lcn,
    "tiled": families.tiled,
    "lowrank": families.lowrank,
    "allconv": families.allconv,
    "lenet5": classic.lenet5,
    "tf_cifar10": classic.tf_cifar10,
    "tf_cifar10_local": classic.tf_cifar10_local,
    "cuda_convnet": classic.cuda_convnet,
    "dcgan_generator": generative.dcgan_generator,
    "dcgan_discriminator": generative.dcgan_discriminator,
    "unet": segmentation.unet,
}

_ZOO_BUILDERS = dict(MODELS)  # the builders above, for the size pre-check in `build`


def build(name: str, input_shape: tuple[int, ...], num_classes: int, width: float = 1.0, **options) -> nn.Module:
    """Build the zoo model ``name`` for per-sample inputs ``input_shape``.

    Args:
        name: a key of :data:`MODELS`.
        input_shape: per-sample shape without the batch dim, ``(C, L)`` or ``(C, H, W)``
            (``dcgan_generator``: the latent ``(nz, 1, 1)``).
        num_classes: number of outputs per sample (``dcgan_generator``: image channels;
            ``unet``: classes per pixel).
        width: scales every channel and hidden-unit count, ``max(1, round(base·width))``.
            Default: ``1.0`` (the documented sizes).
        options: the builder's own keyword-only options, e.g. ``tile_size`` of ``tiled``,
            ``rank`` of ``lowrank`` (:func:`model_options` lists them). Default: none.

    Returns:
        A freshly initialised ``nn.Module`` (on the current default device) built from layerlab
        layers; classifiers return logits ``(B, num_classes)``.

    Raises:
        ArgumentError: unknown name, an option the builder does not take, or a bad
            ``input_shape``/``num_classes``/``width``.
        ShapeError: the model cannot take inputs of this shape (too small, wrong number of dims).
        SizeLimitError: the parameters would take more than ``$LAYERLAB_MAX_BYTES`` (default 2 GiB);
            counted on the meta device first, so nothing was allocated (the zoo's own models; a
            builder added to ``MODELS`` by the user is called once, unchecked).

    Examples:
        >>> build("cnn", (1, 40), 10)(torch.randn(4, 1, 40)).shape
        torch.Size([4, 10])
        >>> count_params(build("lenet5", (1, 32, 32), 10))
        61706
    """
    input_shape, num_classes, width = _checked(name, input_shape, num_classes, width, options)
    # the zoo's own builders are pure and meta-safe: count first (under `with torch.device("meta")`
    # nothing is allocated anyway); builders a user registers in MODELS are called once, as they are
    if MODELS[name] is _ZOO_BUILDERS.get(name) and torch.empty(0).device.type != "meta":
        n = _params_at(name, input_shape, num_classes, width, options)
        nbytes, limit = n * torch.get_default_dtype().itemsize, max_bytes_limit()
        if nbytes > limit:
            raise SizeLimitError(
                f"zoo model {name!r} with input_shape={input_shape}, width={width:g} has {n:,} "
                f"parameters = {format_bytes(nbytes)}, over the limit of {format_bytes(limit)}; nothing "
                f"was allocated. Choose a smaller width (width_for_params finds one for a parameter "
                f"budget) or raise the limit with the environment variable {ENV_VAR}"
            )
    return MODELS[name](input_shape, num_classes, width, **options)


def model_options(name: str) -> tuple[str, ...]:
    """The keyword-only options of the zoo model ``name``'s builder (``("tile_size",)`` for ``tiled``).

    Examples:
        >>> model_options("tiled"), model_options("cnn")
        (('tile_size',), ())
    """
    if name not in MODELS:
        raise ArgumentError(f"unknown zoo model {name!r}; choose one of {', '.join(MODELS)}")
    try:
        parameters = inspect.signature(MODELS[name]).parameters.values()
    except (TypeError, ValueError):  # a builder registered by the user that Python cannot introspect
        return ()
    return tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY)


def _checked(name: str, input_shape, num_classes, width, options=None) -> tuple[tuple[int, ...], int, float]:
    known = model_options(name)
    unknown = sorted(set(options or ()) - set(known))
    if unknown:
        takes = f"the options {', '.join(known)}" if known else "no options"
        raise ArgumentError(f"zoo model {name!r} takes {takes}. Received: {', '.join(unknown)}; leave them out or pick "
                            "a model that takes them")
    return check_build_args(name, input_shape, num_classes, width)


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (``requires_grad``) of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _params_at(name: str, input_shape, num_classes: int, width: float, options=None) -> int:
    with torch.device("meta"):  # shapes only: nothing is allocated
        return count_params(MODELS[name](input_shape, num_classes, width, **(options or {})))


def width_for_params(
    name: str, input_shape: tuple[int, ...], num_classes: int, target: int,
    *, min_width: float = 1 / 64, max_width: float = 64.0,
) -> float:
    """The ``width`` whose parameter count is closest to ``target``, to match budgets across families.

    Parameter counts are non-decreasing step functions of ``width`` (counts are rounded), so the
    solver bisects ``log(width)`` for the smallest width reaching ``target`` and returns it or its
    neighbour just below, whichever count is closer. Models are built on the meta device, so even
    huge widths cost no memory.

    Args:
        name: a key of :data:`MODELS`.
        input_shape, num_classes: as for :func:`build`.
        target: the parameter budget (> 0).
        min_width, max_width: the search range. Default: ``1/64`` and ``64``.

    Returns:
        The width (a float in ``[min_width, max_width]``).

    Raises:
        ArgumentError: ``target`` is not a positive int, the model's count does not depend on
            ``width`` (``logistic``), or the budget lies outside what the range reaches.

    Examples:
        >>> w = width_for_params("mlp", (1, 40), 10, 50_000)
        >>> abs(count_params(build("mlp", (1, 40), 10, w)) - 50_000) < 500
        True
    """
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise ArgumentError(f"target must be a positive int (a parameter count). Received: target={target!r}")
    input_shape, num_classes, _ = _checked(name, input_shape, num_classes, min_width)
    lo_params = _params_at(name, input_shape, num_classes, min_width)
    hi_params = _params_at(name, input_shape, num_classes, max_width)
    if lo_params == hi_params:
        raise ArgumentError(f"zoo model {name!r} has {lo_params:,} parameters at every width; "
                            f"width cannot match target={target:,}, pick another model")
    if not lo_params <= target <= hi_params:
        raise ArgumentError(
            f"zoo model {name!r} spans {lo_params:,} to {hi_params:,} parameters for widths "
            f"{min_width:g} to {max_width:g}. Received: target={target:,}; widen min_width/max_width "
            f"or choose a reachable target"
        )
    lo, hi = math.log(min_width), math.log(max_width)  # params(lo) < target <= params(hi)
    while hi - lo > 1e-6:
        mid = (lo + hi) / 2
        if _params_at(name, input_shape, num_classes, math.exp(mid)) >= target:
            hi = mid
        else:
            lo = mid
    below, above = math.exp(lo), math.exp(hi)
    n_below = _params_at(name, input_shape, num_classes, below)
    n_above = _params_at(name, input_shape, num_classes, above)
    return above if abs(n_above - target) <= abs(target - n_below) else below
