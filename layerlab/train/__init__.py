"""Training: :func:`fit` with checkpoints, exact resume, NaN guard, signals and DDP (``torchrun``).

Names are imported lazily (PEP 562), so ``layerlab.train.config`` stays free of torch and
``layerlab train --help`` builds its options from :class:`TrainConfig` without importing torch.

Examples:
    >>> from layerlab.train import TrainConfig
    >>> TrainConfig(optimizer="sgd", lr=0.1).momentum
    0.9
"""

from __future__ import annotations

import importlib

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "TrainConfig": "layerlab.train.config",
    "TrainResult": "layerlab.train.loop",
    "TrainingInterrupted": "layerlab.train.signals",
    "fit": "layerlab.train.loop",
    "seed_everything": "layerlab.train.loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'layerlab.train' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
