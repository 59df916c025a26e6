"""Keras 2 (tf-keras) → PyTorch: :func:`from_keras` reads a ``.h5`` or ``.keras`` model file with h5py
(no TensorFlow; ``pip install 'layerlab[keras]'``) and builds the layerlab model with the same outputs.

Converted layers: Dense, Conv1D/2D/3D, LocallyConnected1D/2D (implementations 1, 2 and 3),
MaxPooling/AveragePooling 1D/2D/3D, their Global versions, Flatten, Reshape, Dropout,
BatchNormalization, Activation, ReLU and Softmax, in ``channels_last`` and ``channels_first``; the
layout rules and Keras's quirks reproduced are in :mod:`layerlab.convert.keras.layers`.
"""

from layerlab.convert.keras.model import from_keras

__all__ = ["from_keras"]
