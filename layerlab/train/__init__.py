"""Training: :func:`fit` with checkpoints, exact resume, NaN guard, signals and DDP (``torchrun``).

Examples:
    >>> from layerlab.train import TrainConfig
    >>> TrainConfig(optimizer="sgd", lr=0.1).momentum
    0.9
"""

from layerlab.train.config import TrainConfig
from layerlab.train.loop import TrainResult, fit, seed_everything
from layerlab.train.signals import TrainingInterrupted

__all__ = ["TrainConfig", "TrainResult", "TrainingInterrupted", "fit", "seed_everything"]
