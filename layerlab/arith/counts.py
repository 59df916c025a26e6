"""Counting conventions: MACs vs FLOPs, and activation memory.

``MACS_CONVENTION`` is the sentence printed with every table. The two memory conventions:

* **inference** — the largest pair of a layer's input and output alive at once:
  ``max over layers of (input elements + output elements)`` × bytes × batch. Activations are
  freed as soon as the next layer has consumed them.
* **training** (kept for backward) — the network input (the first layer's weight gradient
  needs it) and every layer output are kept until the backward pass:
  ``(input elements + Σ over layers of output elements)`` × bytes × batch, so training is never
  below inference. Weights, gradients and optimizer state are not included; in-place activations
  and layers that save less (or more, e.g. max pooling's indices) make the real figure differ.

:func:`activation_elements` is the one home of both formulas; :func:`activation_memory` (arith
reports) and the summary's memory totals (traced rows) call it.

A third, closer estimate of training memory, **saved for backward** (:func:`saved_bytes`), follows
what each layer's backward pass needs (:func:`saves`): a convolution, a dense layer or a
normalisation keeps its input; ReLU, Tanh, Sigmoid and softmax keep their output; average pooling,
upsampling, padding and views (Flatten, Identity) keep nothing; max pooling keeps its input and its
int64 indices (8 bytes per output element), dropout in training its mask (1 byte per output
element). A tensor kept by two layers (ReLU's output read by the next convolution) counts once.
What one real forward+backward keeps is measured by :func:`layerlab.analysis.memory.measure_memory`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from layerlab.arith.report import LayerReport
from layerlab.errors import ArgumentError

MACS_CONVENTION = (
    "MACs = multiply-accumulates of the weight contraction (bias adds, activations, comparisons, "
    "pooling adds and normalisation counted separately); FLOPs = 2 × MACs; transposed conv counts "
    "the scatter C_in·∏in·(C_out/groups)·∏k (torch.utils.flop_counter)"
)

MEMORY_CONVENTION = (
    "inference = largest input+output pair alive at once; training = the network input and all "
    "layer outputs, kept for backward (weights, gradients and optimizer state not included)"
)

MEASURED_CONVENTION = (
    "saved for backward = the distinct tensors autograd keeps after one real forward in training "
    "mode (parameters and buffers excluded; views of one storage counted once), estimated from "
    "what each row's backward keeps by layer kind (its input, its output or nothing; max-pool "
    "indices, dropout masks); allocator peak (CUDA only) = torch.cuda.max_memory_allocated during "
    "forward+backward, minus what was allocated before"
)

DTYPE_BYTES = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
}


# what the backward pass of a layer kind needs: its "input", its "output", or "none" (kinds keyed
# without the Lazy prefix and the 1d/2d/3d suffix); a kind not listed keeps both (unknown work)
_KEEPS_INPUT = (
    "Conv", "ConvTranspose", "Linear", "Dense", "LocallyConnected", "TiledConv", "Bilinear",
    "BatchNorm", "GroupNorm", "LayerNorm", "InstanceNorm", "LocalResponseNorm",
    "MaxPool", "AdaptiveMaxPool", "GlobalMaxPool",
    "GELU", "SiLU", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "Softplus", "Mish", "Hardswish",
    "Hardsigmoid", "Hardtanh", "ReLU6", "LogSigmoid", "Softsign", "Tanhshrink",
)
_KEEPS_OUTPUT = ("ReLU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax")
_KEEPS_NOTHING = (
    "AvgPool", "AdaptiveAvgPool", "GlobalAvgPool", "Upsample", "ZeroPad", "ConstantPad", "ReflectionPad",
    "ReplicationPad", "CircularPad", "PixelShuffle", "PixelUnshuffle", "ChannelShuffle", "Fold", "Unfold",
    "Dropout", "AlphaDropout", "Flatten", "Unflatten", "Identity",
)
SAVES: dict[str, str] = {
    **dict.fromkeys(_KEEPS_INPUT, "input"), **dict.fromkeys(_KEEPS_OUTPUT, "output"),
    **dict.fromkeys(_KEEPS_NOTHING, "none"),
}
# bytes per output element a layer keeps besides its input/output: max pooling's int64 indices,
# dropout's bool mask (training)
EXTRA_BYTES: dict[str, int] = {"MaxPool": 8, "AdaptiveMaxPool": 8, "GlobalMaxPool": 8, "Dropout": 1, "AlphaDropout": 1}
# output-sized tensors a layer keeps besides: torch builds LocalResponseNorm from five ops and keeps
# the padded squares, the power's base and its result
EXTRA_OUTPUTS: dict[str, int] = {"LocalResponseNorm": 3}
# kinds whose output is a view of their input (no new memory)
VIEWS = frozenset({"Flatten", "Unflatten", "Identity"})


class Keeps(NamedTuple):
    """What the backward pass of one layer kind keeps (:func:`saves`).

    Attributes:
        what: ``"input"``, ``"output"``, ``"none"``, or ``"both"`` (a kind layerlab does not know).
        extra_bytes: bytes kept per output element besides (indices, masks).
        extra_outputs: output-sized tensors kept besides.
        view: the output is a view of the input (no new memory).
    """

    what: str
    extra_bytes: int
    extra_outputs: int
    view: bool


def _base_kind(kind: str) -> str:
    base = kind.removeprefix("Lazy")
    return base[:-2] if len(base) > 2 and base[-2] in "123" and base[-1] == "d" else base


def saves(kind: str) -> Keeps:
    """What the backward pass of a layer ``kind`` (``"Conv2d"``, ``"LazyLinear"``) keeps.

    Examples:
        >>> [saves(kind).what for kind in ("Conv2d", "ReLU", "AvgPool2d", "MyBlock")]
        ['input', 'output', 'none', 'both']
        >>> saves("MaxPool2d").extra_bytes, saves("Flatten").view
        (8, True)
    """
    base = _base_kind(kind)
    return Keeps(SAVES.get(base, "both"), EXTRA_BYTES.get(base, 0), EXTRA_OUTPUTS.get(base, 0), base in VIEWS)


def saved_bytes(input_elements: int, layers: Iterable[tuple[str, int, int]], item: int) -> int:
    """Bytes kept for the backward pass of a chain of layers (see the module docstring).

    A layer reads the previous layer's output when it has as many elements (the chain), else a new
    tensor made between them (by a functional op such as ``torch.cat``); each tensor counts once,
    however many layers keep it.

    Args:
        input_elements: elements of the network input (batch included).
        layers: ``(kind, input elements, output elements)`` of every layer, in order.
        item: bytes per activation element.

    Examples:
        >>> saved_bytes(10, [("Linear", 10, 8), ("ReLU", 8, 8), ("Linear", 8, 2)], 4)  # input and ReLU's output
        72
    """
    sizes = [input_elements]  # elements of each tensor met so far; the current one is the last
    kept: set[int] = set()
    extra = 0
    for kind, n_in, n_out in layers:
        keeps = saves(kind)
        if sizes[-1] != n_in:  # made by an op between the layers
            sizes.append(n_in)
        if keeps.what in ("input", "both"):
            kept.add(len(sizes) - 1)
        if not keeps.view:
            sizes.append(n_out)
        if keeps.what in ("output", "both"):
            kept.add(len(sizes) - 1)
        extra += (keeps.extra_bytes + keeps.extra_outputs * item) * n_out
    return sum(sizes[i] for i in kept) * item + extra


def flops(macs: int) -> int:
    """FLOPs of ``macs`` multiply-accumulates: one multiply and one add each, ``2·macs``.

    Examples:
        >>> flops(1769472)
        3538944
    """
    return 2 * macs


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of a dtype name such as ``"float32"`` (``"torch.float32"`` accepted)."""
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPE_BYTES:
        listed = ", ".join(DTYPE_BYTES)
        raise ArgumentError(f"activation_memory: dtype must be one of {listed}. Received: dtype={dtype!r}")
    return DTYPE_BYTES[name]


def activation_elements(input_elements: int, layers: Iterable[tuple[int, int]]) -> dict[str, int]:
    """Activation elements under both conventions (see the module docstring).

    Args:
        input_elements: elements of the network input.
        layers: ``(input elements, output elements)`` of every layer, in order.

    Returns:
        ``{"inference": max(in + out), "training": input_elements + Σ out}`` (elements).

    Examples:
        >>> activation_elements(10, [(10, 10)])  # one Linear(10) on 10 features
        {'inference': 20, 'training': 20}
    """
    pairs = list(layers)
    return {
        "inference": max((i + o for i, o in pairs), default=0),
        "training": input_elements + sum(o for _, o in pairs),
    }


def activation_memory(
    reports: Sequence[LayerReport], dtype: str = "float32", batch_size: int = 1
) -> dict[str, int]:
    """Activation memory in bytes under both conventions (see the module docstring).

    Args:
        reports: the layers' reports, in order (e.g. from ``analyse_stack``).
        dtype: element type name (default: "float32").
        batch_size: samples per batch (default: 1).

    Returns:
        ``{"inference": bytes, "training": bytes}``.

    Examples:
        >>> from layerlab.arith import ConvSpec
        >>> r = ConvSpec(2, 8, 3, padding=1).analyse((3, 32, 32))
        >>> activation_memory([r], "float32", batch_size=2)  # both (3+8)·32·32·4·2
        {'inference': 90112, 'training': 90112}
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError(
            f"activation_memory: batch_size must be a positive integer. Received: batch_size={batch_size!r}"
        )
    size = dtype_bytes(dtype) * batch_size
    network_input = _elements(reports[0].input_shape) if reports else 0
    counts = activation_elements(network_input, ((_elements(r.input_shape), r.activation_elements) for r in reports))
    return {key: n * size for key, n in counts.items()}


def format_bytes(n: int, digits: int = 1) -> str:
    """``n`` bytes in binary units with ``digits`` decimals: ``B`` below 1 KiB, then KiB ... PiB.

    Examples:
        >>> format_bytes(1536), format_bytes(1536, digits=2), format_bytes(1023)
        ('1.5 KiB', '1.50 KiB', '1023 B')
    """
    if n < 1024:
        return f"{n} B"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB", "PiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.{digits}f} {unit}"


def _elements(shape: tuple[int, ...]) -> int:
    count = 1
    for n in shape:
        count *= n
    return count
