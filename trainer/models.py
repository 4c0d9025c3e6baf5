"""Models by name: seed 001's MLP, or any timm model."""

from __future__ import annotations

import torch.nn as nn

from trainer.config import TrainConfig
from trainer.data import DataSplit


def mlp(in_features: int, hidden: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Seed 001: Flatten -> Dense 128 ReLU -> Dropout -> Dense 10 (logits)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


def build_model(config: TrainConfig, data: DataSplit) -> nn.Module:
    if config.model_name == "mlp":
        in_features = data.in_channels * data.image_size * data.image_size
        return mlp(in_features, config.hidden_size, data.num_classes, config.dropout_rate)
    import timm  # slow to import; only timm models need it

    if not timm.is_model(config.model_name):
        raise ValueError(f"unknown model {config.model_name!r}: use 'mlp' or a timm model name")
    return timm.create_model(
        config.model_name,
        pretrained=False,
        num_classes=data.num_classes,
        in_chans=data.in_channels,
        drop_rate=config.dropout_rate,
    )


def set_dropout(model: nn.Module, rate: float) -> int:
    """Set every dropout probability in ``model``; returns how many places changed.

    timm heads keep theirs as a ``drop_rate`` attribute used with F.dropout, so
    those are set too.
    """
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = rate
            changed += 1
        if isinstance(getattr(module, "drop_rate", None), float):
            module.drop_rate = rate
            changed += 1
    return changed
