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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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

DTYPE_BYTES = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
}


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
