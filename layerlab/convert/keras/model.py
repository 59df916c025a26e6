"""A Keras 2 model file → a ``torch.nn.Sequential`` of layerlab modules, one child per Keras layer.

The Keras config is read as a chain from the input to the output: a ``Sequential`` model, or a
functional model whose layers each take one tensor from the one before (one input, one output, no
branches, no shared layers). Every layer class is checked first, so that all unsupported layers are
named in one error. Modules are built on the ``meta`` device and receive the file's arrays as their
parameters (``load_state_dict(assign=True)``): nothing is allocated beyond the converted weights.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

from torch import nn

from layerlab.convert.keras.files import open_keras_file
from layerlab.convert.keras.layers import CONVERTERS, KerasLayer, Step, Tensor, channels_first_order, keras_order
from layerlab.convert.keras.modules import Permute
from layerlab.errors import ArgumentError, DataError

__all__ = ["from_keras", "load_keras", "SUPPORTED", "INPUT_LAYOUTS"]

SUPPORTED = ("InputLayer", *CONVERTERS)
INPUT_LAYOUTS = ("keras", "channels_first")
_MODELS = ("Sequential", "Functional", "Model")


def from_keras(path: str | os.PathLike, *, input_layout: str = "keras") -> nn.Module:
    """Build the layerlab model of a Keras 2 (tf-keras) ``.h5`` or ``.keras`` file, without TensorFlow.

    The result computes the Keras model's outputs (float32, in eval mode: BatchNormalization uses
    its moving statistics, Dropout does nothing), in Keras's layout: ``model(x)`` equals Keras's
    ``model.predict(x)`` for ``x`` of shape ``(B, *input_shape)`` as Keras takes it, e.g.
    ``(B, 28, 28, 1)`` for a channels_last image model. Children are named after the Keras layers.

    Args:
        path: the file written by ``model.save("model.h5")`` or ``model.save("model.keras")``.
        input_layout: ``"keras"`` (the input as Keras takes it) or ``"channels_first"`` (a
            channels_last model takes ``(B, C, *spatial)`` instead of ``(B, *spatial, C)``, as
            torch layers do; the outputs stay in Keras's layout). Default: ``"keras"``.

    Returns:
        ``torch.nn.Sequential`` in eval mode.

    Raises:
        DataError: a missing, truncated or non-Keras file, a weights-only file, weights that do not
            match the config, layers or options layerlab does not convert (all unsupported layers are
            named in one message), a model that is not one chain from one input to one output.
        ArgumentError: an unknown ``input_layout``.
    """
    return load_keras(path, input_layout=input_layout)[0]


def load_keras(path: str | os.PathLike, *, input_layout: str = "keras") -> tuple[nn.Module, tuple[int, ...]]:
    """:func:`from_keras`, and the per-sample input shape the model takes (in ``input_layout``)."""
    if input_layout not in INPUT_LAYOUTS:
        raise ArgumentError(f"from_keras: input_layout must be one of {INPUT_LAYOUTS}. Received: "
                            f"input_layout={input_layout!r}")
    with open_keras_file(path) as file:
        layers, input_shape = _chain(file)
        first = next((layer for layer in layers if "data_format" in layer.config), None)
        channels_last = first is not None and first.config.get("data_format") != "channels_first"
        moved = input_layout == "channels_first" and channels_last and len(input_shape) > 1
        x = Tensor(input_shape, channels_first_order(len(input_shape)) if moved else keras_order(len(input_shape)))
        stored_input = tuple(input_shape[a] for a in x.order)
        children: OrderedDict[str, nn.Module] = OrderedDict()
        for layer in layers:
            step = Step(layer, x)
            x = CONVERTERS[layer.class_name](layer, step)
            children[_module_name(layer.name, children)] = _assemble(step.parts)
        if x.order != keras_order(x.rank):
            children["to_keras_layout"] = Permute(tuple(x.dim_of(a) for a in keras_order(x.rank)))
    return nn.Sequential(children).eval(), stored_input


def _assemble(parts: list) -> nn.Module:
    """Load each part's state into its meta-device module; one module, or a Sequential of them."""
    modules = []
    for module, state in parts:
        if state:
            module.load_state_dict(state, strict=True, assign=True)
        modules.append(module)
    return modules[0] if len(modules) == 1 else nn.Sequential(*modules)


def _module_name(name: str, taken: dict) -> str:
    """A torch child name for a Keras layer name (no dots, no clash with Sequential's attributes)."""
    safe = name.replace(".", "_") or "layer"
    while safe in taken or hasattr(nn.Sequential, safe):
        safe += "_"
    return safe


def _entries(file) -> tuple[str, list[dict], dict]:
    """The model's class name, its layer entries and its config body."""
    config = file.config
    kind, body = config.get("class_name"), config.get("config")
    if kind not in _MODELS:
        raise DataError(f"{file.path}: the model is a {kind!r}, layerlab converts {', '.join(_MODELS)} models (a "
                        "subclassed model has no layer config; rebuild it as a Sequential or functional model)")
    entries = body if isinstance(body, list) else body.get("layers") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("config"), dict) and isinstance(e.get("class_name"), str)
            for e in entries):
        raise DataError(f"{file.path}: the model config has no list of layers with class_name and config; the file "
                        "is damaged; save the model again")
    return kind, entries, body if isinstance(body, dict) else {}


def _layer(file, entry: dict) -> KerasLayer:
    name = entry.get("name", entry["config"].get("name"))
    if not isinstance(name, str):
        raise DataError(f"{file.path}: a {entry['class_name']} layer has no name in the config; the file is damaged")
    return KerasLayer(name, entry["class_name"], entry["config"], file)


def _check_supported(file, layers: list[KerasLayer]) -> None:
    unsupported = [layer for layer in layers if layer.class_name not in SUPPORTED]
    if unsupported:
        names = ", ".join(f"{layer.name!r} ({layer.class_name})" for layer in unsupported)
        raise DataError(
            f"{file.path}: layerlab cannot convert {len(unsupported)} layer(s): {names}. from_keras converts the "
            f"Keras layers {', '.join(SUPPORTED)}; rebuild the model without the others, or convert its supported "
            "part and write the rest in PyTorch"
        )


def _shape(file, value: Any, who: str) -> tuple[int, ...]:
    """The per-sample shape of a Keras ``[None, *shape]`` batch shape."""
    if (not isinstance(value, (list, tuple)) or len(value) < 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value[1:])):
        raise DataError(f"{file.path}: the input shape of {who} is {value!r}; layerlab needs a fixed size for every "
                        "dim but the batch: build the Keras model with a fixed input shape, e.g. "
                        "keras.Input((28, 28, 1)), and save it again")
    return tuple(value[1:])


def _input_shape(file, entry: dict, fallback: Any) -> tuple[int, ...]:
    config = entry["config"]
    shape = config.get("batch_input_shape", config.get("batch_shape", fallback))
    return _shape(file, shape, f"layer {config.get('name')!r}")


def _chain(file) -> tuple[list[KerasLayer], tuple[int, ...]]:
    """The layers from the input to the output (InputLayer left out) and the per-sample input shape."""
    kind, entries, body = _entries(file)
    layers = [_layer(file, e) for e in entries]
    _check_supported(file, layers)
    if not layers:
        raise DataError(f"{file.path}: the model has no layers")
    if kind == "Sequential":
        built = (file.config.get("build_config") or {}).get("input_shape")
        shape = _input_shape(file, entries[0], built)
        return [layer for layer in layers if layer.class_name != "InputLayer"], shape
    return _functional_chain(file, entries, body, layers)


def _history(node: Any) -> list[str]:
    """Names of the layers whose outputs feed one inbound node (legacy lists or Keras-3-style dicts)."""
    if isinstance(node, dict):
        history = node.get("keras_history") if isinstance(node.get("keras_history"), list) else None
        if history:
            return [history[0]]
        return [name for value in node.values() for name in _history(value)]
    if isinstance(node, list):
        if node and isinstance(node[0], str):  # [layer_name, node_index, tensor_index, kwargs]
            return [node[0]]
        return [name for item in node for name in _history(item)]
    return []


def _functional_chain(file, entries, body, layers) -> tuple[list[KerasLayer], tuple[int, ...]]:
    inputs, outputs = body.get("input_layers"), body.get("output_layers")
    inputs = inputs if isinstance(inputs, list) and inputs and isinstance(inputs[0], list) else [inputs]
    outputs = outputs if isinstance(outputs, list) and outputs and isinstance(outputs[0], list) else [outputs]
    if len(inputs) != 1 or len(outputs) != 1:
        raise DataError(f"{file.path}: the model has {len(inputs)} input(s) and {len(outputs)} output(s); layerlab "
                        "converts models with one input and one output")
    by_name = {layer.name: (layer, entry) for layer, entry in zip(layers, entries)}
    name, chain = _history(outputs[0])[:1], []
    while name and by_name.get(name[0]) and by_name[name[0]][0].class_name != "InputLayer":
        layer, entry = by_name[name[0]]
        nodes = entry.get("inbound_nodes") or []
        parents = _history(nodes)
        if len(nodes) != 1 or len(parents) != 1:
            raise DataError(f"{layer.who}: is called {len(nodes)} time(s) on {len(parents)} input(s); layerlab "
                            "converts layers called once on one tensor (no shared layers)")
        chain.append(layer)
        name = parents
    start = by_name.get(name[0]) if name else None
    if start is None or start[0].name != _history(inputs[0])[:1][0]:
        raise DataError(f"{file.path}: the output is not connected to the input through the model's layers; the file "
                        "is damaged")
    if len(chain) + 1 != len(layers):
        off = sorted(set(by_name) - {layer.name for layer in chain} - {start[0].name})
        raise DataError(f"{file.path}: layers {off} are not on the path from the input to the output (branches); "
                        "layerlab converts functional models that are one chain")
    return chain[::-1], _input_shape(file, start[1], None)
