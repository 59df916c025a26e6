"""The element-wise layers: parameter-free (PReLU aside), shape kept, named like their torch class.

One table, read by :func:`layerlab.arith.specs.elementwise` (the counts), by
:func:`layerlab.analysis.spec_of` (which torch modules are element-wise) and by the exact receptive
field of :mod:`layerlab.viz.receptive` (which input elements an output element reads).

- :data:`OPS_PER_ELEMENT`: name -> ``activation`` ops counted per output element. Convention: one
  for every function (ReLU, GELU, Softmax, Dropout, ...), none for ``Identity``.
- :data:`ALONG_DIM`: the layers whose output element reads the whole line of the input along
  ``dim`` (softmax: ``exp(x_i) / Σ_j exp(x_j)``), ``size(dim)`` input elements; every other layer
  of the table is point-wise: output element ``i`` reads input element ``i`` only.
"""

from __future__ import annotations

__all__ = ["OPS_PER_ELEMENT", "ALONG_DIM", "ops_per_element", "is_pointwise"]

OPS_PER_ELEMENT: dict[str, int] = {
    **dict.fromkeys((
        "ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Tanh",
        "Sigmoid", "Hardtanh", "Hardsigmoid", "Hardswish", "Softplus", "Softsign", "Tanhshrink",
        "LogSigmoid", "Softmax", "LogSoftmax", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d",
        "AlphaDropout",
    ), 1),
    "Identity": 0,
}

ALONG_DIM: frozenset[str] = frozenset({"Softmax", "LogSoftmax"})


def ops_per_element(name: str) -> int:
    """``activation`` ops per element of the layer ``name`` (1 for a name not in the table).

    Examples:
        >>> ops_per_element("ReLU"), ops_per_element("Identity")
        (1, 0)
    """
    return OPS_PER_ELEMENT.get(name, 1)


def is_pointwise(name: str) -> bool:
    """True when output element ``i`` of the layer ``name`` reads input element ``i`` only.

    Examples:
        >>> is_pointwise("Tanh"), is_pointwise("Softmax"), is_pointwise("Conv2d")
        (True, False, False)
    """
    return name in OPS_PER_ELEMENT and name not in ALONG_DIM
