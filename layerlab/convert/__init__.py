"""conv ⊂ local ⊂ dense, executable: exact conversions between layer types and their matrices.

- :func:`dense_matrix` / :func:`dense_bias`: ``layer(x).flatten(1) == x.flatten(1) @ M.T + b`` for any
  linear layer, built by index arithmetic; ``sparse=True`` for a COO tensor.
- :func:`conv_to_local`, :func:`tiled_to_local`, :func:`local_to_dense`, :func:`conv_to_dense`,
  :func:`dense_to_conv`: exact conversions (same outputs and gradients).
- :func:`lowrank_to_local`, :func:`local_to_lowrank`: exact, both ways (a local layer is a
  low-rank one of rank ``∏out_size``).
- :func:`convert_model`: every conv of a nested model to local or dense.
- :func:`local_to_conv`, :func:`dense_to_local`: projections back, returning ``(module, loss)``.
- Memory is estimated first; past ``max_bytes`` / ``$LAYERLAB_MAX_BYTES`` (default 2 GiB) a
  :class:`~layerlab.errors.SizeLimitError` is raised before anything is allocated.
"""

from layerlab.convert.layers import conv_to_dense, conv_to_local, dense_to_conv, local_to_dense, tiled_to_local
from layerlab.convert.layers import local_to_lowrank, lowrank_to_local
from layerlab.limits import DEFAULT_MAX_BYTES, max_bytes_limit
from layerlab.convert.matrix import dense_bias, dense_matrix
from layerlab.convert.model import convert_model
from layerlab.convert.project import dense_to_local, local_to_conv

__all__ = [
    "dense_matrix", "dense_bias", "conv_to_local", "tiled_to_local", "local_to_dense", "conv_to_dense",
    "dense_to_conv", "convert_model", "local_to_conv", "dense_to_local", "max_bytes_limit", "DEFAULT_MAX_BYTES",
    "lowrank_to_local", "local_to_lowrank",
]
