"""conv ⊂ local ⊂ dense, executable: exact conversions between layer types and their matrices.

- :func:`dense_matrix` / :func:`dense_bias`: the ``[out_features, in_features]`` matrix (and constant
  part) of any linear layer, built by index arithmetic; ``sparse=True`` for COO.
- memory is estimated first; past ``max_bytes`` / ``$LAYERLAB_MAX_BYTES`` (2 GiB) a
  :class:`~layerlab.errors.SizeLimitError` is raised before anything is allocated.
"""

from layerlab.convert.limits import DEFAULT_MAX_BYTES, max_bytes_limit
from layerlab.convert.matrix import dense_bias, dense_matrix

__all__ = ["dense_matrix", "dense_bias", "max_bytes_limit", "DEFAULT_MAX_BYTES"]
