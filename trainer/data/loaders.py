"""Batches for training and validation, and the class balance of a split."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from trainer.data.base import DataSplit


def train_loader(data: DataSplit, batch_size: int, seed: int, epoch: int, oversample: bool = False) -> DataLoader:
    """Shuffled batches for one epoch; seeded by epoch so a resumed run repeats the order.

    ``oversample`` draws samples with replacement, each with weight 1 / (its class's
    size), so every class turns up about equally often in an epoch.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if not oversample:
        return DataLoader(data.train, batch_size=batch_size, shuffle=True, generator=generator)
    counts = torch.bincount(data.train_labels, minlength=data.num_classes).double()
    weights = 1.0 / counts[data.train_labels]
    sampler = WeightedRandomSampler(weights, num_samples=len(data.train), replacement=True, generator=generator)
    return DataLoader(data.train, batch_size=batch_size, sampler=sampler)


def val_loader(data: DataSplit, batch_size: int) -> DataLoader:
    return DataLoader(data.val, batch_size=max(batch_size, 256), shuffle=False)


def class_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    return torch.bincount(labels, minlength=num_classes).tolist()


def balanced_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """n / (classes * n_class), as sklearn's compute_class_weight("balanced"); a class
    missing from ``labels`` weighs 1.0 (it never appears, so its weight never counts)."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    weights = torch.ones(num_classes)
    present = counts > 0
    weights[present] = len(labels) / (num_classes * counts[present])
    return weights
