"""TrainConfig validation and the learning-rate schedule against torch's own schedulers."""

from __future__ import annotations

import pytest
import torch

from layerlab.errors import ArgumentError
from layerlab.train import TrainConfig
from layerlab.train.schedule import learning_rate


def torch_lrs(scheduler_factory, steps: int, lr: float) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = scheduler_factory(optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_cosine_matches_cosine_annealing_lr():
    config = TrainConfig(lr=0.3, epochs=4, schedule="cosine")
    ours = [learning_rate(config, t, 5) for t in range(20)]
    ref = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20), 20, 0.3)
    assert ours == pytest.approx(ref, rel=1e-12, abs=1e-15)


def test_warmup_then_cosine_matches_linear_lr_then_cosine():
    config = TrainConfig(lr=0.3, epochs=5, schedule="cosine", warmup_epochs=2)
    ours = [learning_rate(config, t, 3) for t in range(15)]
    ref = torch_lrs(lambda o: torch.optim.lr_scheduler.SequentialLR(o, [
        torch.optim.lr_scheduler.LinearLR(o, start_factor=1 / 6, total_iters=5),
        torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=9)], milestones=[6]), 15, 0.3)
    assert ours == pytest.approx(ref, rel=1e-12)


def test_step_schedule_matches_step_lr_per_epoch():
    config = TrainConfig(lr=0.3, epochs=7, schedule="step", lr_step_size=2, lr_gamma=0.5)
    per_epoch = torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5), 7, 0.3)
    ours = [learning_rate(config, t, 4) for t in range(28)]
    assert ours == pytest.approx([lr for lr in per_epoch for _ in range(4)], rel=1e-12)


def test_constant_schedule():
    config = TrainConfig(lr=0.2, epochs=2, schedule="none")
    assert {learning_rate(config, t, 3) for t in range(6)} == {0.2}


def test_dict_round_trip():
    config = TrainConfig(optimizer="sgd", lr=0.1, grad_clip=1.0, epochs=3)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ArgumentError, match=r"TrainConfig has no field\(s\) learning_rate, nesterov. Known fields: "):
        TrainConfig.from_dict({"learning_rate": 0.1, "nesterov": True})


@pytest.mark.parametrize("kwargs, message", [
    ({"optimizer": "rmsprop"}, r"TrainConfig.optimizer must be one of 'sgd', 'adam'. Received: optimizer='rmsprop'"),
    ({"schedule": "linear"}, r"TrainConfig.schedule must be one of 'cosine', 'step', 'none'. Received: schedule='linear'"),
    ({"loss": "mse"}, r"TrainConfig.loss must be one of 'ce', 'bce'. Received: loss='mse'"),
    ({"lr": 0}, r"TrainConfig.lr must be a finite number > 0. Received: lr=0"),
    ({"lr": float("nan")}, r"TrainConfig.lr must be a finite number > 0. Received: lr=nan"),
    ({"batch_size": 0}, r"TrainConfig.batch_size must be a positive integer. Received: batch_size=0"),
    ({"batch_size": 8.0}, r"TrainConfig.batch_size must be a positive integer. Received: batch_size=8.0"),
    ({"epochs": True}, r"TrainConfig.epochs must be a positive integer. Received: epochs=True"),
    ({"warmup_epochs": -1}, r"TrainConfig.warmup_epochs must be an integer >= 0. Received: warmup_epochs=-1"),
    ({"warmup_epochs": 3, "epochs": 3}, r"TrainConfig.warmup_epochs must be smaller than epochs. Received: "
                                        r"warmup_epochs=3, epochs=3; lower warmup_epochs"),
    ({"momentum": -0.1}, r"TrainConfig.momentum must be a finite number >= 0. Received: momentum=-0.1"),
    ({"weight_decay": float("inf")}, r"TrainConfig.weight_decay must be a finite number >= 0. Received: "
                                     r"weight_decay=inf"),
    ({"grad_clip": 0.0}, r"TrainConfig.grad_clip must be a finite number > 0. Received: grad_clip=0.0"),
    ({"seed": -3}, r"TrainConfig.seed must be a non-negative integer up to 2\*\*63 - 1. Received: seed=-3"),
    ({"seed": 2**63}, r"TrainConfig.seed must be a non-negative integer up to 2\*\*63 - 1. Received: seed=9223372036854775808"),
    ({"num_workers": -1}, r"TrainConfig.num_workers must be an integer >= 0. Received: num_workers=-1"),
    ({"ddp_timeout": 0}, r"TrainConfig.ddp_timeout must be a finite number > 0. Received: ddp_timeout=0"),
    ({"lr_gamma": 0}, r"TrainConfig.lr_gamma must be a finite number > 0. Received: lr_gamma=0"),
    ({"device": "tpu"}, r"TrainConfig.device must be 'auto', 'cpu', 'cuda' or 'cuda:N'. Received: device='tpu'"),
])
def test_bad_values_are_refused_with_the_field_and_value(kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        TrainConfig(**kwargs)
