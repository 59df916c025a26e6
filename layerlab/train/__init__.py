"""Training: :func:`fit` with checkpoints, exact resume, NaN guard, signals and DDP (``torchrun``).

Names are imported lazily (PEP 562), so ``layerlab.train.config`` stays free of torch and
``layerlab train --help`` builds its options from :class:`TrainConfig` without importing torch.

Examples:
    >>> from layerlab.train import TrainConfig
    >>> TrainConfig(optimizer="sgd", lr=0.1).momentum
    0.9
"""

from __future__ import annotations

from layerlab._lazy import lazy_exports

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "TrainConfig": "layerlab.train.config",
    "TrainResult": "layerlab.train.loop",
    "TrainingInterrupted": "layerlab.train.signals",
    "fit": "layerlab.train.loop",
    "seed_everything": "layerlab.train.loop",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
