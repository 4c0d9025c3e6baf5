"""One epoch of training and one pass of validation, with what was observed.

The observations (batch sizes, optimizer steps, mixed batches, the dtype the
model computed in, ...) are read off the real objects during the epoch, so the
run's ``state.json`` shows what was actually in force, not what was asked for.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch

from tiller.trainer.engine.augment import augment_batch
from tiller.trainer.data import train_loader, val_loader
from tiller.trainer.engine.freeze import train_mode
from tiller.trainer.engine.mixing import mix_batch
from tiller.trainer.steering.schedule import lr_at
from tiller.trainer.engine.state import TrainingState
from tiller.trainer.engine.step import (
    batches_per_step,
    clip_gradients,
    ends_step,
    gradient_norm,
    optimizer_steps_in,
    predicted_classes,
    probabilities,
    training_loss,
    validation_loss_sum,
)


@dataclass
class EpochObservations:
    batches: int = 0
    optimizer_steps: int = 0
    largest_batch: int = 0
    sampler: str = ""
    augmented_batches: int = 0
    mixed_batches: Counter = field(default_factory=Counter)  # mixup / cutmix
    compute_dtype: str = ""  # the logits' dtype: float32, or bfloat16/float16 under autocast
    label_smoothing: float = 0.0
    class_weights: list[float] | None = None
    grad_norms: list[float] = field(default_factory=list)  # before clipping
    max_norm_after_clip: float = 0.0  # measured again after clipping, when it is on
    mix_ratios: list[float] = field(default_factory=list)  # min(lam, 1 - lam) of each mixed batch
    clip_limit: float | None = None
    last_lr: float = 0.0
    nonfinite_batches: int = 0  # batches whose loss was NaN or inf: no step taken

    def summary(self) -> dict:
        return {
            "batches": self.batches,
            "optimizer_steps": self.optimizer_steps,
            "largest_batch": self.largest_batch,
            "sampler": self.sampler,
            "augmented_batches": self.augmented_batches,
            "mixed_batches": dict(self.mixed_batches),
            "compute_dtype": self.compute_dtype,
            "label_smoothing": self.label_smoothing,
            "class_weights": self.class_weights,
            "clip_limit": self.clip_limit,
            "max_grad_norm": max(self.grad_norms, default=0.0),
            "max_grad_norm_after_clip": self.max_norm_after_clip,
            "mix_strength": sum(self.mix_ratios) / len(self.mix_ratios) if self.mix_ratios else 0.0,
            "last_lr": self.last_lr,
            "nonfinite_batches": self.nonfinite_batches,
        }


StepHook = Callable[[int], None]  # called with the batch index before each batch (pause/stop)
NonfiniteHook = Callable[[int, float], None]  # (batch index, loss) of a batch whose loss was NaN or inf
StartHook = Callable[[int], None]  # called once with the epoch's number of batches (progress display)


def train_one_epoch(state: TrainingState, epoch: int, before_batch: StepHook,
                    on_nonfinite: NonfiniteHook | None = None,
                    on_start: StartHook | None = None) -> tuple[dict, EpochObservations]:
    """One epoch; a batch with a non-finite loss takes no step and goes to ``on_nonfinite`` (which may raise)."""
    # Edits apply between epochs, so the config is the same for every batch of this one.
    config, loss_sum, correct, seen = state.config, 0.0, 0, 0
    observed = EpochObservations()
    train_mode(state.model)
    began = time.perf_counter()
    world = state.world
    loader = train_loader(state.data, state.batch_size, config.seed, epoch, oversample=state.imbalance.oversample,
                          shard=(world.rank, world.size))
    batches = len(loader)
    if on_start is not None:
        on_start(batches)
    observed.sampler = type(loader.sampler).__name__
    weights = None if state.imbalance.loss_weights is None else state.imbalance.loss_weights.to(state.device)
    state.optimizer.zero_grad(set_to_none=True)
    for index, (inputs, targets) in enumerate(loader):
        before_batch(index)
        inputs, targets = inputs.to(state.device), targets.to(state.device)
        inputs, soft_targets = prepare_batch(state, inputs, targets, observed)
        with state.precision.autocast():
            logits = state.model(inputs)
        loss = training_loss(logits, targets, config, class_weights=weights, soft_targets=soft_targets)
        value = loss.item()
        if not world.all_finite(value):  # on any rank: all skip the batch, or their steps would differ
            # Its gradients would be NaN and the step would put NaN into every weight:
            # drop them, with what this step had accumulated, and take no step.
            state.optimizer.zero_grad(set_to_none=True)
            observed.nonfinite_batches += 1
            if on_nonfinite is not None:
                on_nonfinite(index, value)
            continue
        state.nonfinite.finite()
        state.precision.backward(loss / batches_per_step(config))  # accumulated gradients average
        if ends_step(index, batches, config):
            optimizer_step(state, epoch - 1 + index / batches, optimizer_steps_in(batches, config), observed)
        loss_sum += value * len(targets)
        correct += (predicted_classes(logits) == targets).sum().item()
        seen += len(targets)
        observed.batches += 1
        observed.largest_batch = max(observed.largest_batch, len(targets))
        observed.compute_dtype = str(logits.dtype).removeprefix("torch.")
    world.share_buffers(state.model)  # batch-norm statistics: rank 0's, as DistributedDataParallel keeps them
    if state.ema.active:
        world.share_buffers(state.ema.module)
    loss_sum, correct, seen = world.sum(loss_sum, correct, seen)  # the whole job's epoch
    observed.label_smoothing = config.label_smoothing if config.label_smoothing_enabled else 0.0
    observed.class_weights = None if weights is None else [round(w, 6) for w in weights.tolist()]
    observed.clip_limit = config.gradient_clipping_value if config.gradient_clipping else None
    seconds = time.perf_counter() - began - state.paused_seconds
    nothing = float("nan")  # every batch skipped: no number is honest
    metrics = {
        "train/loss": loss_sum / seen if seen else nothing,
        "train/accuracy": correct / seen if seen else nothing,
        "train/grad_norm": sum(observed.grad_norms) / len(observed.grad_norms) if observed.grad_norms else nothing,
        "samples_per_sec": seen / max(seconds, 1e-9),  # samples the job trained on: skipped batches do not count
    }
    return metrics, observed


def prepare_batch(state: TrainingState, inputs, targets, observed: EpochObservations):
    """Augment and mix an image batch as the config in force asks; text passes through."""
    config = state.config
    if state.data.kind != "image":
        return inputs, None
    if config.use_augmentation:
        inputs = augment_batch(inputs, state.augment_rng)
        observed.augmented_batches += 1
    if config.advanced_augmentation_enabled:
        mixed = mix_batch(inputs, targets, state.data.num_classes, config, state.augment_rng)
        if mixed.kind != "none":
            observed.mixed_batches[mixed.kind] += 1
            observed.mix_ratios.append(min(mixed.lam, 1 - mixed.lam))
            return mixed.inputs, mixed.soft_targets
    return inputs, None


def optimizer_step(state: TrainingState, progress: float, steps_per_epoch: int, observed: EpochObservations) -> None:
    """lr from the schedule, unscale, clip, step, average: one optimizer step."""
    lr = lr_at(progress, state.config, steps_per_epoch, state.plateau)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    state.world.average_gradients(state.model)  # data parallel: every rank steps with the job's mean gradient
    state.precision.unscale_(state.optimizer)  # clipping must see true gradient sizes
    observed.grad_norms.append(clip_gradients(state.model, state.config))
    if state.config.gradient_clipping:
        observed.max_norm_after_clip = max(observed.max_norm_after_clip, gradient_norm(state.model))
    state.precision.step(state.optimizer)
    state.optimizer.zero_grad(set_to_none=True)
    if state.ema.active:
        state.ema.update(state.model)
    observed.optimizer_steps += 1
    observed.last_lr = lr


@dataclass
class Validation:
    metrics: dict[str, float]
    probs: torch.Tensor  # (samples, classes), in val-sample order


@torch.no_grad()
def validate(state: TrainingState) -> Validation:
    """Loss, accuracy and probabilities over the whole validation split; each rank of a job scores its slice."""
    model, world = state.evaluated_model, state.world
    model.eval()
    loss_sum, correct, seen, probs = 0.0, 0, 0, []
    for inputs, targets in val_loader(state.data, state.batch_size, shard=(world.rank, world.size)):
        inputs, targets = inputs.to(state.device), targets.to(state.device)
        with state.precision.autocast():
            logits = model(inputs)
        loss_sum += validation_loss_sum(logits, targets)
        correct += (predicted_classes(logits) == targets).sum().item()
        seen += len(targets)
        probs.append(probabilities(logits).cpu())
    loss_sum, correct, seen = world.sum(loss_sum, correct, seen)
    slices = world.gather(torch.cat(probs) if probs else None)  # in rank order: the samples' order
    metrics = {"val/loss": loss_sum / seen, "val/accuracy": correct / seen}
    return Validation(metrics, torch.cat([part for part in slices if part is not None]))
