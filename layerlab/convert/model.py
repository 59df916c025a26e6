"""Convert every convolution of a (nested) model to its locally connected or dense equivalent.

``convert_model(cnn, to="dense", input_shape=...)`` gives the "equivalent fully connected network"
of a CNN (d'Ascoli et al. 2019, "Finding the needle in the haystack with convolutions"), and
``to="local"`` the locally connected network started from a trained CNN. Outputs are identical.

How: one forward pass of a copy of the model (eval mode, no gradients) records the input shape
of every module; each conv-like module is then replaced, in its parent, by
:func:`~layerlab.convert.conv_to_local` (``to="local"``) or by
``Sequential(Flatten(), Dense, Unflatten(1, output_shape))`` holding its dense-equivalent matrix
(``to="dense"``), so shapes stay as they were.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from layerlab.convert.geometry import geometry_of
from layerlab.convert.layers import _dense_from, conv_to_local, lowrank_to_local, tiled_to_local
from layerlab.convert.matrix import estimate_entries
from layerlab.errors import ArgumentError, ShapeError
from layerlab.limits import check_size

__all__ = ["convert_model", "TARGETS"]

TARGETS = ("local", "dense")


def _is_builtin(module: nn.Module) -> bool:
    """A torch.nn or layerlab class (their parametrised leaves never hide a convolution)."""
    name = type(module).__module__
    return name.startswith("torch.nn.") or name.startswith("layerlab.")


def _record_shapes(model: nn.Module, input_shape) -> dict[int, list[tuple[int, ...]]]:
    """Per-sample input shapes of every module (by ``id``) called by ``model(zeros(1, *input_shape))``."""
    shapes: dict[int, list[tuple[int, ...]]] = {}
    handles = []
    for module in model.modules():
        def hook(mod, args):
            if args and isinstance(args[0], torch.Tensor):
                shapes.setdefault(id(mod), []).append(tuple(args[0].shape[1:]))
        handles.append(module.register_forward_pre_hook(hook))
    modes = {name: module.training for name, module in model.named_modules()}
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    device = param.device if param is not None else None
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, dtype=dtype, device=device))
    except Exception as err:  # the user's forward: report which input it could not take
        raise ShapeError(
            f"convert_model: the model's forward failed on an input of per-sample shape "
            f"{tuple(input_shape)}: {type(err).__name__}: {err}. Pass the input_shape the model expects"
        ) from err
    finally:
        for handle in handles:
            handle.remove()
        for name, module in model.named_modules():
            module.train(modes[name])
    return shapes


def _replacement(module, name, shapes, to, max_bytes):
    """The module that replaces a conv-like ``module`` (``None``: keep it)."""
    geometry = geometry_of(module)
    where = f"{type(module).__name__} at {name!r}"
    if to == "local" and geometry.kind == "local":
        return None
    if to == "local" and geometry.kind == "transpose":
        raise ArgumentError(
            f"convert_model: {where} ({module!r}) is a transposed convolution, which has no locally "
            "connected equivalent in layerlab. Use to='dense', or keep this layer out of the converted model"
        )
    if id(module) not in shapes:
        raise ArgumentError(
            f"convert_model: {where} was not called by forward on an input of shape (1, ...), so its input "
            "size is unknown and it cannot be converted. Remove unused layers or pass the input_shape "
            "that reaches them"
        )
    if len(set(shapes[id(module)])) > 1:
        raise ArgumentError(
            f"convert_model: {where} is called on inputs of different shapes {sorted(set(shapes[id(module)]))}; "
            "its local or dense equivalent is built for one input size. Use a separate layer per call"
        )
    shape = shapes[id(module)][0]
    if to == "local":
        if geometry.kind == "lowrank":
            return lowrank_to_local(module, max_bytes=max_bytes)
        convert = conv_to_local if geometry.kind == "conv" else tiled_to_local
        return convert(module, shape[1:], max_bytes=max_bytes)
    dense = _dense_from(module, shape, max_bytes)
    out_shape = (geometry.out_channels, *geometry.output_size(shape[1:]))
    return nn.Sequential(nn.Flatten(), dense, nn.Unflatten(1, out_shape))


def convert_model(model: nn.Module, to: str, input_shape, *, max_bytes: int | None = None) -> nn.Module:
    """A copy of ``model`` with every convolution replaced by its local or dense equivalent.

    Conv-like modules (``torch.nn``/layerlab ``Conv*d``; also ``TiledConv*d``; for ``to="dense"``
    also ``ConvTranspose*d`` and ``LocallyConnected*d``) anywhere in the module tree (Sequential,
    ModuleList, ModuleDict, custom modules) are replaced in their parent; everything else is kept
    (shared, not copied twice). The result computes the same function (outputs equal to float
    rounding; exactly in float64 up to summation order).

    Args:
        model: the model; it is not modified.
        to: ``"local"`` (``LocallyConnected*d`` with shared bias) or ``"dense"``
            (``Sequential(Flatten(), Dense, Unflatten(1, out_shape))``).
        input_shape: per-sample input shape, e.g. ``(3, 32, 32)``: fixes every layer's input size.
        max_bytes: memory limit for all dense matrices together (``to="dense"``), and for each local
            weight (``to="local"``) (default: ``$LAYERLAB_MAX_BYTES`` or 2 GiB).

    Raises:
        ArgumentError: ``to`` is not ``"local"``/``"dense"``; a lazy (unmaterialised) parameter; a
            transposed conv with ``to="local"``; a conv not called, or called at two input sizes; a
            leaf module with its own parameters that is neither torch.nn nor layerlab (it could hide
            a convolution that would silently stay).
        SizeLimitError: the dense matrices (together) or a local weight would exceed the memory limit
            (checked before allocating).

    Examples:
        >>> cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
        ...                           torch.nn.Linear(4 * 4 * 4, 10))
        >>> fcn = convert_model(cnn, to="dense", input_shape=(1, 6, 6))
        >>> fcn[0][1].weight.shape
        torch.Size([64, 36])
    """
    if to not in TARGETS:
        raise ArgumentError(f"convert_model: to must be 'local' or 'dense'. Received: to={to!r}")
    if not isinstance(model, nn.Module):
        raise ArgumentError(f"convert_model: expected a torch.nn.Module. Received: {type(model).__name__}")
    for name, param in model.named_parameters():
        if isinstance(param, nn.parameter.UninitializedParameter):
            raise ArgumentError(
                f"convert_model: parameter {name!r} is lazy (not materialised yet). Run one forward pass of "
                "the model on a real input first, so the converted model copies real weights"
            )
    converted = copy.deepcopy(model)
    try:
        shape = tuple(int(n) for n in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if not shape or any(n < 1 for n in shape):
        raise ShapeError(f"convert_model: input_shape must be a per-sample shape of positive sizes, e.g. "
                         f"(3, 32, 32). Received: input_shape={input_shape!r}")
    shapes = _record_shapes(converted, shape)
    if geometry_of(converted) is not None:  # the model is a single conv-like layer
        return _replacement(converted, "<model>", shapes, to, max_bytes) or converted
    targets = []  # (name, module) for every name a conv-like module is registered under
    for name, module in converted.named_modules(remove_duplicate=False):
        if geometry_of(module) is not None:
            targets.append((name, module))
        elif (id(module) in shapes and not _is_builtin(module)
              and any(True for _ in module.parameters(recurse=False))):
            raise ArgumentError(
                f"convert_model: {type(module).__name__} at {name!r} ({module!r}) has its own parameters and "
                "is not a torch.nn or layerlab layer, so it may compute a convolution that convert_model "
                "cannot see. Build it from torch.nn/layerlab layers, or convert its convolutions yourself"
            )
    if to == "dense":  # one check for all matrices together, before allocating any
        unique = {id(m): m for _, m in targets if len(set(shapes.get(id(m), ()))) == 1}
        total = sum(math.prod(estimate_entries(m, shapes[key][0])[1]) for key, m in unique.items())
        itemsize = next(converted.parameters()).dtype.itemsize if unique else 4
        check_size(f"convert_model(to='dense') on input {shape}", total, itemsize, max_bytes=max_bytes,
                   hint="Convert to 'local' instead (same sparsity, no zeros stored) or use a smaller input")
    replaced: dict[int, nn.Module | None] = {}
    for name, module in targets:
        if id(module) not in replaced:  # a module registered twice is converted once and stays shared
            replaced[id(module)] = _replacement(module, name, shapes, to, max_bytes)
        new = replaced[id(module)]
        if new is not None:
            parent_name, _, child = name.rpartition(".")
            converted.get_submodule(parent_name)._modules[child] = new
    return converted
