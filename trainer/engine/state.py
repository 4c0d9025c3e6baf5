"""Everything a run holds in memory while it trains, built from its config."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from tiller.trainer.steering.config import TrainConfig
from tiller.trainer.data import DataSplit, load_data
from tiller.trainer.engine.distributed import World
from tiller.trainer.engine.early_stop import EarlyStopping
from tiller.trainer.engine.ema import EmaTracker
from tiller.trainer.engine.freeze import FreezeReport, apply_freeze
from tiller.trainer.engine.imbalance import Imbalance, imbalance_for
from tiller.trainer.models.build import build_model
from tiller.trainer.engine.nonfinite import NonfiniteGuard
from tiller.trainer.engine.optim import build_optimizer
from tiller.trainer.engine.precision import Precision
from tiller.trainer.steering.schedule import Plateau


@dataclass
class TrainingState:
    config: TrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: DataSplit
    device: torch.device
    batch_size: int
    imbalance: Imbalance
    precision: Precision
    freeze: FreezeReport
    ema: EmaTracker = field(default_factory=EmaTracker)
    augment_rng: torch.Generator = field(default_factory=torch.Generator)
    best_val_accuracy: float = float("-inf")
    paused_seconds: float = 0.0  # time spent paused in the current epoch
    plateau: Plateau = field(default_factory=Plateau)
    early_stop: EarlyStopping = field(default_factory=EarlyStopping)
    nonfinite: NonfiniteGuard = field(default_factory=NonfiniteGuard)
    world: World = field(default_factory=World.single)  # the processes training this run together

    @property
    def evaluated_model(self) -> nn.Module:
        """The weights validation sees: the EMA average when it is on."""
        return self.ema.module if self.ema.active else self.model

    def refresh_imbalance(self) -> None:
        self.imbalance = imbalance_for(self.config, self.data.class_names, self.data.train_labels)


class SetupError(ValueError):
    """The run cannot start: its data or model cannot be loaded as configured."""


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_state(config: TrainConfig, world: World | None = None) -> TrainingState:
    """Data, model and optimizer for ``config``, seeded so the same config starts the same.

    In a data-parallel job (``world``) every rank starts from rank 0's weights,
    and dropout and augmentation draw differently on each rank, as each sees
    different samples.
    """
    world = world or World.single()
    torch.manual_seed(config.seed)
    device = world.device() if world.distributed else pick_device()
    try:
        data = load_data(config)
    except ValueError as exc:  # DataError and friends: say what is wrong, not where in the code
        raise SetupError(f"data: {exc}") from exc
    try:
        model = build_model(config, data).to(device)
    except ValueError as exc:
        raise SetupError(f"model: {exc}") from exc
    freeze = apply_freeze(model, config)
    state = TrainingState(
        config=config,
        model=model,
        optimizer=build_optimizer(config, model),
        data=data,
        device=device,
        batch_size=config.batch_size,
        imbalance=imbalance_for(config, data.class_names, data.train_labels),
        precision=Precision.from_config(config, device),
        freeze=freeze,
        world=world,
    )
    state.augment_rng.manual_seed(config.seed + 1 + world.rank)
    if world.distributed:
        world.share_parameters(model)
        torch.manual_seed(config.seed + world.rank)  # the init above is the same everywhere; the draws from here are not
    if config.model_ema:
        state.ema.start(model, config.model_ema_decay)
    return state
