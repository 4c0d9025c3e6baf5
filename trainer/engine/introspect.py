"""What is in force in the running process, read off the live objects.

Written after every epoch to ``runs/<run_id>/state.json``, so a person (or a
test) can check that an edit did what it says: the optimizer's real param
groups, the dropout probabilities in the model's layers, the parameters that
train, the EMA's decay, what the last epoch's batches looked like.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch.nn as nn

from tiller.trainer.engine.epoch import EpochObservations
from tiller.trainer.steering.live_config import STATE_FILENAME, write_atomic
from tiller.trainer.engine.state import TrainingState

GROUP_KEYS = ("lr", "weight_decay", "betas", "momentum", "nesterov")


def dropout_rates(model: nn.Module) -> list[float]:
    """The rates of the layers ``dropout_rate`` controls, read off the layers themselves."""
    rates = set()
    for name in model.dropout_sites:
        module = model.get_submodule(name)
        rates.add(module.p if isinstance(module, nn.Dropout) else module.drop_rate)
    return sorted(rates)


def optimizer_settings(optimizer) -> dict:
    group = optimizer.param_groups[0]
    settings = {key: group[key] for key in GROUP_KEYS if key in group}
    if "betas" in settings:
        settings["betas"] = list(settings["betas"])
    return {"class": type(optimizer).__name__, **settings,
            "params": sum(len(g["params"]) for g in optimizer.param_groups)}


def precision_settings(state: TrainingState) -> dict:
    precision, config = state.precision, state.config
    return {
        "in_force": precision.describe(),
        "autocast_dtype": None if precision.dtype is None else str(precision.dtype).removeprefix("torch."),
        "scaler": precision.loss_scaling,  # None off CUDA fp16: then the three keys below wait for a GPU
        "loss_scaling_enabled": config.loss_scaling_enabled,
        "loss_scale": config.loss_scale,
        "static_loss_scale": config.static_loss_scale,
    }


def ema_settings(ema) -> dict:
    if not ema.active:
        return {"active": False}
    return {"active": True, "decay": ema.decay, "updates": ema.steps}


def effective_settings(state: TrainingState, epoch: int, seen: EpochObservations) -> dict:
    model, stop = state.model, state.early_stop
    return {
        "epoch": epoch,
        "num_epochs": state.config.num_epochs,
        "optimizer": optimizer_settings(state.optimizer),
        "batch_size": state.batch_size,
        "last_epoch": seen.summary(),
        "imbalance": state.imbalance.describe(state.data.class_names),
        "dropout": dropout_rates(model),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "freeze": state.freeze.describe(),
        "precision": precision_settings(state),
        "ema": ema_settings(state.ema),
        "plateau": {"scale": state.plateau.scale, "bad_epochs": state.plateau.bad_epochs},
        "early_stopping": {"enabled": state.config.early_stopping,
                           "patience": state.config.early_stopping_patience,
                           "best_epoch": stop.best_epoch},
        "nonfinite_loss": state.nonfinite.describe(state.config),
        "processes": {"count": state.world.size, "backend": state.world.backend or "none",
                      "batch_size_is": "per process" if state.world.distributed else "the whole batch"},
    }


def write_state(run_dir: Path, settings: dict) -> None:
    write_atomic(run_dir / STATE_FILENAME, json.dumps(settings, indent=2, ensure_ascii=False) + "\n")
