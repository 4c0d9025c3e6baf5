"""scikit-learn's bundled 8x8 digits (1,797 images, 10 classes): no download, no data_dir."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from tiller.trainer.data.base import DataSplit
from tiller.trainer.data.resize import resize_square
from tiller.trainer.data.split import split_images

NATIVE_SIZE = 8


def load_digits_split(config) -> DataSplit:
    bunch = load_digits()
    images = torch.as_tensor(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # pixel values are 0..16
    images = resize_square(images, config.img_size or NATIVE_SIZE)
    ids = [f"digits#{i}" for i in range(len(images))]
    return split_images(images, bunch.target, [str(name) for name in bunch.target_names], ids, config,
                        source=f"scikit-learn digits ({len(images):,} images)")
