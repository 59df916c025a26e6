"""One converter per Keras 2 layer class: its config and weights → layerlab modules and their tensors.

Layout. A Keras tensor is tracked as :class:`Tensor`: its Keras per-sample shape and ``order``, the
Keras axis each stored torch dim holds. ``channels_last`` layers compute in torch's channels-first
order ``(r−1, 0, …, r−2)``; a converter asks for the order it needs (:meth:`Step.to_order`, which
adds a :class:`~layerlab.convert.keras.modules.Permute` only when the order changes), so a
channels_last stack is permuted once at its start and back only where Keras's own semantics read
the layout: ``Flatten``, ``Reshape``, ``Dense`` on a tensor of rank > 1, the model's output.

Weights (Keras → torch):

- ``Dense`` kernel ``(in, units)`` → ``weight = kernelᵀ``.
- ``ConvND`` kernel ``(*k, C_in/groups, F)`` → ``(F, C_in/groups, *k)``.
- ``LocallyConnectedND`` → layerlab's location-major ``(*out, 1, C_in, *k, F)``, from
  implementation 1 ``(positions, ∏k·C_in, F)`` (features ``(*k, C_in)`` for channels_last,
  ``(C_in, *k)`` for channels_first), 2 (a dense ``(*in_full, *out_full)`` kernel, read inside the
  windows only: Keras multiplies it by its mask) or 3 (the values of a sparse matrix, sorted by
  ``(output index, input index)`` in Keras's flat layouts).
- ``BatchNormalization`` gamma/beta (ones/zeros when ``scale``/``center`` is off), moving mean and
  variance; torch ``momentum = 1 − Keras momentum``.

Padding ('same'), Keras's rules:

- Conv and pooling (TensorFlow's 'SAME'): ``out = ceil(in/s)``, total ``max((out−1)·s + d·(k−1) + 1
  − in, 0)``, ``total // 2`` on the left, the odd extra on the right. Average pooling averages the
  input elements only (padding not counted). ``Conv1D`` 'causal': ``d·(k−1)`` on the left.
- LocallyConnected (``conv_utils.conv_connected_inputs``): ``out = ceil(in/s)``, output ``o`` reads
  inputs ``[o·s − k//2, o·s − k//2 + k)``: ``k//2`` on the LEFT, so an even kernel's extra
  row/column is on the left (Conv2D and torch put it on the right).
- LocallyConnected bias with channels_first: Keras stores ``(*out, F)`` and adds it reshaped (not
  transposed) to ``(F, *out)``; reproduced as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from layerlab import nn as lnn
from layerlab.arith.sizes import effective_kernel, output_size
from layerlab.convert.keras.files import KerasFile
from layerlab.convert.keras.modules import KerasReLU, Permute, Rescale
from layerlab.errors import DataError
from layerlab.limits import check_size

__all__ = ["CONVERTERS", "KerasLayer", "Step", "Tensor", "keras_order", "channels_first_order", "ACTIVATIONS"]


@dataclass(frozen=True)
class Tensor:
    """A Keras tensor during conversion: Keras per-sample ``shape``; stored dim ``i`` holds Keras axis ``order[i]``."""

    shape: tuple[int, ...]
    order: tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)

    def dim_of(self, axis: int) -> int:
        """The torch dim (batch = 0) that holds Keras per-sample ``axis``."""
        return 1 + self.order.index(axis)


def keras_order(rank: int) -> tuple[int, ...]:
    """Keras's own layout."""
    return tuple(range(rank))


def channels_first_order(rank: int) -> tuple[int, ...]:
    """A channels_last tensor stored channels first: the last Keras axis first."""
    return (rank - 1, *range(rank - 1))


@dataclass
class KerasLayer:
    """One layer of the Keras config: ``name``, ``class_name``, ``config`` and the file with its weights."""

    name: str
    class_name: str
    config: dict
    file: KerasFile

    @property
    def who(self) -> str:
        return f"{self.file.path}: layer {self.name!r} ({self.class_name})"

    def fail(self, message: str) -> DataError:
        return DataError(f"{self.who}: {message}")

    def get(self, key: str, default: Any = None) -> Any:
        value = self.config.get(key, default)
        return default if value is None else value

    def integer(self, key: str, default: int | None = None, minimum: int = 1) -> int:
        value = self.get(key, default)
        if isinstance(value, (list, tuple)) and len(value) == 1:
            value = value[0]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(f"{key} must be an int >= {minimum}, the config has {value!r}; the file is damaged")
        return value

    def integers(self, key: str, n: int, default: Any = None) -> tuple[int, ...]:
        value = self.get(key, default)
        values = [value] * n if isinstance(value, int) and not isinstance(value, bool) else value
        if (not isinstance(values, (list, tuple)) or len(values) != n
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)):
            raise self.fail(f"{key} must be {n} int(s) >= 1, the config has {value!r}; the file is damaged")
        return tuple(values)

    def choice(self, key: str, allowed: tuple, default: Any = None) -> Any:
        value = self.get(key, default)
        if isinstance(value, str):
            value = value.lower()
        if value not in allowed:
            raise self.fail(f"{key}={value!r} is not supported; layerlab converts {key} in {list(allowed)}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{key} must be true or false, the config has {value!r}; the file is damaged")
        return value

    def number(self, key: str, default: float | None) -> float | None:
        value = self.get(key, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise self.fail(f"{key} must be a number, the config has {value!r}; the file is damaged")
        return None if value is None else float(value)


class Step:
    """The modules one Keras layer becomes, built on the meta device with the state to load into them."""

    def __init__(self, layer: KerasLayer, x: Tensor) -> None:
        self.layer, self.x = layer, x
        self.parts: list[tuple[nn.Module, dict[str, torch.Tensor]]] = []

    def add(self, module: nn.Module, state: dict[str, np.ndarray | torch.Tensor] | None = None) -> None:
        tensors = {k: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
                   for k, v in (state or {}).items()}
        self.parts.append((module, tensors))

    def to_order(self, order: tuple[int, ...]) -> Tensor:
        """Permute the stored tensor so that its dims hold the Keras axes ``order``; the new tensor."""
        if order != self.x.order:
            self.add(Permute(tuple(self.x.dim_of(axis) for axis in order)))
            self.x = Tensor(self.x.shape, order)
        return self.x

    def pad(self, pads: list[tuple[int, int]], value: float = 0.0) -> tuple[int, ...]:
        """The module's symmetric padding for ``(left, right)`` per spatial dim; uneven padding is added
        here as a pad module (``value`` fills it) and the module then gets 0."""
        if all(left == right for left, right in pads):
            return tuple(left for left, _ in pads)
        n = len(pads)
        flat = tuple(p for pair in reversed(pads) for p in pair)  # torch's order: last dim first
        self.add(getattr(nn, f"ZeroPad{n}d")(flat) if value == 0 else getattr(nn, f"ConstantPad{n}d")(flat, value))
        return (0,) * n

    def activation(self, spec: Any, out: Tensor) -> None:
        """Append the module of a Keras activation (``'relu'``, ``'softmax'``...) applied to ``out``."""
        name = spec.get("config", spec.get("class_name")) if isinstance(spec, dict) else spec
        name = name.lower() if isinstance(name, str) else name
        if name in (None, "linear"):
            return
        if name == "softmax":
            self.add(lnn.Softmax(dim=out.dim_of(out.rank - 1)))
            return
        if name not in ACTIVATIONS:
            raise self.layer.fail(f"activation {name!r} is not supported; layerlab converts "
                                  f"{', '.join(['linear', 'softmax', *ACTIVATIONS])}")
        self.add(ACTIVATIONS[name]())


# Keras activation name -> module (softmax and linear are handled by Step.activation); Keras and torch
# agree on the constants (ELU alpha 1, SELU's two constants, exact GELU)
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lnn.ReLU, "sigmoid": lnn.Sigmoid, "tanh": lnn.Tanh, "elu": lnn.ELU, "selu": nn.SELU,
    "softplus": nn.Softplus, "softsign": nn.Softsign, "swish": lnn.SiLU, "silu": lnn.SiLU, "gelu": lnn.GELU,
    "relu6": nn.ReLU6,
}


def _data_format(layer: KerasLayer) -> bool:
    """True for channels_last (Keras's default)."""
    return layer.choice("data_format", ("channels_last", "channels_first"), "channels_last") == "channels_last"


def _feature_map(layer: KerasLayer, step: Step, n: int) -> tuple[bool, int, tuple[int, ...]]:
    """Put an ``n``-d feature map channels first; ``(channels_last, C, spatial size)``."""
    last = _data_format(layer)
    x = step.x
    if x.rank != n + 1:
        raise layer.fail(f"expects a {n + 1}-d per-sample input (batch excluded), gets shape {x.shape}")
    step.to_order(channels_first_order(n + 1) if last else keras_order(n + 1))
    return last, (x.shape[-1] if last else x.shape[0]), (x.shape[:-1] if last else x.shape[1:])


def _map_tensor(last: bool, channels: int, spatial: tuple[int, ...], order: tuple[int, ...]) -> Tensor:
    return Tensor((*spatial, channels) if last else (channels, *spatial), order)


def tf_same_pads(in_size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding ``(left, right)``: output ``ceil(in/s)``, the odd extra on the right."""
    out = -(-in_size // s)
    total = max((out - 1) * s + effective_kernel(k, d) - in_size, 0)
    return total // 2, total - total // 2


def local_same_pads(in_size: int, k: int, s: int) -> tuple[int, int]:
    """Keras LocallyConnected 'same' padding ``(left, right)``: ``k//2`` on the left, output ``ceil(in/s)``."""
    out = -(-in_size // s)
    return k // 2, max(0, (out - 1) * s + k - k // 2 - in_size)


def _inside_counts(out_size, s, pads, k, spatial) -> list[np.ndarray]:
    """Per dim, how many of the ``k`` taps of each output's window ``[o·s − left, o·s − left + k)`` fall
    inside the input ``[0, size)``."""
    check_size("the windows of a layer", sum(out_size), 8, hint="Convert a model with smaller inputs")
    counts = []
    for m, ss, (left, _), kk, size in zip(out_size, s, pads, k, spatial):
        start = np.arange(m, dtype=np.int64) * ss - left
        counts.append(np.minimum(start + kk, size) - np.maximum(start, 0))
    return counts


def _out_sizes(layer: KerasLayer, spatial, k, s, pads, d=None) -> tuple[int, ...]:
    d = d or (1,) * len(k)
    out = tuple(output_size(i, kk, ss, p, dd) for i, kk, ss, p, dd in zip(spatial, k, s, pads, d))
    if min(out) < 1:
        raise layer.fail(f"its window (kernel {k}, dilation {d}) does not fit the input of size {spatial}: "
                         "the file's config is inconsistent")
    return out


def _padding_pairs(layer, mode: str, spatial, k, s, d) -> list[tuple[int, int]]:
    if mode == "valid":
        return [(0, 0)] * len(k)
    if mode == "causal":
        return [(effective_kernel(kk, dd) - 1, 0) for kk, dd in zip(k, d)]
    return [tf_same_pads(i, kk, ss, dd) for i, kk, ss, dd in zip(spatial, k, s, d)]


def dense(layer: KerasLayer, step: Step) -> Tensor:
    x = step.to_order(keras_order(step.x.rank))
    units, use_bias = layer.integer("units"), layer.flag("use_bias", True)
    weights = layer.file.weights(layer.name, ["kernel", "bias"] if use_bias else ["kernel"])
    state = {"weight": weights.read("kernel", (x.shape[-1], units)).T}
    if use_bias:
        state["bias"] = weights.read("bias", (units,))
    step.add(lnn.Dense(units, in_features=x.shape[-1], bias=use_bias, device="meta"), state)
    out = Tensor((*x.shape[:-1], units), x.order)
    step.activation(layer.get("activation"), out)
    return out


def conv(layer: KerasLayer, step: Step, n: int) -> Tensor:
    last, channels, spatial = _feature_map(layer, step, n)
    filters, groups = layer.integer("filters"), layer.integer("groups", 1)
    k, s, d = layer.integers("kernel_size", n), layer.integers("strides", n, 1), layer.integers("dilation_rate", n, 1)
    mode = layer.choice("padding", ("valid", "same", "causal") if n == 1 else ("valid", "same"), "valid")
    if channels % groups or filters % groups:
        raise layer.fail(f"groups={groups} must divide the {channels} input channels and the {filters} filters")
    pads = _padding_pairs(layer, mode, spatial, k, s, d)
    out_size = _out_sizes(layer, spatial, k, s, pads, d)
    use_bias = layer.flag("use_bias", True)
    weights = layer.file.weights(layer.name, ["kernel", "bias"] if use_bias else ["kernel"])
    kernel = weights.read("kernel", (*k, channels // groups, filters))
    state = {"weight": kernel.transpose(n + 1, n, *range(n))}
    if use_bias:
        state["bias"] = weights.read("bias", (filters,))
    padding = step.pad(pads)
    module = getattr(lnn, f"Conv{n}d")(channels, filters, k, stride=s, padding=padding, dilation=d, groups=groups,
                                       bias=use_bias, device="meta")
    step.add(module, state)
    out = _map_tensor(last, filters, out_size, step.x.order)
    step.activation(layer.get("activation"), out)
    return out


def _ravel(indices: list[np.ndarray], dims: tuple[int, ...]) -> np.ndarray:
    """Row-major flat index of broadcastable index arrays (``np.ravel_multi_index`` without its checks)."""
    flat = np.zeros((), dtype=np.int64)
    for index, size in zip(indices, dims):
        flat = flat * size + index
    return flat


def _local_kernel(layer, weights, impl, last, channels, spatial, filters, k, s, pads, out_size) -> np.ndarray:
    """The local weight ``(*out, C_in, *k, F)`` (group axis not yet added) from Keras's kernel."""
    n = len(k)
    if impl == 1:
        features = math.prod(k) * channels
        kernel = weights.read("kernel", (math.prod(out_size), features, filters))
        if last:  # features in (*k, C) order
            return kernel.reshape(*out_size, *k, channels, filters).transpose(
                *range(n), 2 * n, *range(n, 2 * n), 2 * n + 1)
        return kernel.reshape(*out_size, channels, *k, filters)
    in_dims, out_dims = ((*spatial, channels), (*out_size, filters)) if last else ((channels, *spatial), (filters, *out_size))
    # read first: the declared kernel is checked against the file before anything its size is allocated
    if impl == 2:
        kernel = weights.read("kernel", (*in_dims, *out_dims)).reshape(math.prod(in_dims), math.prod(out_dims))
    else:  # implementation 3: one value per input element inside a window, for every channel pair
        inside_taps = math.prod(int(c.sum()) for c in _inside_counts(out_size, s, pads, k, spatial))
        values = weights.read("kernel", (inside_taps * channels * filters,))
    full = (*out_size, channels, *k, filters)
    check_size(f"{layer.who}: the local weight and its indices", math.prod(full), 4 + 3 * 8,
               hint="Convert a model with smaller LocallyConnected layers")
    # positions p, channel c, taps t, filter o over the weight's shape; input position p·s − left + t
    grid = np.ogrid[tuple(slice(0, m) for m in full)]
    p, c, t, o = grid[:n], grid[n], grid[n + 1 : 2 * n + 1], grid[2 * n + 1]
    q = [p[i] * s[i] - pads[i][0] + t[i] for i in range(n)]
    inside = np.ones((), dtype=bool)
    for i in range(n):
        inside = inside & (q[i] >= 0) & (q[i] < spatial[i])
    q = [np.clip(q[i], 0, spatial[i] - 1) for i in range(n)]
    in_index = _ravel([*q, c] if last else [c, *q], in_dims)
    out_index = _ravel([*p, o] if last else [o, *p], out_dims)
    inside, in_index, out_index = np.broadcast_arrays(inside, in_index, out_index)
    weight = np.zeros(full, dtype=np.float32)
    if impl == 2:  # Keras multiplies its dense kernel by the windows' mask: read inside the windows only
        weight[inside] = kernel[in_index[inside], out_index[inside]]
        return weight
    # implementation 3: the values of the sparse (output, input) matrix, its indices sorted
    keys = out_index[inside] * math.prod(in_dims) + in_index[inside]
    rank = np.empty(keys.size, dtype=np.int64)
    rank[np.argsort(keys, kind="stable")] = np.arange(keys.size)
    weight[inside] = values[rank]
    return weight


def local(layer: KerasLayer, step: Step, n: int) -> Tensor:
    last, channels, spatial = _feature_map(layer, step, n)
    filters, impl = layer.integer("filters"), layer.choice("implementation", (1, 2, 3), 1)
    k, s = layer.integers("kernel_size", n), layer.integers("strides", n, 1)
    mode = layer.choice("padding", ("valid", "same"), "valid")
    if mode == "same" and impl == 1:
        raise layer.fail("padding='same' with implementation=1, which Keras itself refuses; the file is damaged")
    pads = [(0, 0)] * n if mode == "valid" else [local_same_pads(i, kk, ss) for i, kk, ss in zip(spatial, k, s)]
    out_size = _out_sizes(layer, spatial, k, s, pads)
    use_bias = layer.flag("use_bias", True)
    weights = layer.file.weights(layer.name, ["kernel", "bias"] if use_bias else ["kernel"])
    kernel = _local_kernel(layer, weights, impl, last, channels, spatial, filters, k, s, pads, out_size)
    state = {"weight": np.expand_dims(kernel, n)}
    if use_bias:
        bias = weights.read("bias", (*out_size, filters))
        # channels_first: Keras adds reshape(bias, (F, *out)), not a transpose (its backend.bias_add)
        state["bias"] = np.moveaxis(bias, -1, 0) if last else bias.reshape(filters, *out_size)
    padding = step.pad(pads)
    even = all(left == right for left, right in pads)  # else step.pad added a pad module
    in_size = spatial if even else tuple(i + left + right for i, (left, right) in zip(spatial, pads))
    module = getattr(lnn, f"LocallyConnected{n}d")(channels, filters, k, stride=s, padding=padding, bias=use_bias,
                                                   input_size=in_size, device="meta")
    step.add(module, state)
    out = _map_tensor(last, filters, out_size, step.x.order)
    step.activation(layer.get("activation"), out)
    return out


def pool(layer: KerasLayer, step: Step, n: int, op: str) -> Tensor:
    last, channels, spatial = _feature_map(layer, step, n)
    k = layer.integers("pool_size", n, 2)
    s = layer.integers("strides", n, list(k))
    mode = layer.choice("padding", ("valid", "same"), "valid")
    pads = _padding_pairs(layer, mode, spatial, k, s, (1,) * n)
    out_size = _out_sizes(layer, spatial, k, s, pads)
    even = all(left == right for left, right in pads)
    padding = step.pad(pads, value=-math.inf if op == "max" else 0.0)
    if op == "max":
        step.add(getattr(lnn, f"MaxPool{n}d")(k, s, padding))
    else:
        step.add(getattr(lnn, f"AvgPool{n}d")(k, s, padding, count_include_pad=False))
        if not even:  # the zero padding was counted: scale each mean to the input elements of its window
            counts = _inside_counts(out_size, s, pads, k, spatial)
            step.add(Rescale([torch.from_numpy((kk / c).astype(np.float32)) for kk, c in zip(k, counts)]))
    return _map_tensor(last, channels, out_size, step.x.order)


def global_pool(layer: KerasLayer, step: Step, n: int, op: str) -> Tensor:
    last, channels, _ = _feature_map(layer, step, n)
    step.add(lnn.GlobalAvgPool() if op == "avg" else lnn.GlobalMaxPool())
    if not layer.flag("keepdims", False):
        return Tensor((channels,), (0,))
    step.add(nn.Unflatten(1, (channels, *(1,) * n)))
    return _map_tensor(last, channels, (1,) * n, step.x.order)


def batch_norm(layer: KerasLayer, step: Step) -> Tensor:
    x = step.x
    axis = layer.get("axis", -1)
    if isinstance(axis, (list, tuple)) and len(axis) == 1:
        axis = axis[0]
    if isinstance(axis, bool) or not isinstance(axis, int) or not -x.rank - 1 <= axis <= x.rank or axis % (x.rank + 1) == 0:
        raise layer.fail(f"axis={layer.get('axis')!r} is not supported on a per-sample input of shape {x.shape}; "
                         "layerlab converts one axis other than the batch")
    if x.rank > 4:
        raise layer.fail(f"its input of shape {x.shape} has more than 3 spatial dims; layerlab converts up to BatchNorm3d")
    channel = axis % (x.rank + 1) - 1
    if x.order[0] != channel:
        x = step.to_order((channel, *(a for a in range(x.rank) if a != channel)))
    c = x.shape[channel]
    scale, center = layer.flag("scale", True), layer.flag("center", True)
    names = ["gamma"] * scale + ["beta"] * center + ["moving_mean", "moving_variance"]
    weights = layer.file.weights(layer.name, names)
    state = {
        "weight": weights.read("gamma", (c,)) if scale else np.ones(c, np.float32),
        "bias": weights.read("beta", (c,)) if center else np.zeros(c, np.float32),
        "running_mean": weights.read("moving_mean", (c,)),
        "running_var": weights.read("moving_variance", (c,)),
        "num_batches_tracked": torch.tensor(0),
    }
    momentum = layer.number("momentum", 0.99)
    module = getattr(lnn, f"BatchNorm{max(x.rank - 1, 1)}d")(
        c, eps=layer.number("epsilon", 1e-3), momentum=min(max(1 - momentum, 0.0), 1.0), device="meta")
    step.add(module, state)
    return x


def flatten(layer: KerasLayer, step: Step) -> Tensor:
    rank = step.x.rank
    # Keras's Flatten(data_format='channels_first') moves axis 1 last before flattening
    first = not _data_format(layer) and rank > 1
    x = step.to_order((*range(1, rank), 0) if first else keras_order(rank))
    step.add(lnn.Flatten())
    return Tensor((math.prod(x.shape),), (0,))


def reshape(layer: KerasLayer, step: Step) -> Tensor:
    x = step.to_order(keras_order(step.x.rank))
    target = layer.get("target_shape")
    total = math.prod(x.shape)
    if not isinstance(target, (list, tuple)) or not target or not all(
            isinstance(v, int) and not isinstance(v, bool) and (v >= 1 or v == -1) for v in target) \
            or list(target).count(-1) > 1:
        raise layer.fail(f"target_shape must be positive ints (at most one -1), the config has {target!r}")
    known = math.prod(v for v in target if v != -1)
    shape = tuple(total // known if v == -1 else v for v in target)
    if math.prod(shape) != total:
        raise layer.fail(f"target_shape {tuple(target)} does not hold the {total} elements of its input {x.shape}")
    step.add(lnn.Flatten())
    if len(shape) > 1:
        step.add(nn.Unflatten(1, shape))
    return Tensor(shape, keras_order(len(shape)))


def dropout(layer: KerasLayer, step: Step) -> Tensor:
    rate = layer.number("rate", 0.0)
    if not 0 <= rate <= 1:
        raise layer.fail(f"rate must be in [0, 1], the config has {rate}")
    step.add(lnn.Dropout(p=rate))
    return step.x


def activation(layer: KerasLayer, step: Step) -> Tensor:
    step.activation(layer.get("activation", "linear"), step.x)
    return step.x


def relu(layer: KerasLayer, step: Step) -> Tensor:
    max_value = layer.number("max_value", None)
    slope, threshold = layer.number("negative_slope", 0.0), layer.number("threshold", 0.0)
    step.add(lnn.ReLU() if (max_value, slope, threshold) == (None, 0.0, 0.0) else KerasReLU(max_value, slope, threshold))
    return step.x


def softmax(layer: KerasLayer, step: Step) -> Tensor:
    x = step.x
    axis = layer.get("axis", -1)
    if isinstance(axis, (list, tuple)) and len(axis) == 1:
        axis = axis[0]
    if isinstance(axis, bool) or not isinstance(axis, int) or not -x.rank <= axis <= x.rank or axis == 0:
        raise layer.fail(f"axis={layer.get('axis')!r} is not supported on a per-sample input of shape {x.shape}; "
                         "layerlab converts one axis other than the batch")
    step.add(lnn.Softmax(dim=x.dim_of(axis % (x.rank + 1) - 1)))
    return x


# Keras class name -> converter(layer, step) -> output Tensor
CONVERTERS: dict[str, Callable[[KerasLayer, Step], Tensor]] = {
    "Dense": dense,
    **{f"Conv{n}D": (lambda layer, step, n=n: conv(layer, step, n)) for n in (1, 2, 3)},
    **{f"LocallyConnected{n}D": (lambda layer, step, n=n: local(layer, step, n)) for n in (1, 2)},
    **{f"MaxPooling{n}D": (lambda layer, step, n=n: pool(layer, step, n, "max")) for n in (1, 2, 3)},
    **{f"AveragePooling{n}D": (lambda layer, step, n=n: pool(layer, step, n, "avg")) for n in (1, 2, 3)},
    **{f"GlobalMaxPooling{n}D": (lambda layer, step, n=n: global_pool(layer, step, n, "max")) for n in (1, 2, 3)},
    **{f"GlobalAveragePooling{n}D": (lambda layer, step, n=n: global_pool(layer, step, n, "avg")) for n in (1, 2, 3)},
    "Flatten": flatten,
    "Reshape": reshape,
    "Dropout": dropout,
    "BatchNormalization": batch_norm,
    "Activation": activation,
    "ReLU": relu,
    "Softmax": softmax,
}
