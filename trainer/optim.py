"""The optimizer a config asks for."""

from __future__ import annotations

import torch
import torch.nn as nn

from trainer.config import TrainConfig


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """A fresh optimizer over the model's trainable parameters.

    The lr given here only seeds the param groups: the schedule sets it before every step.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "SGD":
        return torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    optimizer_class = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}[config.optimizer]
    return optimizer_class(params, lr=config.learning_rate, betas=(config.beta1, config.beta2),
                           weight_decay=config.weight_decay)
