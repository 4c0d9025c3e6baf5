"""The learning rate as a pure function of training progress (nanoGPT's ``get_lr``).

No hidden scheduler state beyond ReduceLROnPlateau's memory of the validation
loss, so a mid-run change of any schedule key (or of ``learning_rate`` or
``num_epochs``) simply bends the curve from the next step on.

Progress is measured in epochs as a float (``epoch - 1 + step / steps_in_epoch``)
so a batch-size change does not shift the schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tiller.trainer.steering.config import TrainConfig

SCHEDULE_KEYS = (
    "lr_scheduler", "lr_step_size", "lr_gamma", "plateau_patience", "plateau_factor",
    "warmup_enabled", "warmup_ratio", "warmup_steps", "warmup_method", "min_lr_enabled", "min_lr",
)


@dataclass
class Plateau:
    """ReduceLROnPlateau's state: scale the lr by ``plateau_factor`` after
    ``plateau_patience`` epochs without a new best validation loss."""

    scale: float = 1.0
    best: float = math.inf
    bad_epochs: int = 0

    def observe(self, val_loss: float, config: TrainConfig) -> bool:
        """Record an epoch's validation loss; True when the lr was just reduced."""
        if val_loss < self.best:
            self.best, self.bad_epochs = val_loss, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs <= config.plateau_patience:
            return False
        self.scale *= config.plateau_factor
        self.bad_epochs = 0
        return True

    def reset(self) -> None:
        """A new base learning rate from the user starts the reductions afresh."""
        self.scale, self.bad_epochs = 1.0, 0


def warmup_epochs(config: TrainConfig, steps_per_epoch: int) -> float:
    if not config.warmup_enabled:
        return 0.0
    if config.warmup_steps > 0:  # an explicit step count wins over the ratio, as in seed 003
        return config.warmup_steps / max(steps_per_epoch, 1)
    return config.warmup_ratio * config.num_epochs


def lr_at(progress: float, config: TrainConfig, steps_per_epoch: int, plateau: Plateau) -> float:
    """The learning rate at ``progress`` epochs into the run (0 = the very first step)."""
    base, floor = config.learning_rate, (config.min_lr if config.min_lr_enabled else 0.0)
    warmup = warmup_epochs(config, steps_per_epoch)
    if progress < warmup:  # the first step gets base / warmup steps (linear), the last of them base
        ramp = (progress + 1 / max(steps_per_epoch, 1)) / warmup
        if config.warmup_method == "cosine":  # slower at first, like the start of a half cosine
            ramp = 0.5 * (1 - math.cos(math.pi * min(ramp, 1.0)))
        return base * ramp
    if config.lr_scheduler == "StepLR":
        lr = base * config.lr_gamma ** int(progress // config.lr_step_size)
    elif config.lr_scheduler == "cosine":
        span = max(config.num_epochs - warmup, 1e-9)
        done = min((progress - warmup) / span, 1.0)
        lr = floor + 0.5 * (base - floor) * (1 + math.cos(math.pi * done))
    elif config.lr_scheduler == "ReduceLROnPlateau":
        lr = base * plateau.scale
    else:
        lr = base
    return max(lr, floor)
