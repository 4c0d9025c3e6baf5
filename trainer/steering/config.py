"""The training config: every knob, its default, its bounds, and whether it may
change while the run is going (a *hot* key) or is fixed for the run's life.

Key names follow seed 003's config (``learning_rate``, ``batch_size``, ...).
Overrides are strict: an unknown key or a wrong type is an error, never ignored.
"""

from __future__ import annotations

import difflib
from typing import Any, Collection, Iterable, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

EPOCH = "next epoch"  # most hot keys apply at the next epoch boundary
STEP = "next epoch, then every step"  # schedule keys: read at every step once applied


def hot(applies: str = EPOCH) -> dict[str, Any]:
    return {"hot": True, "applies": applies}


FROZEN = {"hot": False, "applies": "fixed for the run (start a new run to change it)"}
COMPAT = {"hot": False, "applies": "accepted from seed 003's config; fixed for the run"}
# A hot key that a run's own training loop does not read (see ``steerable_keys``).
UNSTEERED_APPLIES = "fixed for this run: its training loop does not read it"


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)

    # --- what is trained on what: fixed, a checkpoint only fits its own model and data
    model_name: str = Field("mlp", min_length=1, json_schema_extra=FROZEN,
                            description="'mlp' (seed 001), 'text_embedding_bag' (seed 004), any timm model "
                                        "name, or a Keras-style alias such as MobileNetV3 or EfficientNetB0")
    dataset: Literal["auto", "digits", "image_folder", "mnist", "text_csv", "imdb_npz"] = Field(
        "auto", json_schema_extra=FROZEN,
        description="auto: built-in digits when data_dir is empty, else detected from what data_dir holds")
    data_dir: str = Field("", json_schema_extra=FROZEN,
                          description="class folders, MNIST IDX files, a text CSV or an IMDB .npz; "
                                      "Windows paths are accepted")
    img_size: int = Field(0, ge=0, le=1024, json_schema_extra=FROZEN,
                          description="images are resized to img_size x img_size; 0 = the data set's own "
                                      "(digits 8, MNIST 28, class folders 224)")
    val_split: float = Field(0.2, gt=0.0, lt=1.0, json_schema_extra=FROZEN,
                             description="share of the data held out for validation, stratified")
    seed: int = Field(42, ge=0, json_schema_extra=FROZEN, description="seeds the split, the init and shuffling")
    use_pretrained: bool = Field(False, json_schema_extra=FROZEN,
                                 description="timm models: start from pretrained weights (the hub, or "
                                             "pretrained_path when set)")
    pretrained_path: str = Field("", json_schema_extra=FROZEN,
                                 description="a local .pth/.pt/.safetensors file of weights to start from")
    head: Literal["default", "seed002"] = Field(
        "default", json_schema_extra=FROZEN,
        description="timm models: the model's own classifier, or seed 002's pooling -> Dense hidden_size "
                    "ReLU -> Dropout -> BatchNorm -> Dense classes")
    hidden_size: int = Field(128, ge=1, le=65536, json_schema_extra=FROZEN,
                             description="width of the mlp's hidden layer and of the seed002 head "
                                         "(seed 001 and 002: 128)")
    vocab_size: int = Field(10_000, ge=3, le=10_000_000, json_schema_extra=FROZEN,
                            description="text: the most frequent words kept; the rest map to one "
                                        "out-of-vocabulary index (seed 004: 10,000)")
    max_len: int = Field(256, ge=1, le=100_000, json_schema_extra=FROZEN,
                         description="text: sequences are padded or cut to this many tokens (seed 004: 256)")
    embedding_dim: int = Field(16, ge=1, le=4096, json_schema_extra=FROZEN,
                               description="text_embedding_bag: embedding and hidden width (seed 004: 16)")

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
    nonfinite_loss: Literal["skip", "stop"] = Field(
        "skip", json_schema_extra=hot(),
        description="a NaN or infinite training loss: skip: its step is not taken and learning_rate is multiplied "
                    "by nonfinite_lr_factor; stop: the run ends (failed) at once. 20 in a row stop it either way")
    nonfinite_lr_factor: float = Field(0.5, gt=0.0, lt=1.0, json_schema_extra=hot(),
                                       description="what a skipped non-finite loss multiplies learning_rate by")
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

    use_class_weights: bool = Field(False, json_schema_extra=hot(),
                                    description="counter class imbalance as weight_strategy says")
    weight_strategy: Literal["balanced", "oversample", "manual"] = Field(
        "balanced", json_schema_extra=hot(),
        description="balanced: loss weights n / (classes x n_class); oversample: draw training samples "
                    "inversely to their class size; manual: the loss weights in class_weights")
    class_weights: dict[str, float] = Field(
        default_factory=dict, json_schema_extra=hot(),
        description="manual loss weight per class name; classes left out weigh 1.0")
    use_augmentation: bool = Field(False, json_schema_extra=hot(),
                                   description="images: seed 002's random rotation, flips, shifts, zoom and "
                                               "brightness on each training batch")
    advanced_augmentation_enabled: bool = Field(False, json_schema_extra=hot(),
                                                description="images: mix pairs of training samples "
                                                            "(cutmix or mixup) with soft targets")
    cutmix_prob: float = Field(0.5, ge=0.0, le=1.0, json_schema_extra=hot(),
                               description="share of mixed batches that use cutmix; the rest use mixup")
    mixup_alpha: float = Field(0.2, gt=0.0, le=10.0, json_schema_extra=hot(),
                               description="mixing ratios are drawn from Beta(mixup_alpha, mixup_alpha)")
    mixed_precision: bool = Field(False, json_schema_extra=hot(),
                                  description="autocast: fp16 with loss scaling on CUDA, bf16 on CPU")
    loss_scaling_enabled: bool = Field(True, json_schema_extra=hot(),
                                       description="fp16 on CUDA: scale the loss so small gradients survive")
    loss_scale: Literal["dynamic", "static"] = Field(
        "dynamic", json_schema_extra=hot(),
        description="dynamic: grow and back off the scale; static: keep static_loss_scale")
    static_loss_scale: float = Field(128.0, gt=0.0, le=2.0**24, json_schema_extra=hot(),
                                     description="the loss scale when loss_scale is static")
    model_ema: bool = Field(False, json_schema_extra=hot(),
                            description="keep an exponential moving average of the weights and "
                                        "evaluate and checkpoint it")
    model_ema_decay: float = Field(0.9999, ge=0.0, lt=1.0, json_schema_extra=hot(),
                                   description="EMA decay per optimizer step (with timm's warmup, so short "
                                               "runs still move)")
    freeze_backbone: bool = Field(False, json_schema_extra=hot(),
                                  description="train only the classifier head (seed 002's first phase)")
    fine_tune_at: int = Field(0, ge=0, le=100_000, json_schema_extra=hot(),
                              description="when the backbone is not frozen: keep its layer groups before "
                                          "this index frozen (seed 002: 100); 0 trains all")

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
    warmup_method: Literal["linear", "cosine"] = Field(
        "linear", json_schema_extra=hot(STEP),
        description="shape of the warmup ramp: a straight line, or half a cosine (slower at first)")
    min_lr_enabled: bool = Field(False, json_schema_extra=hot(STEP),
                                 description="keep the lr at or above min_lr (cosine decays to it)")
    min_lr: float = Field(1e-6, ge=0.0, le=10.0, json_schema_extra=hot(STEP),
                          description="the lr floor when min_lr_enabled (seed 003: 1e-6)")

    # --- hot: the autopilot, which asks the advisor and applies what passes its limits
    autopilot: bool = Field(False, json_schema_extra=hot(),
                            description="every autopilot_every epochs, ask the advisor and apply its valid "
                                        "suggestions within the limits below; each step is audited")
    autopilot_every: int = Field(5, ge=1, le=100_000, json_schema_extra=hot(),
                                 description="epochs between two autopilot steps")
    autopilot_max_changes: int = Field(10, ge=0, le=10_000, json_schema_extra=hot(),
                                       description="the most key changes the autopilot makes in the whole run")
    autopilot_max_lr_factor: float = Field(10.0, ge=1.0, le=1000.0, json_schema_extra=hot(),
                                           description="an autopilot step changes learning_rate and min_lr by "
                                                       "at most this factor, up or down")
    autopilot_advisor: Literal["auto", "rules"] = Field(
        "auto", json_schema_extra=hot(),
        description="auto: Claude when ANTHROPIC_API_KEY is set in the trainer's environment, else the "
                    "offline rules; rules: always the offline rules")


    # --- seed 003's bookkeeping keys: accepted so its config files load as they are
    model_save_dir: str = Field("", json_schema_extra=COMPAT,
                                description="not used: checkpoints go to runs/<run_id>/checkpoints")
    default_param_save_dir: str = Field("", json_schema_extra=COMPAT,
                                        description="not used: configs live in runs/<run_id>/config.json")
    tensorboard_log_dir: str = Field("", json_schema_extra=COMPAT,
                                     description="not used: metrics go to runs/tiller.db")
    use_tensorboard: bool = Field(False, json_schema_extra=COMPAT, description="not used: Tiller is the dashboard")
    task_type: Literal["classification"] = Field("classification", json_schema_extra=COMPAT,
                                                 description="the only task Tiller trains")
    metrics: list[str] = Field(default_factory=lambda: ["accuracy"], json_schema_extra=COMPAT,
                               description="not used: loss and accuracy are always logged")
    model_note: str = Field("", json_schema_extra=COMPAT, description="free text kept with the config")
    activation_function: str = Field("None", json_schema_extra=COMPAT,
                                     description="not used: each model keeps its own activations")
    model_filename: str = Field("", json_schema_extra=COMPAT, description="not used: runs are named by id")
    timestamp: str = Field("", json_schema_extra=COMPAT, description="not used: runs record their own times")


    @field_validator("class_weights")
    @classmethod
    def _weights_are_positive(cls, weights: dict[str, float]) -> dict[str, float]:
        bad = [name for name, weight in weights.items() if not 0.0 < weight <= 1000.0]
        if bad:
            raise ValueError(f"each class weight must be > 0 and <= 1000; not so for {bad}")
        return weights

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


def autopilot_keys() -> list[str]:
    """The autopilot's own settings: the user's limits, which no advisor may change."""
    return [k for k in TrainConfig.model_fields if k.startswith("autopilot")]


def frozen_keys() -> list[str]:
    return [k for k in TrainConfig.model_fields if not field_info(k).get("hot")]


def check_run_hot_keys(keys: Iterable[str]) -> list[str]:
    """The hot keys a run's own training loop declares it reads, checked; in field order.

    ``ConfigError`` names each unknown key and each key that is fixed for every
    run: a loop may steer fewer keys than Tiller's trainer, never other ones.
    """
    if isinstance(keys, (str, bytes)):  # "learning_rate" alone would be read as its letters
        raise ConfigError([f"the run's hot keys must be a list of key names, not the string {keys!r}"])
    keys = list(dict.fromkeys(keys))
    problems = []
    for key in keys:
        if key not in TrainConfig.model_fields:
            problems.append(unknown_key_message(str(key)))
        elif not field_info(key).get("hot"):
            problems.append(f"{key}: fixed for every run ({field_info(key).get('applies', 'not hot')}), "
                            "so no training loop may steer it")
    if problems:
        raise ConfigError(problems)
    return steerable_keys(keys)


def steerable_keys(run_hot_keys: Collection[str] | None) -> list[str]:
    """The keys a run may change mid-run: every hot key (``None``) or the run's own list, in field order."""
    if run_hot_keys is None:
        return hot_keys()
    wanted = set(run_hot_keys)
    return [key for key in TrainConfig.model_fields if key in wanted]


_BOUND_SYMBOLS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def key_bounds(key: str) -> dict[str, Any]:
    """The numeric bounds of ``key`` as ``{"ge"|"gt"|"le"|"lt": value}``."""
    found = {}
    for constraint in TrainConfig.model_fields[key].metadata:
        for name in _BOUND_SYMBOLS:
            if getattr(constraint, name, None) is not None:
                found[name] = getattr(constraint, name)
    return found


def describe_keys(run_hot_keys: Collection[str] | None = None) -> list[dict[str, Any]]:
    """One row per key: default, bounds, hot or not, when it applies, what it does.

    With a run's own list of hot keys, ``hot`` says whether *that run* may change
    the key, and a hot key its loop does not read applies as fixed.
    """
    steerable = set(steerable_keys(run_hot_keys))
    rows = []
    for key, field in TrainConfig.model_fields.items():
        bounds = " and ".join(f"{_BOUND_SYMBOLS[k]} {v}" for k, v in key_bounds(key).items())
        rows.append(
            {
                "key": key,
                "default": field.get_default(call_default_factory=True),
                "bounds": bounds,
                "hot": key in steerable,
                "applies": field_info(key).get("applies", "") if key in steerable or not field_info(key).get("hot")
                else UNSTEERED_APPLIES,
                "description": field.description or "",
            }
        )
    return rows


def unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, TrainConfig.model_fields, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{key}: unknown key{hint}"


def _problem(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(config)"
    if error["type"] == "extra_forbidden":
        return unknown_key_message(key)
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


def frozen_violations(current: TrainConfig, values: Mapping[str, Any],
                      hot_keys: Collection[str] | None = None) -> list[str]:
    """Messages for fixed keys whose value in ``values`` differs from the run's.

    ``hot_keys`` is the run's own list of the hot keys its loop reads (``None``:
    all of them); a hot key outside it is fixed for this run.
    """
    steerable = steerable_keys(hot_keys)
    problems = []
    for key in TrainConfig.model_fields:
        if key in steerable or key not in values or values[key] == getattr(current, key):
            continue
        if field_info(key).get("hot"):
            problems.append(unsteered_key_message(key, getattr(current, key), steerable))
        else:
            problems.append(f"{key}: fixed for the life of the run (it is {getattr(current, key)!r}, the edit "
                            f"asks for {values[key]!r}); start a new run to change it")
    return problems


def unsteered_key_message(key: str, value: Any, steerable: Collection[str]) -> str:
    """Why a hot key outside the run's own list may not change: a change would be recorded, yet do nothing."""
    steers = ", ".join(steerable) if steerable else "no key"
    return (f"{key}: this run's training loop does not read it (it steers {steers}); it stays {value!r} "
            "for the life of the run")
