"""``spec_of(module)``: the :mod:`layerlab.arith` spec of a module (Contract 2).

A layerlab module describes itself (``module.layer_spec()``); plain ``torch.nn`` modules are mapped
here: Linear, Conv*, ConvTranspose*, Max/AvgPool*, AdaptiveMax/AvgPool*, BatchNorm*, InstanceNorm*,
LayerNorm, GroupNorm, Flatten, activations, Dropout*, Identity, Upsample, the shape-only layers of
:mod:`layerlab.arith.reshape` (Unflatten, ZeroPad*/ConstantPad*/ReflectionPad*/ReplicationPad*/
CircularPad*, PixelShuffle, PixelUnshuffle, ChannelShuffle, Unfold, Fold), and their lazy versions
(``LazyLinear``, ``LazyConv2d``, ...: ``in_features`` / ``in_channels`` stay ``None`` until the
first forward, and ``analyse`` infers them from the input). Anything else returns ``None``: the
summary counts it from the aten ops its ``forward`` runs (:mod:`layerlab.analysis.ops`).
"""

from __future__ import annotations

from torch import nn

from layerlab.arith import reshape, specs
from layerlab.arith.elementwise import OPS_PER_ELEMENT, ops_per_element

__all__ = ["spec_of"]

# the torch classes of arith's element-wise table; PReLU (it has parameters) is mapped on its own
_ELEMENTWISE = tuple(getattr(nn, name) for name in OPS_PER_ELEMENT if name != "PReLU")
_CONV = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_CONV_T = {nn.ConvTranspose1d: 1, nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3}
_MAX_POOL = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}
_AVG_POOL = {nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3}
_ADAPTIVE = {
    nn.AdaptiveAvgPool1d: (1, "avg"), nn.AdaptiveAvgPool2d: (2, "avg"), nn.AdaptiveAvgPool3d: (3, "avg"),
    nn.AdaptiveMaxPool1d: (1, "max"), nn.AdaptiveMaxPool2d: (2, "max"), nn.AdaptiveMaxPool3d: (3, "max"),
}
# torch's LazyBatchNorm*/LazyInstanceNorm* do not subclass BatchNorm*/InstanceNorm*
_BATCH_NORM = {
    nn.BatchNorm1d: 1, nn.BatchNorm2d: 2, nn.BatchNorm3d: 3,
    nn.LazyBatchNorm1d: 1, nn.LazyBatchNorm2d: 2, nn.LazyBatchNorm3d: 3,
}
# ZeroPad2d -> ("Zero", 2), ...: torch's padding classes, read by name (CircularPad* is torch >= 2.1)
_PAD = {
    getattr(nn, f"{kind}Pad{n}d"): (kind, n)
    for kind in reshape.PAD_MODES for n in (1, 2, 3) if hasattr(nn, f"{kind}Pad{n}d")
}
_INSTANCE_NORM = {
    nn.InstanceNorm1d: 1, nn.InstanceNorm2d: 2, nn.InstanceNorm3d: 3,
    nn.LazyInstanceNorm1d: 1, nn.LazyInstanceNorm2d: 2, nn.LazyInstanceNorm3d: 3,
}


def _base(module: nn.Module, table: dict) -> type | None:
    """The first class of ``table`` in the module's MRO (``LazyConv2d`` -> ``Conv2d``)."""
    for cls in type(module).__mro__:
        if cls in table:
            return cls
    return None


def _inferred(value: int) -> int | None:
    """Lazy modules store 0 for a size they have not inferred yet."""
    return value or None


def spec_of(module: nn.Module):
    """The :mod:`layerlab.arith.specs` spec of ``module``, or ``None`` if arith has no layer for it.

    Args:
        module (nn.Module): a layerlab module (has ``layer_spec()``) or a plain ``torch.nn`` layer.

    Returns:
        A spec (``DenseSpec``, ``ConvSpec``, ...) or ``None`` for modules without one (custom
        layers, containers, attention, recurrent layers, ...).

    Examples:
        >>> spec_of(nn.Conv2d(3, 8, 3, padding=1)).analyse((3, 32, 32)).params
        224
        >>> spec_of(nn.LazyLinear(10)).in_features is None
        True
        >>> spec_of(nn.Sequential()) is None
        True
    """
    layer_spec = getattr(module, "layer_spec", None)
    if callable(layer_spec):
        return layer_spec()
    if isinstance(module, nn.Linear):
        return specs.DenseSpec(module.out_features, _inferred(module.in_features), bias=module.bias is not None)
    if (cls := _base(module, _CONV)) is not None:
        return specs.ConvSpec(
            _CONV[cls], module.out_channels, module.kernel_size, _inferred(module.in_channels), module.stride,
            module.padding, module.dilation, module.groups, module.bias is not None, module.padding_mode,
        )
    if (cls := _base(module, _CONV_T)) is not None:
        return specs.ConvTransposeSpec(
            _CONV_T[cls], module.out_channels, module.kernel_size, _inferred(module.in_channels), module.stride,
            module.padding, module.output_padding, module.dilation, module.groups, module.bias is not None,
        )
    if (cls := _base(module, _MAX_POOL)) is not None:
        return specs.PoolSpec(
            _MAX_POOL[cls], "max", module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode
        )
    if (cls := _base(module, _AVG_POOL)) is not None:
        return specs.PoolSpec(
            _AVG_POOL[cls], "avg", module.kernel_size, module.stride, module.padding,
            ceil_mode=module.ceil_mode, count_include_pad=module.count_include_pad,
        )
    if (cls := _base(module, _ADAPTIVE)) is not None:
        ndim, op = _ADAPTIVE[cls]
        output_size = tuple(module.output_size) if isinstance(module.output_size, list) else module.output_size
        return specs.AdaptivePoolSpec(ndim, op, output_size)
    if (cls := _base(module, _BATCH_NORM)) is not None:
        return specs.NormSpec(
            "batch", _inferred(module.num_features), affine=module.affine,
            track_running_stats=module.track_running_stats, ndim=_BATCH_NORM[cls],
        )
    if (cls := _base(module, _INSTANCE_NORM)) is not None:
        return specs.NormSpec(
            "instance", _inferred(module.num_features), affine=module.affine,
            track_running_stats=module.track_running_stats, ndim=_INSTANCE_NORM[cls],
        )
    if isinstance(module, nn.LayerNorm):
        return specs.NormSpec("layer", normalized_shape=tuple(module.normalized_shape), affine=module.elementwise_affine)
    if isinstance(module, nn.GroupNorm):
        return specs.NormSpec("group", module.num_channels, num_groups=module.num_groups, affine=module.affine)
    if isinstance(module, nn.Flatten):
        return specs.FlattenSpec(module.start_dim, module.end_dim)
    if isinstance(module, nn.Unflatten) and isinstance(module.dim, int):  # a named dim (str) is not tracked
        return reshape.UnflattenSpec(module.dim, tuple(module.unflattened_size))
    if (cls := _base(module, _PAD)) is not None:
        kind, ndim = _PAD[cls]
        return reshape.PadSpec(ndim, tuple(module.padding), kind)
    if isinstance(module, nn.PixelShuffle):
        return reshape.PixelShuffleSpec(module.upscale_factor)
    if isinstance(module, nn.PixelUnshuffle):
        return reshape.PixelShuffleSpec(module.downscale_factor, inverse=True)
    if isinstance(module, (nn.Unfold, nn.Fold)):
        output_size = module.output_size if isinstance(module, nn.Fold) else None
        return reshape.UnfoldSpec(module.kernel_size, module.dilation, module.padding, module.stride, output_size)
    if isinstance(module, nn.ChannelShuffle):
        return reshape.ChannelShuffleSpec(module.groups)
    if isinstance(module, nn.Upsample):
        return specs.upsample(module.size, module.scale_factor, module.mode)  # rank from the input
    if isinstance(module, nn.LocalResponseNorm):
        # shape kept, no parameters; its work (``size`` squares per element) is counted as "activation"
        return specs.ElementwiseSpec("LocalResponseNorm", ops_per_element=module.size)
    if isinstance(module, nn.PReLU):
        return specs.ElementwiseSpec("PReLU", params=module.num_parameters, ops_per_element=ops_per_element("PReLU"))
    if (cls := _base(module, _ELEMENTWISE)) is not None:
        return specs.elementwise(cls.__name__)
    return None
