"""Resizing a stack of images once, up front, rather than per batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK = 4096  # images resized at a time, so a float copy of a large data set is never whole


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size), bilinear, keeping the dtype (uint8 or float)."""
    if images.shape[-2:] == (size, size):
        return images
    resized = [_resize_chunk(chunk, size) for chunk in images.split(CHUNK)]
    return torch.cat(resized)


def _resize_chunk(chunk: torch.Tensor, size: int) -> torch.Tensor:
    out = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if chunk.dtype == torch.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return out
