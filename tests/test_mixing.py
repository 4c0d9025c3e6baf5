"""Mixup and cutmix: the mixed images, their soft targets and the λ that links them."""

import numpy as np
import pytest
import torch

from tiller.trainer.steering.config import validate_config
from tiller.trainer.engine.mixing import cutmix_box, mix_batch

CLASSES = 5


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(count: int = 8, size: int = 16):
    images = torch.rand(count, 3, size, size, generator=seeded(123))  # the same images in every test
    targets = torch.arange(count) % CLASSES
    return images, targets


def mixed(cutmix_prob: float, seed: int = 0, alpha: float = 1.0, **batch_args):
    config = validate_config({"cutmix_prob": cutmix_prob, "mixup_alpha": alpha})
    images, targets = batch(**batch_args)
    return images, targets, mix_batch(images, targets, CLASSES, config, seeded(seed))


def mix(cutmix_prob: float, seed: int = 0, alpha: float = 1.0):
    return mixed(cutmix_prob, seed, alpha)[2]


def partner_of(images: torch.Tensor, out_row: torch.Tensor, lam: float, own: int) -> int:
    """Which sample's image was mixed into ``own`` (mixup)."""
    errors = [(out_row - (lam * images[own] + (1 - lam) * images[j])).abs().max().item() for j in range(len(images))]
    return int(np.argmin(errors))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("cutmix_prob", [0.0, 1.0])
def test_soft_targets_sum_to_one_and_weigh_lambda(seed, cutmix_prob):
    _, targets, out = mixed(cutmix_prob, seed)
    assert 0.0 <= out.lam <= 1.0
    assert out.soft_targets.shape == (len(targets), CLASSES)
    assert torch.allclose(out.soft_targets.sum(1), torch.ones(len(targets)))
    own_share = out.soft_targets[torch.arange(len(targets)), targets]
    assert (own_share >= out.lam - 1e-6).all()  # at least λ; more when the partner has the same class


@pytest.mark.parametrize("seed", range(5))
def test_mixup_pixels_are_the_convex_combination_with_the_partner(seed):
    images, targets, out = mixed(0.0, seed)
    assert out.kind == "mixup"
    for i in range(len(images)):
        j = partner_of(images, out.inputs[i], out.lam, i)
        assert torch.allclose(out.inputs[i], out.lam * images[i] + (1 - out.lam) * images[j], atol=1e-6)
        expected = out.lam * torch.eye(CLASSES)[targets[i]] + (1 - out.lam) * torch.eye(CLASSES)[targets[j]]
        assert torch.allclose(out.soft_targets[i], expected, atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_cutmix_lambda_is_the_share_of_pixels_left_untouched(seed):
    images, _, out = mixed(1.0, seed, count=16)  # 16 samples: nearly all have a partner other than themselves
    assert out.kind == "cutmix"
    changed = (out.inputs != images).any(dim=1)  # (N, H, W): pixels taken from the partner
    pasted = changed[changed.flatten(1).any(1)]  # the samples whose partner is not themselves
    assert len(pasted) > 0
    for mask in pasted:
        assert mask.float().mean().item() == pytest.approx(1 - out.lam, abs=1e-6)


def test_the_cutmix_box_is_clipped_to_the_image():
    rng = np.random.default_rng(0)
    for lam in np.linspace(0.0, 1.0, 21):
        top, bottom, left, right = cutmix_box(10, 12, lam, rng)
        assert 0 <= top <= bottom <= 10 and 0 <= left <= right <= 12
    top, bottom, left, right = cutmix_box(10, 12, 1.0, rng)  # λ = 1: nothing to paste
    assert (bottom - top) * (right - left) == 0


@pytest.mark.parametrize("cutmix_prob, kind", [(0.0, "mixup"), (1.0, "cutmix")])
def test_cutmix_prob_zero_always_mixes_up_and_one_always_cuts(cutmix_prob, kind):
    assert {mix(cutmix_prob, seed).kind for seed in range(20)} == {kind}


def test_a_half_chance_gives_both_kinds():
    assert {mix(0.5, seed).kind for seed in range(30)} == {"mixup", "cutmix"}


def test_the_same_seed_mixes_the_same_way():
    first, again, other = mix(0.5, seed=3), mix(0.5, seed=3), mix(0.5, seed=4)
    assert first.kind == again.kind and first.lam == again.lam
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.soft_targets, again.soft_targets)
    assert other.lam != first.lam


def test_alpha_shapes_lambda():
    small = [mix(0.0, seed, alpha=0.1).lam for seed in range(40)]
    large = [mix(0.0, seed, alpha=10.0).lam for seed in range(40)]
    assert np.mean([min(lam, 1 - lam) for lam in small]) < np.mean([min(lam, 1 - lam) for lam in large])


def test_a_single_sample_is_left_alone_with_one_hot_targets():
    images, targets, out = mixed(0.5, count=1)
    assert out.kind == "none" and out.lam == 1.0
    assert out.inputs is images
    assert torch.equal(out.soft_targets, torch.eye(CLASSES)[targets])


def test_text_batches_are_refused():
    config = validate_config({})
    with pytest.raises(ValueError, match="image batches"):
        mix_batch(torch.zeros(4, 256, dtype=torch.long), torch.zeros(4, dtype=torch.long), 2, config, seeded())
