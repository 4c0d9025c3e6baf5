"""Batches for training and validation, and the class balance of a split."""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler, Subset, WeightedRandomSampler

from tiller.trainer.data.base import DataSplit


def train_loader(data: DataSplit, batch_size: int, seed: int, epoch: int, oversample: bool = False,
                 shard: tuple[int, int] = (0, 1)) -> DataLoader:
    """Shuffled batches for one epoch; seeded by epoch so a resumed run repeats the order.

    ``oversample`` draws samples with replacement, each with weight 1 / (its class's
    size), so every class turns up about equally often in an epoch. ``shard``
    is (rank, processes) of a data-parallel job: each rank gets its own share
    of the epoch's order, which every rank draws alike.
    """
    rank, size = shard
    if not oversample:
        if size > 1:
            sampler = DistributedSampler(data.train, num_replicas=size, rank=rank, shuffle=True, seed=seed)
            sampler.set_epoch(epoch)
            return DataLoader(data.train, batch_size=batch_size, sampler=sampler)
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        return DataLoader(data.train, batch_size=batch_size, shuffle=True, generator=generator)
    counts = torch.bincount(data.train_labels, minlength=data.num_classes).double()
    weights = 1.0 / counts[data.train_labels]
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if size > 1:
        return DataLoader(data.train, batch_size=batch_size,
                          sampler=ShardedWeightedSampler(weights, len(data.train), generator, rank, size))
    sampler = WeightedRandomSampler(weights, num_samples=len(data.train), replacement=True, generator=generator)
    return DataLoader(data.train, batch_size=batch_size, sampler=sampler)


class ShardedWeightedSampler(Sampler[int]):
    """``WeightedRandomSampler``'s draw for a whole epoch, the same on every rank, dealt out rank by rank."""

    def __init__(self, weights: torch.Tensor, num_samples: int, generator: torch.Generator, rank: int, size: int):
        total = math.ceil(num_samples / size) * size  # every rank takes as many steps
        drawn = torch.multinomial(weights, total, replacement=True, generator=generator)
        self.indices = drawn[rank::size].tolist()

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def val_loader(data: DataSplit, batch_size: int, shard: tuple[int, int] = (0, 1)) -> DataLoader:
    """Validation batches in sample order; a rank of a job takes its contiguous slice of them."""
    rank, size = shard
    samples = data.val
    if size > 1:
        start, stop = slice_bounds(len(samples), rank, size)
        samples = Subset(samples, range(start, stop))
    return DataLoader(samples, batch_size=max(batch_size, 256), shuffle=False)


def slice_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """The ``rank``-th of ``size`` contiguous, nearly equal slices of ``range(n)``; in rank order they cover it."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


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
