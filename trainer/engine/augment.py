"""Seed 002's image augmentation, applied to a whole batch on its own device.

Seed 002 used Keras' ``ImageDataGenerator(rotation_range=360, horizontal_flip=True,
vertical_flip=True, width_shift_range=0.1, height_shift_range=0.1, zoom_range=(0.75, 1),
brightness_range=(0.75, 1.25))`` with fill mode "nearest". Keras draws one set of
parameters per image; so does this module, but for all images at once: one affine
matrix per sample, one ``grid_sample`` for the batch.

Drawing the parameters (``draw_params``) is kept apart from using them
(``apply_params``) so a known setting can be checked, e.g. that "no change" is the identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

ROTATION_RANGE_DEGREES = 360.0  # angle ~ U(-360, 360): any orientation
WIDTH_SHIFT_RANGE = 0.1  # shift ~ U(-0.1, 0.1) x width
HEIGHT_SHIFT_RANGE = 0.1  # shift ~ U(-0.1, 0.1) x height
# Keras scales the *sampling* coordinates by the zoom factor, so a factor below 1 reads a
# smaller patch of the input and shows it larger: (0.75, 1) zooms *in*, by up to 1/0.75 = 1.33x,
# never out. Keras draws the factor for each axis independently, so the aspect ratio wobbles too.
ZOOM_RANGE = (0.75, 1.0)
BRIGHTNESS_RANGE = (0.75, 1.25)  # pixel values are multiplied by this, then clipped
FLIP_PROBABILITY = 0.5  # horizontal_flip=True and vertical_flip=True: each with even odds


@dataclass(frozen=True)
class AugmentParams:
    """One value per sample (each field has shape (N,))."""

    angle_degrees: torch.Tensor
    shift_x: torch.Tensor  # share of the width
    shift_y: torch.Tensor  # share of the height
    zoom_x: torch.Tensor  # Keras meaning: < 1 magnifies
    zoom_y: torch.Tensor
    flip_x: torch.Tensor  # bool: mirror left-right
    flip_y: torch.Tensor  # bool: mirror top-bottom
    brightness: torch.Tensor

    def to(self, device: torch.device) -> "AugmentParams":
        return AugmentParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def augment_batch(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Seed 002's random augmentation of ``images`` (N, C, H, W) in [0, 1], each sample its own."""
    return apply_params(images, draw_params(len(images), generator))


def draw_params(count: int, generator: torch.Generator) -> AugmentParams:
    """Independent random parameters for ``count`` samples, drawn only from ``generator``."""

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, generator=generator, device=generator.device)

    def coin() -> torch.Tensor:
        return torch.rand(count, generator=generator, device=generator.device) < FLIP_PROBABILITY

    return AugmentParams(
        angle_degrees=uniform(-ROTATION_RANGE_DEGREES, ROTATION_RANGE_DEGREES),
        shift_x=uniform(-WIDTH_SHIFT_RANGE, WIDTH_SHIFT_RANGE),
        shift_y=uniform(-HEIGHT_SHIFT_RANGE, HEIGHT_SHIFT_RANGE),
        zoom_x=uniform(*ZOOM_RANGE),
        zoom_y=uniform(*ZOOM_RANGE),
        flip_x=coin(),
        flip_y=coin(),
        brightness=uniform(*BRIGHTNESS_RANGE),
    )


def apply_params(images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """Warp, flip and brighten each sample of ``images`` as ``params`` say; same shape and dtype."""
    count, channels, height, width = images.shape
    params = params.to(images.device)
    theta = sampling_matrices(params, height, width)
    grid = F.affine_grid(theta, [count, channels, height, width], align_corners=False)
    # float32 for the warp: grid_sample has no bf16 kernel on every device
    warped = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    brightened = warped * params.brightness.view(-1, 1, 1, 1)
    return brightened.clamp(0.0, 1.0).to(images.dtype)


def sampling_matrices(params: AugmentParams, height: int, width: int) -> torch.Tensor:
    """(N, 2, 3) matrices for ``affine_grid``: output position -> where to read in the input.

    As in Keras, input = R (Z F p + s) for an output pixel p measured from the centre, with
    R the rotation, Z the zoom, F the flips (Keras flips after warping, which reads the
    output mirrored) and s the shift. This is done in pixels, then moved to affine_grid's
    [-1, 1] coordinates, so a rotation of a non-square image does not shear it.
    """
    angle = params.angle_degrees.float() * (math.pi / 180.0)
    cos, sin = angle.cos(), angle.sin()
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    mirror_x = torch.where(params.flip_x, -1.0, 1.0)
    mirror_y = torch.where(params.flip_y, -1.0, 1.0)
    zoom_and_flip = torch.diag_embed(torch.stack([params.zoom_x * mirror_x, params.zoom_y * mirror_y], -1).float())
    shift_pixels = torch.stack([params.shift_x * width, params.shift_y * height], -1).float()

    half_size = torch.tensor([width / 2.0, height / 2.0], device=angle.device)  # pixels per unit of [-1, 1]
    in_pixels = rotation @ zoom_and_flip
    linear = in_pixels * half_size.view(1, 1, 2) / half_size.view(1, 2, 1)
    offset = (rotation @ shift_pixels.unsqueeze(-1)).squeeze(-1) / half_size
    return torch.cat([linear, offset.unsqueeze(-1)], dim=-1)
