"""Freezing the backbone, whole or up to a layer group; callable again mid-run.

The optimizer holds every parameter, frozen or not (trainer/engine/optim.py). PyTorch
optimizers skip parameters whose ``.grad`` is None, so freezing only has to stop
gradients (``requires_grad``) and clear any gradient already there; unfreezing
needs no new optimizer and keeps the state of the layers that were training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from tiller.trainer.models.classifier import Classifier
from tiller.trainer.steering.config import TrainConfig


@dataclass(frozen=True)
class FreezeReport:
    trainable_params: int
    total_params: int
    frozen_groups: int
    total_groups: int  # layer groups of the backbone, head not included
    fine_tune_at: int  # as asked; may exceed total_groups
    head_only: bool  # freeze_backbone: the whole backbone is frozen

    def describe(self) -> str:
        trains = f"{self.trainable_params:,} of {self.total_params:,} parameters train"
        if self.head_only:
            return f"backbone frozen, only the head trains: {trains}"
        if self.frozen_groups == 0:
            return f"nothing frozen: all {self.total_params:,} parameters train"
        if self.fine_tune_at > self.total_groups:
            return (f"fine_tune_at {self.fine_tune_at} is beyond the backbone's {self.total_groups} layer "
                    f"groups, so the whole backbone is frozen: {trains}")
        return f"fine_tune_at {self.fine_tune_at}: the first {self.frozen_groups} of {self.total_groups} " \
               f"backbone layer groups are frozen: {trains}"


def apply_freeze(model: Classifier, config: TrainConfig) -> FreezeReport:
    """Freeze what ``freeze_backbone`` / ``fine_tune_at`` ask for and unfreeze the rest."""
    groups = model.backbone_groups()
    count = len(groups) if config.freeze_backbone else min(config.fine_tune_at, len(groups))
    frozen = {id(p) for _, params in groups[:count] for p in params}
    for param in model.parameters():
        param.requires_grad_(id(param) not in frozen)
        if id(param) in frozen:
            param.grad = None  # a gradient left from before would still be applied by the optimizer
    params = list(model.parameters())
    return FreezeReport(
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        total_params=sum(p.numel() for p in params),
        frozen_groups=count,
        total_groups=len(groups),
        fine_tune_at=config.fine_tune_at,
        head_only=config.freeze_backbone,
    )


def train_mode(model: nn.Module) -> nn.Module:
    """``model.train()``, but BatchNorm layers that are wholly frozen stay in eval mode.

    A frozen layer should not change; in train mode BatchNorm would still update its
    running statistics (Keras keeps a frozen base's BatchNorm in inference mode too).
    """
    model.train()
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if isinstance(module, _BatchNorm) and params and not any(p.requires_grad for p in params):
            module.eval()
    return model
