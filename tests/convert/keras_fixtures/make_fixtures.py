"""Write the Keras 2 model files and reference outputs that tests/convert/test_keras.py reads.

Needs TensorFlow and tf-keras (not layerlab's dependencies), in an environment of its own::

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf-keras h5py
    TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python tests/convert/keras_fixtures/make_fixtures.py

For each model NAME it writes ``NAME.h5`` or ``NAME.keras`` and ``NAME.npz`` (``x``: the input in
Keras's layout, ``y``: Keras's output for it, float32) into this folder. Every weight is drawn at
random (biases and BatchNormalization's moving statistics included), so that no conversion error
can hide behind zeros and ones. TensorFlow's CPU kernels cannot run channels_first Conv and
MaxPooling/AveragePooling 2D/3D; for those models the reference is Keras's output of the
channels_last twin with the same weights (the kernels of Keras's Conv layers do not depend on
data_format), with the input and output transposed.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402

L = keras.layers
HERE = Path(__file__).parent
RNG = np.random.default_rng(0)


def randomise(model: keras.Model) -> None:
    """Every weight uniform in [-1, 1]; moving variances in [0.5, 2]."""
    weights = []
    for w in model.weights:
        low, high = (0.5, 2.0) if "moving_variance" in w.name else (-1.0, 1.0)
        weights.append(RNG.uniform(low, high, w.shape).astype(np.float32))
    model.set_weights(weights)


def save(name: str, model: keras.Model, ext: str = ".h5", reference: keras.Model | None = None,
         perm_in=None, perm_out=None) -> None:
    randomise(model)
    x = RNG.normal(size=(3, *model.input_shape[1:])).astype(np.float32)
    if reference is None:
        y = model(x, training=False).numpy()
    else:
        reference.set_weights(model.get_weights())
        y = reference(np.transpose(x, perm_in), training=False).numpy()
        y = np.transpose(y, perm_out) if perm_out else y
    model.save(HERE / f"{name}{ext}")
    np.savez(HERE / f"{name}.npz", x=x, y=y.astype(np.float32))
    print(name, model.input_shape, "->", y.shape)


def sequential(shape, *layers) -> keras.Model:
    return keras.Sequential([keras.Input(shape), *layers])


def functional(shape, *layers) -> keras.Model:
    x = inputs = keras.Input(shape)
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


def locally_connected() -> None:
    for impl in (1, 2, 3):
        for fmt, shape2, shape1 in (("last", (7, 6, 2), (9, 2)), ("first", (2, 7, 6), (2, 9))):
            data_format = f"channels_{fmt}"
            save(f"lc2d_impl{impl}_{fmt}", sequential(
                shape2, L.LocallyConnected2D(3, (3, 2), strides=(1, 2), implementation=impl, data_format=data_format)))
            save(f"lc1d_impl{impl}_{fmt}", sequential(
                shape1, L.LocallyConnected1D(3, 3, strides=2, implementation=impl, data_format=data_format)))
    # padding='same' with even kernels: Keras pads the extra row/column on the left
    save("lc2d_same_impl2_last", sequential((7, 6, 2), L.LocallyConnected2D(
        3, (2, 4), strides=(1, 2), padding="same", implementation=2)))
    save("lc2d_same_impl3_first", sequential((2, 7, 6), L.LocallyConnected2D(
        3, (4, 2), strides=(2, 1), padding="same", implementation=3, data_format="channels_first")))
    save("lc1d_same_impl2_first", sequential((2, 9), L.LocallyConnected1D(
        2, 2, padding="same", implementation=2, data_format="channels_first")))
    save("lc1d_same_impl3_last", sequential((9, 2), L.LocallyConnected1D(
        2, 4, strides=2, padding="same", implementation=3)))
    # the hls4ml-style classifier, as a functional .keras file
    save("lc_classifier", functional(
        (8, 8, 1), L.LocallyConnected2D(4, 3, strides=2, activation="relu", implementation=1),
        L.BatchNormalization(), L.Flatten(), L.Dropout(0.5), L.Dense(5), L.Softmax()), ".keras")


def convolutions() -> None:
    save("conv2d_sequential", sequential(
        (9, 9, 2), L.Conv2D(4, 3, strides=2, padding="same", activation="relu"), L.BatchNormalization(),
        L.MaxPooling2D(2, padding="same"), L.Conv2D(3, 2, dilation_rate=2, padding="same"),
        L.AveragePooling2D(2, strides=1, padding="same"), L.Flatten(), L.Dropout(0.3),
        L.Dense(5, activation="softmax")))
    save("conv1d_functional", functional(
        (10, 2), L.Conv1D(3, 2, padding="causal", activation="tanh"), L.Conv1D(4, 4, strides=2, padding="same"),
        L.MaxPooling1D(2, strides=1), L.AveragePooling1D(3, strides=2, padding="same"),
        L.GlobalAveragePooling1D(), L.Dense(4), L.Activation("sigmoid")), ".keras")
    save("conv3d_groups", sequential(
        (5, 4, 4, 2), L.Conv3D(4, 2, strides=2, padding="same", groups=2), L.ReLU(),
        L.MaxPooling3D((1, 2, 2), padding="same"), L.AveragePooling3D((2, 1, 1), padding="same"),
        L.GlobalMaxPooling3D(keepdims=True), L.Flatten()))
    save("layout_moves", functional(
        (5, 4, 3), L.Conv2D(2, (2, 3)), L.BatchNormalization(axis=1), L.Flatten(data_format="channels_first"),
        L.Dense(6)))
    save("global_keepdims", sequential(
        (5, 4, 3), L.Conv2D(3, 3, padding="same", activation="softmax"), L.GlobalAveragePooling2D(keepdims=True),
        L.Activation("elu")))
    save("pool_same_even", sequential(
        (5, 4, 2), L.AveragePooling2D(3, strides=1, padding="same"), L.MaxPooling2D(3, strides=2, padding="same"),
        L.Flatten()))
    # channels_first conv and pooling: the reference runs their channels_last twin
    save("conv2d_channels_first", sequential(
        (2, 9, 8), L.Conv2D(3, 3, strides=2, padding="same", data_format="channels_first"),
        L.BatchNormalization(axis=1), L.MaxPooling2D(2, padding="same", data_format="channels_first"),
        L.AveragePooling2D(2, strides=1, padding="same", data_format="channels_first"),
        L.Flatten(data_format="channels_first"), L.Dense(4)),
        reference=sequential(
            (9, 8, 2), L.Conv2D(3, 3, strides=2, padding="same"), L.BatchNormalization(),
            L.MaxPooling2D(2, padding="same"), L.AveragePooling2D(2, strides=1, padding="same"), L.Flatten(),
            L.Dense(4)),
        perm_in=(0, 2, 3, 1))
    save("conv_pool_first_map", sequential(
        (2, 6, 5, 4), L.Conv3D(2, 2, data_format="channels_first"),
        L.GlobalAveragePooling3D(data_format="channels_first", keepdims=True),
        L.Reshape((2, 1, 1)), L.Conv2D(3, 1, data_format="channels_first"),
        L.Reshape((3, 1)),
        L.Conv1D(2, 1, data_format="channels_first"), L.MaxPooling1D(1, data_format="channels_first")),
        reference=sequential(
            (6, 5, 4, 2), L.Conv3D(2, 2), L.GlobalAveragePooling3D(keepdims=True), L.Reshape((1, 1, 2)),
            L.Conv2D(3, 1), L.Reshape((1, 3)), L.Conv1D(2, 1), L.MaxPooling1D(1)),
        perm_in=(0, 2, 3, 4, 1), perm_out=(0, 2, 1))


def dense_and_activations() -> None:
    save("dense_reshape", functional(
        (12,), L.Dense(24, activation="selu"), L.Reshape((4, -1)), L.Dense(3, activation="softmax"),
        L.Softmax(axis=1), L.ReLU(max_value=0.3, negative_slope=0.1, threshold=0.2), L.Reshape((2, 6)),
        L.Activation("softplus"), L.Flatten()))
    save("activations", sequential(
        (6,), L.Dense(8, activation="gelu"), L.Activation("softsign"), L.Dense(8, activation="swish"),
        L.Activation("elu"), L.Dense(8, activation="relu6"), L.BatchNormalization(center=False),
        L.ReLU(negative_slope=0.2), L.Dense(4, use_bias=False), L.BatchNormalization(scale=False),
        L.Activation("tanh")), ".keras")


def unsupported() -> None:
    x = inputs = keras.Input((4, 3))
    a = L.LSTM(2)(x)
    b = L.Flatten()(x)
    b = L.Dense(2)(b)
    y = L.Add()([a, b])
    y = L.LeakyReLU()(y)
    model = keras.Model(inputs, y)
    model.save(HERE / "unsupported.h5")
    print("unsupported")


if __name__ == "__main__":
    locally_connected()
    convolutions()
    dense_and_activations()
    unsupported()
