"""Countering class imbalance: loss weights per class, or oversampling.

``use_class_weights`` switches it on; ``weight_strategy`` picks how:
balanced loss weights (n / (classes x n_class)), manual weights by class name,
or an oversampling sampler that draws rare classes more often.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tiller.trainer.steering.config import TrainConfig
from tiller.trainer.data import balanced_class_weights


@dataclass(frozen=True)
class Imbalance:
    """What the training step and loader use for the config in force."""

    loss_weights: torch.Tensor | None = None  # one per class, None = unweighted
    oversample: bool = False
    notes: list[str] = field(default_factory=list)

    def describe(self, class_names: list[str]) -> str:
        if self.oversample:
            return "oversampling: rare classes are drawn more often"
        if self.loss_weights is None:
            return "no class weighting"
        pairs = ", ".join(f"{name} {w:.3g}" for name, w in zip(class_names, self.loss_weights.tolist()))
        return f"loss weights {pairs}"


def imbalance_for(config: TrainConfig, class_names: list[str], train_labels: torch.Tensor) -> Imbalance:
    if not config.use_class_weights:
        return Imbalance()
    if config.weight_strategy == "oversample":
        return Imbalance(oversample=True)
    if config.weight_strategy == "balanced":
        return Imbalance(loss_weights=balanced_class_weights(train_labels, len(class_names)))
    return _manual(config.class_weights, class_names)


def _manual(weights: dict[str, float], class_names: list[str]) -> Imbalance:
    unknown = sorted(set(weights) - set(class_names))
    notes = [f"class_weights names no class of this data set: {unknown}; the classes are {class_names}"] if unknown else []
    vector = torch.tensor([float(weights.get(name, 1.0)) for name in class_names])
    return Imbalance(loss_weights=vector, notes=notes)
