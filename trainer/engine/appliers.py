"""Making an accepted config change real in the running process.

Each hot key has one applier: (training state, new value) -> what it did.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from tiller.trainer.steering.config import autopilot_keys
from tiller.trainer.engine.freeze import apply_freeze
from tiller.trainer.models.build import set_dropout
from tiller.trainer.engine.precision import Precision
from tiller.trainer.engine.optim import build_optimizer
from tiller.trainer.steering.schedule import SCHEDULE_KEYS
from tiller.trainer.engine.step import STEP_SETTINGS
from tiller.trainer.steering.review import AcceptedChange


def _param_group_setter(group_key: str, group_value: Callable[[Any, Any], Any] | None = None):
    """An applier that sets ``group_key`` in every param group that has it.

    ``group_value(state, value)`` derives what to set when it is not the key's
    own value (Adam's ``betas`` pair from ``beta1`` and ``beta2``).
    """

    def apply(state, value) -> str:
        if group_value is not None:
            value = group_value(state, value)
        groups = [g for g in state.optimizer.param_groups if group_key in g]
        for group in groups:
            group[group_key] = value
        if not groups:
            return f"{group_key} is not used by {type(state.optimizer).__name__}; kept for later"
        return f"optimizer {group_key} = {value} in {len(groups)} param group(s)"

    return apply


def _betas(state, value) -> tuple[float, float]:
    return state.config.beta1, state.config.beta2  # the config in force holds both halves


def _set_learning_rate(state, value) -> str:
    state.plateau.reset()  # a rate chosen by hand starts ReduceLROnPlateau's cuts afresh
    return f"base lr = {value:g}; the schedule sets the optimizer's lr from the next step"


def _schedule_key(state, value) -> str:
    return "the lr schedule follows it from the next step"


def _step_setting(state, value) -> str:
    return "used from the next training step"


def _switch_optimizer(state, value) -> str:
    state.optimizer = build_optimizer(state.config, state.model)
    return f"a fresh {value} over the same parameters (moment estimates start again)"


def _nonfinite_setting(state, value) -> str:
    config = state.config
    if config.nonfinite_loss == "stop":
        return "a NaN or infinite training loss now ends the run"
    return f"a NaN or infinite training loss now skips its step and multiplies learning_rate by {config.nonfinite_lr_factor:g}"


def _early_stopping_setting(state, value) -> str:
    stop = state.early_stop
    return f"checked after every epoch; the best val loss so far is from epoch {stop.best_epoch}"


def _set_batch_size(state, value) -> str:
    state.batch_size = value  # the loop builds each epoch's loader from it
    return f"training batches of {value} from now on"


def _set_dropout(state, value) -> str:
    return f"dropout p = {value:g} in {set_dropout(state.model, value)} place(s)"


def _set_num_epochs(state, value) -> str:
    return f"the run now ends after epoch {value}"


def _set_imbalance(state, value) -> str:
    state.refresh_imbalance()
    notes = "".join(f" ({note})" for note in state.imbalance.notes)
    return state.imbalance.describe(state.data.class_names) + " from the next epoch" + notes


def _image_batch_setting(state, value) -> str:
    if state.data.kind != "image":
        return "kept, but it only acts on image data (this run trains on text)"
    return "used from the next training batch"


def _set_precision(state, value) -> str:
    state.precision = Precision.from_config(state.config, state.device, previous=state.precision)
    return state.precision.describe()


def _set_ema(state, value) -> str:
    if not state.config.model_ema:
        state.ema.stop()
        return "EMA off: validation and checkpoints use the trained weights again"
    if state.ema.active:
        state.ema.set_decay(state.config.model_ema_decay)
        return f"EMA decay {state.config.model_ema_decay:g}; the average so far is kept"
    state.ema.start(state.model, state.config.model_ema_decay)
    return "EMA on, starting from the current weights; validation and checkpoints use the average"


def _set_freeze(state, value) -> str:
    state.freeze = apply_freeze(state.model, state.config)
    return state.freeze.describe() + "; the optimizer already holds every parameter"


def _autopilot_setting(state, value) -> str:
    config = state.config
    if not config.autopilot:
        return "autopilot off"
    return (f"autopilot on ({config.autopilot_advisor} advisor): a step every {config.autopilot_every} epochs, at "
            f"most {config.autopilot_max_changes} changes in the run, lr x/÷{config.autopilot_max_lr_factor:g} per step")


APPLIERS: dict[str, Callable[[Any, Any], str]] = {
    "learning_rate": _set_learning_rate,
    "weight_decay": _param_group_setter("weight_decay"),
    "momentum": _param_group_setter("momentum"),
    "nesterov": _param_group_setter("nesterov"),
    "optimizer": _switch_optimizer,
    "beta1": _param_group_setter("betas", _betas),
    "beta2": _param_group_setter("betas", _betas),
    "batch_size": _set_batch_size,
    "dropout_rate": _set_dropout,
    "num_epochs": _set_num_epochs,
    **{key: _schedule_key for key in SCHEDULE_KEYS},
    **{key: _step_setting for key in STEP_SETTINGS},
    "early_stopping": _early_stopping_setting,
    "nonfinite_loss": _nonfinite_setting,
    "nonfinite_lr_factor": _nonfinite_setting,
    **{key: _set_imbalance for key in ("use_class_weights", "weight_strategy", "class_weights")},
    **{key: _image_batch_setting for key in ("use_augmentation", "advanced_augmentation_enabled",
                                             "cutmix_prob", "mixup_alpha")},
    **{key: _set_precision for key in ("mixed_precision", "loss_scaling_enabled", "loss_scale",
                                       "static_loss_scale")},
    "model_ema": _set_ema,
    "model_ema_decay": _set_ema,
    "freeze_backbone": _set_freeze,
    "fine_tune_at": _set_freeze,
    "early_stopping_patience": _early_stopping_setting,
    **{key: _autopilot_setting for key in autopilot_keys()},  # read by the loop's autopilot after each epoch
}


@torch.no_grad()
def apply_change(state, change: AcceptedChange) -> list[str]:
    """Apply every changed key to the running ``state``; returns what was done."""
    state.config = change.config  # first: some appliers read sibling keys (beta1 with beta2)
    return [f"{key}: {APPLIERS[key](state, new)}" for key, (_, new) in change.diff.items()]
