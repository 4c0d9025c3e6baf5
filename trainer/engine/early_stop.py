"""Early stopping on the validation loss, restoring the best weights (seed 002's recipe)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from tiller.trainer.steering.config import TrainConfig


@dataclass
class EarlyStopping:
    """Remembers the epoch with the lowest validation loss and its weights.

    It watches whether or not ``early_stopping`` is on, so switching it on
    mid-run counts the epochs already trained without improvement.
    """

    best_loss: float = math.inf
    best_epoch: int = 0
    best_weights: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def observe(self, epoch: int, val_loss: float, model: nn.Module) -> None:
        if val_loss < self.best_loss:
            self.best_loss, self.best_epoch = val_loss, epoch
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def should_stop(self, epoch: int, config: TrainConfig) -> bool:
        """True after ``early_stopping_patience`` epochs in a row without a better loss."""
        return config.early_stopping and epoch - self.best_epoch >= config.early_stopping_patience

    def restore(self, model: nn.Module) -> None:
        model.load_state_dict(self.best_weights)
