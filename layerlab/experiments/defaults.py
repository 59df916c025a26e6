"""The default models and training recipe of :func:`~layerlab.experiments.run_compare`.

Kept apart from ``compare.py`` and free of torch, so that ``layerlab compare --help`` shows them
without importing torch.

Examples:
    >>> from layerlab.experiments.defaults import DEFAULT_MODELS, DEFAULT_RECIPE
    >>> DEFAULT_MODELS, DEFAULT_RECIPE.epochs
    (('mlp', 'cnn', 'lcn', 'allconv'), 15)
"""

from __future__ import annotations

from layerlab.train.config import TrainConfig

__all__ = ["DEFAULT_MODELS", "DEFAULT_RECIPE"]

DEFAULT_MODELS = ("mlp", "cnn", "lcn", "allconv")
# Adam with a 1-epoch warmup then cosine decay; 15 epochs of batch 100 = 600 steps on MNIST-1D's
# 4,000 training signals (the MNIST-1D paper trains 6,000 steps; 600 reach within ~1-2 points of it).
DEFAULT_RECIPE = TrainConfig(optimizer="adam", lr=1e-2, batch_size=100, epochs=15, schedule="cosine",
                             warmup_epochs=1)
