"""Data sets the trainer can load, split stratified into train and validation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

from trainer.config import TrainConfig


@dataclass
class DataSplit:
    train: TensorDataset
    val: TensorDataset
    class_names: list[str]
    in_channels: int
    image_size: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_data(config: TrainConfig) -> DataSplit:
    if config.dataset == "digits" or (config.dataset == "auto" and not config.data_dir):
        return _digits(config)
    raise ValueError(f"unknown dataset {config.dataset!r}")


def _digits(config: TrainConfig) -> DataSplit:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes), no download."""
    bunch = load_digits()
    size = config.img_size or 8
    images = bunch.images.astype(np.float32) / 16.0  # pixel values are 0..16
    x_train, x_val, y_train, y_val = train_test_split(
        images, bunch.target, test_size=config.val_split, stratify=bunch.target, random_state=config.seed
    )
    return DataSplit(
        train=TensorDataset(_as_images(x_train, size), torch.as_tensor(y_train)),
        val=TensorDataset(_as_images(x_val, size), torch.as_tensor(y_val)),
        class_names=[str(name) for name in bunch.target_names],
        in_channels=1,
        image_size=size,
    )


def _as_images(array: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W) -> (N, 1, size, size), resized once up front rather than per batch."""
    images = torch.as_tensor(array).unsqueeze(1)
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images


def train_loader(data: DataSplit, batch_size: int, seed: int, epoch: int) -> DataLoader:
    """Shuffled batches for one epoch; seeded by epoch so a resumed run repeats the order."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return DataLoader(data.train, batch_size=batch_size, shuffle=True, generator=generator)


def val_loader(data: DataSplit, batch_size: int) -> DataLoader:
    return DataLoader(data.val, batch_size=max(batch_size, 256), shuffle=False)
