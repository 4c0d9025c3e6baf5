"""What every data source returns, and the one error they raise."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset


class DataError(ValueError):
    """A data set that cannot be used, with a message saying what to fix."""


@dataclass
class DataSplit:
    train: Dataset  # items (input, label); label is a 0-d long tensor
    val: Dataset
    class_names: list[str]  # index = label; folder names as they are
    kind: str  # "image" or "text"
    in_channels: int  # images: 1 or 3; text: 0
    image_size: int  # images: side length after resizing; text: 0
    train_labels: torch.Tensor  # long, in dataset order
    val_labels: torch.Tensor
    val_ids: list[str]  # per validation sample: a path relative to data_dir, or "<source>#<index>"
    skipped: list[str]  # "where: reason" for every input left out (or, for text, repaired)
    source: str  # one line for the run's start event
    vocab_size: int = 0  # text: rows of the embedding table; else 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class ImageTensors(Dataset):
    """Images held in one tensor. uint8 images are kept as uint8 and become float
    in [0, 1] one item at a time: a quarter of the memory of a float copy."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if image.dtype == torch.uint8:
            image = image.float().div_(255.0)
        return image, self.labels[index]
