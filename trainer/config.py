"""The training config: every knob, its default, its bounds, and whether it may
change while the run is going (a *hot* key) or is fixed for the run's life.

Key names follow seed 003's config (``learning_rate``, ``batch_size``, ...).
Overrides are strict: an unknown key or a wrong type is an error, never ignored.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

EPOCH = "next epoch"  # most hot keys apply at the next epoch boundary
STEP = "next epoch, then every step"  # schedule keys: read at every step once applied


def hot(applies: str = EPOCH) -> dict[str, Any]:
    return {"hot": True, "applies": applies}


FROZEN = {"hot": False, "applies": "fixed for the run (start a new run to change it)"}


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)

    # --- what is trained on what: fixed, a checkpoint only fits its own model
    model_name: str = Field("mlp", min_length=1, json_schema_extra=FROZEN,
                            description="'mlp' (seed 001) or any timm model name")
    dataset: Literal["digits"] = Field("digits", json_schema_extra=FROZEN,
                                       description="built-in scikit-learn digits (8x8 grey, 10 classes)")
    img_size: int = Field(8, ge=8, le=1024, json_schema_extra=FROZEN,
                          description="images are resized to img_size x img_size; digits are 8x8 natively")
    hidden_size: int = Field(128, ge=1, le=65536, json_schema_extra=FROZEN,
                             description="width of the mlp's hidden layer (seed 001: Dense 128)")
    val_split: float = Field(0.2, gt=0.0, lt=1.0, json_schema_extra=FROZEN,
                             description="share of the data held out for validation, stratified")
    seed: int = Field(42, ge=0, json_schema_extra=FROZEN, description="seeds the split, the init and shuffling")

    # --- hot: applied at the next epoch boundary
    num_epochs: int = Field(20, ge=1, le=100_000, json_schema_extra=hot(),
                            description="total epochs; lower it to finish early, raise it to train longer")
    batch_size: int = Field(32, ge=1, le=65_536, json_schema_extra=hot(),
                            description="samples per step; the training loader is rebuilt")
    learning_rate: float = Field(1e-3, gt=0.0, le=10.0, json_schema_extra=hot(),
                                 description="set on every optimizer param group")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, json_schema_extra=hot(),
                                description="L2 penalty, set on every optimizer param group")
    optimizer: Literal["Adam", "AdamW", "SGD"] = Field(
        "Adam", json_schema_extra=hot(), description="the optimizer class; a switch starts its state afresh")
    beta1: float = Field(0.9, ge=0.0, lt=1.0, json_schema_extra=hot(), description="Adam/AdamW first-moment decay")
    beta2: float = Field(0.999, ge=0.0, lt=1.0, json_schema_extra=hot(),
                         description="Adam/AdamW second-moment decay")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, json_schema_extra=hot(), description="SGD momentum")
    nesterov: bool = Field(False, json_schema_extra=hot(), description="SGD: Nesterov momentum (needs momentum > 0)")
    dropout_rate: float = Field(0.2, ge=0.0, lt=1.0, json_schema_extra=hot(),
                                description="drop probability of every dropout layer (seed 001: 0.2)")
    label_smoothing_enabled: bool = Field(False, json_schema_extra=hot(),
                                          description="soften the training targets (validation loss stays plain)")
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0, json_schema_extra=hot(),
                                   description="share of the target mass spread over all classes (seed 003: 0.1)")
    gradient_clipping: bool = Field(False, json_schema_extra=hot(),
                                    description="clip the gradients' global norm before each optimizer step")
    gradient_clipping_value: float = Field(1.0, gt=0.0, le=1e6, json_schema_extra=hot(),
                                           description="the largest global gradient norm allowed")
    gradient_accumulation_enabled: bool = Field(False, json_schema_extra=hot(),
                                                description="sum gradients over several batches per step")
    gradient_accumulation_steps: int = Field(4, ge=1, le=1024, json_schema_extra=hot(),
                                             description="batches per optimizer step (effective batch = "
                                                         "batch_size x this)")
    early_stopping: bool = Field(False, json_schema_extra=hot(),
                                 description="stop when the val loss stops improving; restore the best weights")
    early_stopping_patience: int = Field(10, ge=1, le=100_000, json_schema_extra=hot(),
                                         description="epochs without a better val loss before stopping "
                                                     "(seed 003: 10)")

    # --- hot: the learning-rate schedule, a function of progress, from the next step
    lr_scheduler: Literal["none", "StepLR", "cosine", "ReduceLROnPlateau"] = Field(
        "none", json_schema_extra=hot(STEP), description="how the lr moves after warmup; none keeps it constant")
    lr_step_size: int = Field(10, ge=1, le=100_000, json_schema_extra=hot(STEP),
                              description="StepLR: epochs between decays")
    lr_gamma: float = Field(0.1, gt=0.0, le=1.0, json_schema_extra=hot(STEP),
                            description="StepLR: factor applied at each decay")
    plateau_patience: int = Field(3, ge=0, le=1000, json_schema_extra=hot(STEP),
                                  description="ReduceLROnPlateau: epochs without a better val loss before a cut")
    plateau_factor: float = Field(0.5, gt=0.0, lt=1.0, json_schema_extra=hot(STEP),
                                  description="ReduceLROnPlateau: factor applied at each cut")
    warmup_enabled: bool = Field(False, json_schema_extra=hot(STEP),
                                 description="ramp the lr up linearly from ~0 at the start")
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0, json_schema_extra=hot(STEP),
                                description="warmup length as a share of num_epochs (seed 003: 0.05)")
    warmup_steps: int = Field(0, ge=0, le=10_000_000, json_schema_extra=hot(STEP),
                              description="warmup length in optimizer steps; 0 uses warmup_ratio")
    warmup_method: Literal["linear"] = Field("linear", json_schema_extra=hot(STEP),
                                             description="shape of the warmup ramp")
    min_lr_enabled: bool = Field(False, json_schema_extra=hot(STEP),
                                 description="keep the lr at or above min_lr (cosine decays to it)")
    min_lr: float = Field(1e-6, ge=0.0, le=10.0, json_schema_extra=hot(STEP),
                          description="the lr floor when min_lr_enabled (seed 003: 1e-6)")


    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> "TrainConfig":
        if self.nesterov and self.optimizer == "SGD" and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0 with SGD")
        return self


CONTROLS = ("run", "pause", "stop")  # the live file's "control" key; applies at the next step


class ConfigError(ValueError):
    """A config that cannot be used; ``problems`` lists each reason."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def field_info(key: str) -> dict[str, Any]:
    return TrainConfig.model_fields[key].json_schema_extra or {}


def hot_keys() -> list[str]:
    return [k for k in TrainConfig.model_fields if field_info(k).get("hot")]


def frozen_keys() -> list[str]:
    return [k for k in TrainConfig.model_fields if not field_info(k).get("hot")]


_BOUND_SYMBOLS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def key_bounds(key: str) -> dict[str, Any]:
    """The numeric bounds of ``key`` as ``{"ge"|"gt"|"le"|"lt": value}``."""
    found = {}
    for constraint in TrainConfig.model_fields[key].metadata:
        for name in _BOUND_SYMBOLS:
            if getattr(constraint, name, None) is not None:
                found[name] = getattr(constraint, name)
    return found


def describe_keys() -> list[dict[str, Any]]:
    """One row per key: default, bounds, hot or not, when it applies, what it does."""
    rows = []
    for key, field in TrainConfig.model_fields.items():
        bounds = " and ".join(f"{_BOUND_SYMBOLS[k]} {v}" for k, v in key_bounds(key).items())
        rows.append(
            {
                "key": key,
                "default": field.default,
                "bounds": bounds,
                "hot": bool(field_info(key).get("hot")),
                "applies": field_info(key).get("applies", ""),
                "description": field.description or "",
            }
        )
    return rows


def _unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, TrainConfig.model_fields, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{key}: unknown key{hint}"


def _problem(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(config)"
    if error["type"] == "extra_forbidden":
        return _unknown_key_message(key)
    message = error["msg"][:1].lower() + error["msg"][1:]
    return f"{key}: {message} (got {error.get('input')!r})"


def validate_config(data: Mapping[str, Any]) -> TrainConfig:
    """A ``TrainConfig`` from plain data, or ``ConfigError`` naming every problem."""
    if not isinstance(data, Mapping):
        raise ConfigError([f"the config must be a JSON object, not {type(data).__name__}"])
    try:
        return TrainConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError([_problem(e) for e in exc.errors()]) from None


def frozen_violations(current: TrainConfig, values: Mapping[str, Any]) -> list[str]:
    """Messages for fixed keys whose value in ``values`` differs from the run's."""
    return [
        f"{key}: fixed for the life of the run (it is {getattr(current, key)!r}, the edit asks for "
        f"{values[key]!r}); start a new run to change it"
        for key in frozen_keys()
        if key in values and values[key] != getattr(current, key)
    ]
