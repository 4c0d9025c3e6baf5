"""The optimizer a config asks for."""

from __future__ import annotations

import torch
import torch.nn as nn

from tiller.trainer.steering.config import TrainConfig


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """A fresh optimizer over all the model's parameters, frozen ones included.

    Optimizers skip parameters without a gradient, so frozen layers stay put;
    holding them anyway means unfreezing mid-run needs no new optimizer (and
    keeps the moment estimates of the layers that were training). The lr given
    here only seeds the param groups: the schedule sets it before every step.
    """
    params = list(model.parameters())
    if config.optimizer == "SGD":
        return torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    optimizer_class = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}[config.optimizer]
    return optimizer_class(params, lr=config.learning_rate, betas=(config.beta1, config.beta2),
                           weight_decay=config.weight_decay)
