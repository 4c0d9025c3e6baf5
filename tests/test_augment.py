"""Seed 002's augmentation: the random draw, and the warp checked on known settings."""

import pytest
import torch

from tiller.trainer.engine.augment import (
    BRIGHTNESS_RANGE,
    ZOOM_RANGE,
    AugmentParams,
    apply_params,
    augment_batch,
    draw_params,
)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def known(count: int = 1, **values) -> AugmentParams:
    """The same parameters for every sample; unnamed ones are "no change"."""
    unchanged = dict(angle_degrees=0.0, shift_x=0.0, shift_y=0.0, zoom_x=1.0, zoom_y=1.0,
                     flip_x=False, flip_y=False, brightness=1.0)
    unchanged.update(values)
    return AugmentParams(**{name: torch.tensor([value] * count) for name, value in unchanged.items()})


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_range_are_kept(channels, dtype):
    images = torch.rand(6, channels, 12, 10, dtype=dtype)
    out = augment_batch(images, seeded())
    assert out.shape == images.shape and out.dtype == dtype and out.device == images.device
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not torch.allclose(out, images)


@pytest.mark.parametrize("channels", [1, 3])
def test_no_change_is_the_identity(channels):
    images = torch.rand(4, channels, 9, 7)
    assert torch.allclose(apply_params(images, known(4)), images, atol=1e-6)


def test_each_sample_gets_its_own_transform():
    images = torch.rand(1, 3, 16, 16).expand(8, -1, -1, -1).contiguous()
    out = augment_batch(images, seeded())
    for i in range(1, 8):
        assert not torch.allclose(out[0], out[i], atol=1e-3)


def test_the_same_seed_gives_the_same_batch_and_another_seed_does_not():
    images = torch.rand(5, 3, 10, 10)
    assert torch.equal(augment_batch(images, seeded(7)), augment_batch(images, seeded(7)))
    assert not torch.allclose(augment_batch(images, seeded(7)), augment_batch(images, seeded(8)))


def test_drawn_parameters_stay_in_seed_002s_ranges():
    params = draw_params(2000, seeded())
    assert params.angle_degrees.abs().max() <= 360.0 and params.angle_degrees.std() > 100
    assert params.shift_x.abs().max() <= 0.1 and params.shift_y.abs().max() <= 0.1
    for zoom in (params.zoom_x, params.zoom_y):
        assert ZOOM_RANGE[0] <= zoom.min() and zoom.max() <= ZOOM_RANGE[1]
    assert not torch.equal(params.zoom_x, params.zoom_y)  # one factor per axis, as in Keras
    assert BRIGHTNESS_RANGE[0] <= params.brightness.min() and params.brightness.max() <= BRIGHTNESS_RANGE[1]
    for flip in (params.flip_x, params.flip_y):
        assert 0.4 < flip.float().mean() < 0.6


def test_a_quarter_turn_of_a_square_image_is_rot90():
    images = torch.rand(2, 3, 7, 7)
    assert torch.allclose(apply_params(images, known(2, angle_degrees=90.0)), torch.rot90(images, 1, (2, 3)),
                          atol=1e-5)


def test_flips_mirror_the_image():
    images = torch.rand(1, 1, 5, 8)
    assert torch.allclose(apply_params(images, known(flip_x=True)), images.flip(3), atol=1e-6)
    assert torch.allclose(apply_params(images, known(flip_y=True)), images.flip(2), atol=1e-6)


def test_a_shift_is_measured_in_the_image_own_width():
    images = torch.rand(1, 1, 4, 6)
    out = apply_params(images, known(shift_x=1 / 6))  # one pixel of a 6-wide image
    assert torch.allclose(out[..., :-1], images[..., 1:], atol=1e-5)
    assert torch.allclose(out[..., -1], images[..., -1], atol=1e-5)  # "nearest" fill: the edge repeats


def test_a_zoom_below_one_magnifies_and_the_border_repeats():
    images = torch.zeros(1, 1, 8, 8)
    images[..., 3:5, 3:5] = 1.0  # a bright 2x2 centre
    out = apply_params(images, known(zoom_x=0.5, zoom_y=0.5))
    assert out.sum() == pytest.approx(4 * images.sum().item(), rel=1e-4)  # twice as wide and high


def test_brightness_multiplies_then_clips():
    images = torch.full((1, 1, 3, 3), 0.9)
    assert torch.allclose(apply_params(images, known(brightness=0.5)), torch.full_like(images, 0.45))
    assert torch.equal(apply_params(images, known(brightness=1.25)), torch.ones_like(images))
