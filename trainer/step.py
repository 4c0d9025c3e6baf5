"""One training step's settings, read from the config in force at every step:
label smoothing, gradient clipping and gradient accumulation."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainer.config import TrainConfig

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


def training_loss(logits: torch.Tensor, targets: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    smoothing = config.label_smoothing if config.label_smoothing_enabled else 0.0
    return F.cross_entropy(logits, targets, label_smoothing=smoothing)


def ends_step(batch_index: int, batches: int, config: TrainConfig) -> bool:
    """Whether the optimizer steps after batch ``batch_index`` (0-based) of ``batches``."""
    return (batch_index + 1) % batches_per_step(config) == 0 or batch_index + 1 == batches


def clip_gradients(model: nn.Module, config: TrainConfig) -> float:
    """Clip if enabled; returns the global gradient norm before clipping."""
    limit = config.gradient_clipping_value if config.gradient_clipping else math.inf
    params = [p for p in model.parameters() if p.grad is not None]
    return float(torch.nn.utils.clip_grad_norm_(params, limit))
