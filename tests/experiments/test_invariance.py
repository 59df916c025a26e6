"""An MLP is exactly indifferent to shuffled positions; a CNN is not."""

from __future__ import annotations

import copy

import torch

from layerlab.experiments import permute_positions
from layerlab.train import TrainConfig, fit, seed_everything
from layerlab.zoo import build

RECIPE = TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, epochs=2, schedule="cosine", warmup_epochs=1,
                     weight_decay=1e-4, seed=7, device="cpu")


def test_mlp_on_permuted_inputs_equals_the_original_run_with_permuted_first_layer_columns(toy_images):
    data = toy_images
    shuffled, perm = permute_positions(data, seed=5)  # (1, 6, 6): flattened position p is input column p
    seed_everything(0)
    original = build("mlp", data.input_shape, data.num_classes).double()
    permuted = copy.deepcopy(original)
    with torch.no_grad():
        permuted[1].weight.copy_(original[1].weight[:, perm])  # W'x' = W x when x'[p] = x[perm[p]]

    a = fit(original, data, RECIPE, progress=False)
    b = fit(permuted, shuffled, RECIPE, progress=False)

    torch.testing.assert_close(permuted[1].weight, original[1].weight[:, perm], rtol=0, atol=1e-10)
    for name in ("1.bias", "3.weight", "3.bias", "5.weight", "5.bias"):
        torch.testing.assert_close(permuted.state_dict()[name], original.state_dict()[name], rtol=0, atol=1e-10)
    for row_a, row_b in zip(a.history, b.history):
        assert row_a["test_accuracy"] == row_b["test_accuracy"]
        assert abs(row_a["train_loss"] - row_b["train_loss"]) < 1e-10
    assert a.test_accuracy > 0.6  # it did learn (chance: 0.25)


def test_the_same_column_trick_does_not_make_a_cnn_invariant(toy_images):
    """Control: the check above can fail — a CNN trained on shuffled pixels ends elsewhere."""
    data = toy_images
    shuffled, _ = permute_positions(data, seed=5)
    seed_everything(0)
    original = build("cnn", data.input_shape, data.num_classes).double()
    twin = copy.deepcopy(original)
    recipe = TrainConfig(**{**RECIPE.to_dict(), "epochs": 1, "warmup_epochs": 0})
    a = fit(original, data, recipe, progress=False)
    b = fit(twin, shuffled, recipe, progress=False)
    assert abs(a.history[-1]["train_loss"] - b.history[-1]["train_loss"]) > 1e-3
