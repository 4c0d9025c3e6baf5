"""Mixup and cutmix: each image of a batch is mixed with a partner from the same batch,
and its target becomes the matching mix of the two one-hot labels.

Images only (N, C, H, W): mixing two token sequences has no meaning, so the training
loop skips this for text. The soft targets go straight into ``F.cross_entropy``, which
accepts class probabilities (and still applies label smoothing to them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from tiller.trainer.steering.config import TrainConfig


@dataclass(frozen=True)
class MixedBatch:
    inputs: torch.Tensor
    soft_targets: torch.Tensor  # (N, num_classes), each row sums to 1
    kind: Literal["mixup", "cutmix", "none"]
    lam: float  # the share of each sample's own image and label in its mix


def mix_batch(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    config: TrainConfig,
    generator: torch.Generator,
) -> MixedBatch:
    """Cutmix with probability ``config.cutmix_prob``, else mixup; all randomness from ``generator``."""
    if inputs.ndim != 4:
        raise ValueError(f"mixup and cutmix need image batches (N, C, H, W), not shape {tuple(inputs.shape)}")
    own = F.one_hot(targets, num_classes).float()
    if len(inputs) < 2:  # no partner to mix with
        return MixedBatch(inputs, own, "none", 1.0)
    partner = torch.randperm(len(inputs), generator=generator, device=generator.device).to(inputs.device)
    rng = numpy_rng(generator)
    lam = float(rng.beta(config.mixup_alpha, config.mixup_alpha))
    if rng.random() < config.cutmix_prob:
        mixed, lam = cutmix(inputs, partner, lam, rng)
        kind = "cutmix"
    else:
        mixed = lam * inputs + (1.0 - lam) * inputs[partner]
        kind = "mixup"
    return MixedBatch(mixed, lam * own + (1.0 - lam) * own[partner], kind, lam)


def numpy_rng(generator: torch.Generator) -> np.random.Generator:
    """A numpy generator seeded from ``generator``: torch has no Beta draw that takes one."""
    seed = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item()
    return np.random.default_rng(seed)


def cutmix(
    inputs: torch.Tensor, partner: torch.Tensor, lam: float, rng: np.random.Generator
) -> tuple[torch.Tensor, float]:
    """Paste each partner's box into each image; returns the images and the λ actually kept."""
    height, width = inputs.shape[-2:]
    top, bottom, left, right = cutmix_box(height, width, lam, rng)
    mixed = inputs.clone()
    mixed[..., top:bottom, left:right] = inputs[partner][..., top:bottom, left:right]
    kept = 1.0 - (bottom - top) * (right - left) / (height * width)  # the box was clipped at the edges
    return mixed, kept


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a box covering about 1 - λ of the image, around a random
    centre and clipped to the image (Yun et al. 2019, as in timm's ``rand_bbox``)."""
    cut_ratio = np.sqrt(1.0 - lam)
    half_h, half_w = int(height * cut_ratio) // 2, int(width * cut_ratio) // 2
    centre_y, centre_x = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = max(centre_y - half_h, 0), min(centre_y + half_h, height)
    left, right = max(centre_x - half_w, 0), min(centre_x + half_w, width)
    return top, bottom, left, right
