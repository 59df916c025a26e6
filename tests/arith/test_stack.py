"""analyse_stack: inference of in_channels/in_features, and the explanation of a misfit."""

from __future__ import annotations

import re

import pytest

from layerlab.arith import (
    ConvSpec,
    DenseSpec,
    FlattenSpec,
    PoolSpec,
    analyse_stack,
    elementwise,
    global_pool,
)
from layerlab.errors import ShapeError

CNN = [ConvSpec(2, 32, 3, padding=1), elementwise("ReLU"), PoolSpec(2, "max", 2), ConvSpec(2, 64, 3, padding=1),
       elementwise("ReLU"), PoolSpec(2, "max", 2), FlattenSpec(), DenseSpec(10, 4096)]


def test_shapes_flow_and_channels_are_inferred():
    reports = analyse_stack(CNN, "3x32x32")
    assert [r.output_shape for r in reports] == [(32, 32, 32), (32, 32, 32), (32, 16, 16), (64, 16, 16),
                                                (64, 16, 16), (64, 8, 8), (4096,), (10,)]
    # conv1 in_channels inferred 3: 32·3·9 + 32; conv2 from 32: 64·32·9 + 64
    assert [r.params for r in reports] == [896, 0, 0, 18496, 0, 0, 0, 40970]


def test_dense_after_flatten_explains_the_misfit():
    message = ("layer 8: Linear(4096 → 10) expects 4096 input features, gets 16384: flatten gives 64·16·16 = "
               "16384; the input is 64×64, not 32×32. Fix: feed a 3×32×32 input, or set in_features=16384 "
               "(or None to infer it).")
    with pytest.raises(ShapeError, match=re.escape(message)):
        analyse_stack(CNN, (3, 64, 64))


def test_dense_after_flatten_without_a_fitting_input():
    # 48×32 input: 64·12·8 = 6144 features; no input with the same aspect ratio gives 4096
    with pytest.raises(ShapeError, match=re.escape(
            "layer 8: Linear(4096 → 10) expects 4096 input features, gets 6144: flatten gives 64·12·8 = 6144. "
            "Fix: set in_features=6144 (or None to infer it).")):
        analyse_stack(CNN, (3, 48, 32))


def test_dense_after_global_pool():
    with pytest.raises(ShapeError, match=re.escape(
            "layer 3: Linear(128 → 10) expects 128 input features, gets 64: GlobalAvgPool2d gives 64 features "
            "from (64, 8, 8)")):
        analyse_stack([ConvSpec(2, 64, 3, padding=1), global_pool("avg"), DenseSpec(10, 128)], (3, 8, 8))


def test_too_small_input_names_the_layer_and_a_fitting_size():
    with pytest.raises(ShapeError, match=re.escape(
            "layer 6: MaxPool2d(kernel_size=2): H: the kernel spans 1·(2−1) + 1 = 2 but the padded input is only "
            "1 + 0 = 1")) as caught:
        analyse_stack(CNN, (3, 2, 2))
    assert caught.value.args[0].endswith("Note: the input is 2×2, not 4×4 — a 3×4×4 input fits the stack up to "
                                         "this layer.")


def test_dense_on_unflattened_input_warns():
    reports = analyse_stack([ConvSpec(2, 4, 3), DenseSpec(5)], (1, 6, 6))
    assert reports[1].output_shape == (4, 4, 5)  # torch's Linear acts on the last dim
    assert reports[1].warnings == ("Linear(? → 5) acts on the last dim of the (4, 4, 4) input (as torch); add "
                                   "Flatten() before it to use all 4·4·4 = 64 features",)
