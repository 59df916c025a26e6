"""The default models and training recipe of :func:`~layerlab.experiments.run_compare`.

Kept apart from ``compare.py`` and free of torch, so that ``layerlab compare --help`` shows them
without importing torch. The recipe's home is :data:`layerlab.train.config.DEFAULT_RECIPE`, shared
with ``layerlab train``.

Examples:
    >>> from layerlab.experiments.defaults import DEFAULT_MODELS, DEFAULT_RECIPE
    >>> DEFAULT_MODELS, DEFAULT_RECIPE.epochs
    (('mlp', 'cnn', 'lcn', 'allconv'), 15)
"""

from __future__ import annotations

from layerlab.train.config import DEFAULT_RECIPE

__all__ = ["DEFAULT_MODELS", "DEFAULT_RECIPE", "SWEEPS", "DEFAULT_TILES", "DEFAULT_RANKS", "DEFAULT_SWEEP_SEEDS"]

DEFAULT_MODELS = ("mlp", "cnn", "lcn", "allconv")

# ``layerlab compare --sweep``: the sweeps, and the sharing sweep's tile sizes, ranks and seeds
SWEEPS = ("sharing",)
DEFAULT_TILES = (2, 4)
DEFAULT_RANKS = (2, 4, 8)
DEFAULT_SWEEP_SEEDS = 3
