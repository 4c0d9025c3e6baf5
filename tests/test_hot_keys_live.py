"""Every hot key, changed in a real running trainer, takes effect.

One trainer process (the digits MLP) runs for the whole module. Each case
writes an edit to its live config file, waits until the trainer has recorded
the change and trained a whole epoch under it, then checks the run's
``state.json``: what the trainer read off its live objects after that epoch
(optimizer param groups, dropout layers, trainable parameters, the batches it
saw, the dtype its logits came out in, ...), not an echo of the config.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from tests.test_live_steering import start_and_finish_epoch_1, wait_for
from tiller.trainer.steering.config import hot_keys
from tiller.trainer.steering.live_config import request_change, request_control

TRAIN_SAMPLES = 1437  # digits: 1,797 images, 20 % held out, stratified
HEAD_PARAMS = 128 * 10 + 10  # the MLP's last Linear


@dataclass
class Case:
    edit: dict[str, Any]
    check: Callable[[dict], Any]  # asserts on state.json after the first epoch under the edit


def optimizer(state):
    return state["optimizer"]


def last(state):
    return state["last_epoch"]


CASES: dict[str, Case] = {
    "num_epochs": Case({"num_epochs": 9_000}, lambda s: s["num_epochs"] == 9_000),
    "batch_size": Case({"batch_size": 50},
                       lambda s: last(s)["largest_batch"] == 50 and last(s)["batches"] == math.ceil(TRAIN_SAMPLES / 50)),
    "learning_rate": Case({"learning_rate": 0.0042}, lambda s: last(s)["last_lr"] == pytest.approx(0.0042)),
    "weight_decay": Case({"weight_decay": 0.0123}, lambda s: optimizer(s)["weight_decay"] == 0.0123),
    "optimizer": Case({"optimizer": "AdamW"}, lambda s: optimizer(s)["class"] == "AdamW"),
    "beta1": Case({"optimizer": "Adam", "beta1": 0.81}, lambda s: optimizer(s)["betas"][0] == 0.81),
    "beta2": Case({"optimizer": "Adam", "beta2": 0.95}, lambda s: optimizer(s)["betas"][1] == 0.95),
    "momentum": Case({"optimizer": "SGD", "momentum": 0.77, "learning_rate": 0.01},
                     lambda s: optimizer(s)["class"] == "SGD" and optimizer(s)["momentum"] == 0.77),
    "nesterov": Case({"optimizer": "SGD", "momentum": 0.8, "nesterov": True},
                     lambda s: optimizer(s)["nesterov"] is True),
    "dropout_rate": Case({"optimizer": "Adam", "learning_rate": 0.001, "dropout_rate": 0.35},
                         lambda s: s["dropout"] == [0.35]),
    "label_smoothing_enabled": Case({"label_smoothing_enabled": True},
                                    lambda s: last(s)["label_smoothing"] == 0.1),
    "label_smoothing": Case({"label_smoothing": 0.25}, lambda s: last(s)["label_smoothing"] == 0.25),
    "gradient_clipping": Case({"gradient_clipping": True, "gradient_clipping_value": 0.001},
                              lambda s: 0 < last(s)["max_grad_norm_after_clip"] <= 0.001 * 1.001),
    "gradient_clipping_value": Case({"gradient_clipping_value": 0.0005},
                                    lambda s: last(s)["max_grad_norm_after_clip"] <= 0.0005 * 1.001),
    # What a non-finite loss would do, as the live guard holds it (the NaN itself: tests/test_nonfinite.py).
    "nonfinite_loss": Case({"nonfinite_loss": "stop"}, lambda s: s["nonfinite_loss"]["reaction"] == "stop"),
    "nonfinite_lr_factor": Case({"nonfinite_loss": "skip", "nonfinite_lr_factor": 0.25},
                                lambda s: s["nonfinite_loss"]["lr_factor"] == 0.25),
    "gradient_accumulation_enabled": Case(
        {"gradient_clipping": False, "batch_size": 32, "gradient_accumulation_enabled": True},
        lambda s: last(s)["optimizer_steps"] == math.ceil(math.ceil(TRAIN_SAMPLES / 32) / 4)),
    "gradient_accumulation_steps": Case(
        {"gradient_accumulation_steps": 7},
        lambda s: last(s)["optimizer_steps"] == math.ceil(math.ceil(TRAIN_SAMPLES / 32) / 7)),
    "use_class_weights": Case({"gradient_accumulation_enabled": False, "use_class_weights": True},
                              lambda s: len(last(s)["class_weights"]) == 10
                              and all(0.9 < w < 1.1 for w in last(s)["class_weights"])),  # digits are balanced
    "class_weights": Case({"weight_strategy": "manual", "class_weights": {"3": 2.5}},
                          lambda s: last(s)["class_weights"][3] == 2.5 and last(s)["class_weights"][0] == 1.0),
    "weight_strategy": Case({"weight_strategy": "oversample"},
                            lambda s: last(s)["sampler"] == "WeightedRandomSampler"
                            and last(s)["class_weights"] is None),
    "use_augmentation": Case({"use_class_weights": False, "use_augmentation": True},
                             lambda s: last(s)["augmented_batches"] == last(s)["batches"]
                             and last(s)["sampler"] == "RandomSampler"),
    "advanced_augmentation_enabled": Case(
        {"use_augmentation": False, "advanced_augmentation_enabled": True},
        lambda s: last(s)["augmented_batches"] == 0 and sum(last(s)["mixed_batches"].values()) >= last(s)["batches"] - 1),
    "cutmix_prob": Case({"cutmix_prob": 1.0}, lambda s: set(last(s)["mixed_batches"]) == {"cutmix"}),
    "mixup_alpha": Case({"cutmix_prob": 0.0, "mixup_alpha": 8.0},
                        lambda s: set(last(s)["mixed_batches"]) == {"mixup"} and last(s)["mix_strength"] > 0.3),
    "mixed_precision": Case({"advanced_augmentation_enabled": False, "mixed_precision": True},
                            lambda s: last(s)["compute_dtype"] in ("bfloat16", "float16")),
    # Loss scaling only acts on CUDA fp16; on a CPU the check is that the precision
    # object in force was rebuilt with the setting (and still computes in bf16).
    "loss_scaling_enabled": Case({"loss_scaling_enabled": False},
                                 lambda s: s["precision"]["loss_scaling_enabled"] is False),
    "loss_scale": Case({"loss_scaling_enabled": True, "loss_scale": "static"},
                       lambda s: s["precision"]["loss_scale"] == "static"),
    "static_loss_scale": Case({"static_loss_scale": 512.0}, lambda s: s["precision"]["static_loss_scale"] == 512.0),
    "model_ema": Case({"mixed_precision": False, "model_ema": True},
                      lambda s: s["ema"]["active"] and s["ema"]["updates"] > 0 and last(s)["compute_dtype"] == "float32"),
    "model_ema_decay": Case({"model_ema_decay": 0.5}, lambda s: s["ema"]["decay"] == 0.5),
    "freeze_backbone": Case({"model_ema": False, "freeze_backbone": True},
                            lambda s: s["trainable_params"] == HEAD_PARAMS and not s["ema"]["active"]),
    "fine_tune_at": Case({"freeze_backbone": False, "fine_tune_at": 1},
                         lambda s: s["trainable_params"] == HEAD_PARAMS),
    "lr_scheduler": Case({"fine_tune_at": 0, "lr_scheduler": "StepLR", "lr_step_size": 1, "lr_gamma": 0.5,
                          "learning_rate": 0.001},
                         lambda s: last(s)["last_lr"] == pytest.approx(0.001 * 0.5 ** (s["epoch"] - 1))),
    "lr_step_size": Case({"lr_step_size": 1000}, lambda s: last(s)["last_lr"] == pytest.approx(0.001)),
    "lr_gamma": Case({"lr_step_size": 1, "lr_gamma": 0.9},
                     lambda s: last(s)["last_lr"] == pytest.approx(0.001 * 0.9 ** (s["epoch"] - 1))),
    "min_lr_enabled": Case({"min_lr_enabled": True, "min_lr": 0.0007},
                           lambda s: last(s)["last_lr"] == pytest.approx(max(0.0007, 0.001 * 0.9 ** (s["epoch"] - 1)))),
    "min_lr": Case({"min_lr": 0.002}, lambda s: last(s)["last_lr"] == pytest.approx(0.002)),
    "warmup_enabled": Case({"min_lr_enabled": False, "lr_scheduler": "none", "warmup_enabled": True,
                            "warmup_steps": 0, "warmup_ratio": 0.5, "num_epochs": 8_000},
                           lambda s: last(s)["last_lr"] < 0.001),  # half the run is warmup
    "warmup_ratio": Case({"warmup_ratio": 0.0}, lambda s: last(s)["last_lr"] == pytest.approx(0.001)),
    "warmup_steps": Case({"warmup_steps": 10_000_000}, lambda s: last(s)["last_lr"] < 0.001 * 0.01),
    "warmup_method": Case({"warmup_method": "cosine"},  # the cosine ramp starts far below the linear one
                          lambda s: last(s)["last_lr"] < 0.001 * (s["epoch"] * 45 / 10_000_000) * 0.5),
    "plateau_patience": Case({"warmup_enabled": False, "lr_scheduler": "ReduceLROnPlateau", "plateau_patience": 0,
                              "plateau_factor": 0.5, "learning_rate": 0.5},
                             lambda s: s["plateau"]["scale"] < 1.0),  # lr 0.5 makes val loss jump about
    "plateau_factor": Case({"plateau_factor": 0.25, "learning_rate": 0.6},
                           lambda s: s["plateau"]["scale"] < 1.0 and math.log(s["plateau"]["scale"], 0.25) % 1 == 0),
    # The autopilot, with a budget of 0 so it never changes what the other cases check.
    "autopilot_max_changes": Case({"lr_scheduler": "none", "learning_rate": 0.001, "autopilot_max_changes": 0},
                                  lambda s: s["autopilot"]["max_changes"] == 0),
    "autopilot": Case({"autopilot": True, "autopilot_every": 1},
                      lambda s: s["autopilot"]["enabled"] and "budget of 0 changes is used up" in s["autopilot"]["last"]),
    "autopilot_every": Case({"autopilot_every": 3}, lambda s: s["autopilot"]["every"] == 3),
    "autopilot_max_lr_factor": Case({"autopilot_max_lr_factor": 2.0}, lambda s: s["autopilot"]["max_lr_factor"] == 2.0),
    "autopilot_advisor": Case({"autopilot_advisor": "rules"}, lambda s: s["autopilot"]["advisor"] == "rules"),
    # The run's last edit: it ends the run early, so these two come last.
    "early_stopping": Case({"autopilot": False, "lr_scheduler": "none", "learning_rate": 5.0, "early_stopping": True,
                            "early_stopping_patience": 2}, lambda s: True),
    "early_stopping_patience": Case({}, lambda s: True),
}


def test_every_hot_key_has_a_live_case():
    assert set(CASES) == set(hot_keys())


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("hot") / "runs"
    proc, store, run_id, config_path = start_and_finish_epoch_1(runs_dir, "num_epochs=10000", "batch_size=32")
    yield proc, store, run_id, config_path
    if proc.poll() is None:
        request_control(config_path, "stop")
        proc.wait(timeout=60)


def read_state(config_path) -> dict:
    try:
        return json.loads((config_path.parent / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def apply_edit(trainer, key: str, edit: dict) -> int:
    """Send ``edit``; returns the epoch it was applied at."""
    proc, store, run_id, config_path = trainer
    versions = len(store.config_versions(run_id))
    request_change(config_path, edit, source="cli", reason=f"live test of {key}")
    wait_for(lambda: len(store.config_versions(run_id)) > versions, f"the {key} edit is applied", proc)
    return int(store.config_versions(run_id)["epoch"].iloc[-1])


def state_passing(trainer, applied_at: int, check, within_epochs: int = 8) -> dict | None:
    """The first state.json, from the epoch the edit was applied at on, that passes ``check``.

    Most checks pass on the first epoch; ReduceLROnPlateau needs a bad epoch first.
    """
    proc, _, _, config_path = trainer
    seen: dict = {}

    def passed():
        state = read_state(config_path)
        if state.get("epoch", 0) >= applied_at:
            seen.update(state)
            return check(state) or state["epoch"] >= applied_at + within_epochs
        return False

    wait_for(passed, f"{within_epochs} epochs after epoch {applied_at}", proc)
    return seen if check(seen) else None


@pytest.mark.parametrize("key", [k for k in CASES if not k.startswith("early_stopping")])
def test_hot_key_takes_effect_mid_run(trainer, key):
    case = CASES[key]
    applied_at = apply_edit(trainer, key, case.edit)
    state = state_passing(trainer, applied_at, case.check)
    assert state is not None, f"{key}: {json.dumps(read_state(trainer[3]), indent=1)}"


def test_early_stopping_and_patience_end_the_run_mid_run(trainer):
    proc, store, run_id, config_path = trainer
    apply_edit(trainer, "early_stopping", CASES["early_stopping"].edit)
    wait_for(lambda: proc.poll() is not None, "early stopping ends the run", proc)
    events = " ".join(store.events(run_id)["message"])
    waited = re.search(r"Early stopping after epoch \d+: no better validation loss for (\d+) epochs", events)
    assert waited and int(waited.group(1)) >= 2, events
    assert store.run(run_id)["status"] == "finished"
