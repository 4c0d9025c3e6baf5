"""The stratified, seeded train/validation split every source goes through."""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from tiller.trainer.data.base import DataError, DataSplit, ImageTensors


def stratified_split(labels: np.ndarray, class_names: list[str], val_split: float,
                     seed: int, ids: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and validation indices, each class split in proportion. ``ids`` (where
    each sample comes from) name the samples of a class too small to split."""
    check_labels(labels, class_names)
    counts = np.bincount(labels, minlength=len(class_names))
    check_class_sizes(counts, class_names, labels, ids)
    n = len(labels)
    try:
        train, val = train_test_split(np.arange(n), test_size=val_split, stratify=labels, random_state=seed)
    except ValueError:
        # sklearn refuses when either side would be smaller than the number of classes.
        n_val = math.ceil(val_split * n)
        raise DataError(
            f"val_split {val_split} splits {n} samples into {n - n_val} for training and {n_val} for "
            f"validation; a stratified split needs at least as many on each side as there are classes "
            f"({len(class_names)}); change val_split or add samples"
        ) from None
    check_train_has_every_class(np.bincount(labels[train], minlength=len(class_names)), counts,
                                class_names, val_split)
    return np.sort(train), np.sort(val)


def check_labels(labels: np.ndarray, class_names: list[str]) -> None:
    if len(labels) == 0:
        raise DataError("the data set holds no samples")
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise DataError(f"labels run from {labels.min()} to {labels.max()}, outside 0..{len(class_names) - 1} "
                        f"for the {len(class_names)} classes")


def check_class_sizes(counts: np.ndarray, class_names: list[str], labels: np.ndarray,
                      ids: list[str] | None = None) -> None:
    """A class of one sample is often a stray label (a typo, a bad row): naming where that
    sample is lets the user tell a stray from a class that needs more data."""
    small = [f"{class_names[i]!r} has {counts[i]}{where(labels, i, ids)}" for i in np.flatnonzero(counts < 2)]
    if small:
        listed = ", ".join(small[:10]) + (f" and {len(small) - 10} more" if len(small) > 10 else "")
        raise DataError(f"every class needs at least 2 samples (one to train on, one to validate on): "
                        f"{listed}; add samples to these classes or remove them")


def where(labels: np.ndarray, label: int, ids: list[str] | None) -> str:
    found = np.flatnonzero(labels == label)
    return f" ({ids[found[0]]})" if ids is not None and len(found) == 1 else ""


def check_train_has_every_class(train_counts: np.ndarray, counts: np.ndarray, class_names: list[str],
                                val_split: float) -> None:
    missing = [f"{class_names[i]!r} ({counts[i]} samples)" for i in np.flatnonzero(train_counts == 0)]
    if missing:
        raise DataError(f"with val_split {val_split} no training sample is left for class "
                        f"{', '.join(missing)}; lower val_split or add samples")


def split_images(images: torch.Tensor, labels: np.ndarray, class_names: list[str], ids: list[str],
                 config, *, source: str, skipped: list[str] | None = None,
                 label_ids: list[str] | None = None) -> DataSplit:
    """A ``DataSplit`` of (N, C, S, S) images, uint8 or float in [0, 1]. ``label_ids`` say
    where each label is, for messages, when that is not where the image is (MNIST)."""
    train, val = stratified_split(labels, class_names, config.val_split, config.seed, label_ids or ids)
    label_tensor = torch.as_tensor(labels, dtype=torch.long)
    train_idx, val_idx = torch.as_tensor(train), torch.as_tensor(val)
    return DataSplit(
        train=ImageTensors(images[train_idx], label_tensor[train_idx]),
        val=ImageTensors(images[val_idx], label_tensor[val_idx]),
        class_names=class_names,
        kind="image",
        in_channels=images.shape[1],
        image_size=images.shape[-1],
        train_labels=label_tensor[train_idx],
        val_labels=label_tensor[val_idx],
        val_ids=[ids[i] for i in val],
        skipped=list(skipped or []),
        source=source,
    )
