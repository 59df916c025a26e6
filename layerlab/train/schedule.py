"""Learning rate as a pure function of the global step, so a resumed run needs only the step."""

from __future__ import annotations

import math

from layerlab.train.config import TrainConfig

__all__ = ["learning_rate"]


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate of global step ``step`` (0-based, counted over all epochs).

    Formulas in :class:`~layerlab.train.config.TrainConfig`.

    Examples:
        >>> cfg = TrainConfig(lr=1.0, epochs=2, schedule="cosine")
        >>> [round(learning_rate(cfg, t, 2), 3) for t in range(4)]
        [1.0, 0.854, 0.5, 0.146]
    """
    warmup = config.warmup_epochs * steps_per_epoch
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "cosine":
        total = config.epochs * steps_per_epoch
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup)))
    if config.schedule == "step":
        return config.lr * config.lr_gamma ** ((step // steps_per_epoch) // config.lr_step_size)
    return config.lr
