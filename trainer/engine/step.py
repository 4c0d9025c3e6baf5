"""One training step's settings, read from the config in force at every step:
the loss (label smoothing, class weights, soft targets, binary or multiclass),
gradient clipping and gradient accumulation."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from tiller.trainer.steering.config import TrainConfig

STEP_SETTINGS = (
    "label_smoothing_enabled", "label_smoothing",
    "gradient_clipping", "gradient_clipping_value",
    "gradient_accumulation_enabled", "gradient_accumulation_steps",
)


def batches_per_step(config: TrainConfig) -> int:
    return config.gradient_accumulation_steps if config.gradient_accumulation_enabled else 1


def optimizer_steps_in(batches: int, config: TrainConfig) -> int:
    """Optimizer steps in an epoch of ``batches`` (a short last group still steps)."""
    return math.ceil(batches / batches_per_step(config))


def is_binary(logits: torch.Tensor) -> bool:
    """One logit per sample: seed 004's sigmoid output, trained with binary cross-entropy."""
    return logits.shape[1] == 1


def training_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    config: TrainConfig,
    *,
    class_weights: torch.Tensor | None = None,
    soft_targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loss the optimizer follows: smoothed, class-weighted, on soft targets when mixed.

    ``soft_targets`` (N, classes) replace the hard ``targets`` after mixup/cutmix.
    Computed in float32 even under autocast, so fp16/bf16 logits lose no precision here.
    """
    smoothing = config.label_smoothing if config.label_smoothing_enabled else 0.0
    logits = logits.float()
    if is_binary(logits):
        return _binary_loss(logits[:, 0], targets, smoothing, class_weights, soft_targets)
    return F.cross_entropy(
        logits, targets if soft_targets is None else soft_targets, weight=class_weights, label_smoothing=smoothing
    )


def _binary_loss(logit, targets, smoothing, class_weights, soft_targets) -> torch.Tensor:
    positive = targets.float() if soft_targets is None else soft_targets[:, 1].float()
    target = positive * (1 - smoothing) + 0.5 * smoothing
    weight = None
    if class_weights is not None:  # a mixed sample weighs in proportion to its two classes
        weight = class_weights[0] * (1 - positive) + class_weights[1] * positive
    return F.binary_cross_entropy_with_logits(logit, target, weight=weight)


def validation_loss_sum(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Plain (unsmoothed, unweighted) loss summed over the batch, comparable across configs."""
    logits = logits.float()
    if is_binary(logits):
        return F.binary_cross_entropy_with_logits(logits[:, 0], targets.float(), reduction="sum").item()
    return F.cross_entropy(logits, targets, reduction="sum").item()


def predicted_classes(logits: torch.Tensor) -> torch.Tensor:
    if is_binary(logits):
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(N, classes) probabilities; a binary model's one logit becomes [1 - p, p]."""
    logits = logits.float()
    if is_binary(logits):
        positive = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - positive, positive], dim=1)
    return torch.softmax(logits, dim=1)


def ends_step(batch_index: int, batches: int, config: TrainConfig) -> bool:
    """Whether the optimizer steps after batch ``batch_index`` (0-based) of ``batches``."""
    return (batch_index + 1) % batches_per_step(config) == 0 or batch_index + 1 == batches


def gradient_norm(model: nn.Module) -> float:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0


def clip_gradients(model: nn.Module, config: TrainConfig) -> float:
    """Clip if enabled; returns the global gradient norm before clipping."""
    if not config.gradient_clipping:
        # Only measure: clip_grad_norm_ with an infinite limit still multiplies every
        # gradient by 1.0, which cost about a tenth of the digits MLP's epoch, every step.
        return gradient_norm(model)
    params = [p for p in model.parameters() if p.grad is not None]
    return float(torch.nn.utils.clip_grad_norm_(params, config.gradient_clipping_value))
