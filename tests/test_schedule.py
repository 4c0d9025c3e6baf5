import math

import pytest

from tiller.trainer.steering.config import validate_config
from tiller.trainer.steering.schedule import Plateau, lr_at

STEPS = 10  # optimizer steps per epoch


def config(**values):
    return validate_config({"learning_rate": 0.1, "num_epochs": 10, **values})


def test_none_keeps_the_rate():
    assert {lr_at(p, config(), STEPS, Plateau()) for p in (0, 3.5, 9.9)} == {0.1}


def test_linear_warmup_from_ratio_then_the_base_rate():
    c = config(warmup_enabled=True, warmup_ratio=0.2)  # 2 epochs = 20 steps
    assert lr_at(0, c, STEPS, Plateau()) == pytest.approx(0.1 / 20)
    assert lr_at(1.0, c, STEPS, Plateau()) == pytest.approx(0.1 * 11 / 20)
    assert lr_at(1.9, c, STEPS, Plateau()) == pytest.approx(0.1)
    assert lr_at(2.0, c, STEPS, Plateau()) == pytest.approx(0.1)


def test_warmup_steps_win_over_the_ratio():
    c = config(warmup_enabled=True, warmup_ratio=0.5, warmup_steps=5)
    assert lr_at(0.4, c, STEPS, Plateau()) == pytest.approx(0.1)  # 5 steps = half an epoch
    assert lr_at(0.2, c, STEPS, Plateau()) == pytest.approx(0.1 * 3 / 5)


def test_step_lr_decays_every_step_size_epochs():
    c = config(lr_scheduler="StepLR", lr_step_size=3, lr_gamma=0.5)
    assert [lr_at(e, c, STEPS, Plateau()) for e in (0, 2.9, 3, 6.5)] == pytest.approx([0.1, 0.1, 0.05, 0.025])


def test_cosine_goes_from_base_to_min_lr():
    c = config(lr_scheduler="cosine", min_lr_enabled=True, min_lr=0.001)
    assert lr_at(0, c, STEPS, Plateau()) == pytest.approx(0.1)
    assert lr_at(5, c, STEPS, Plateau()) == pytest.approx(0.001 + 0.5 * 0.099)
    assert lr_at(10, c, STEPS, Plateau()) == pytest.approx(0.001)


def test_min_lr_floors_every_schedule():
    c = config(lr_scheduler="StepLR", lr_step_size=1, lr_gamma=0.1, min_lr_enabled=True, min_lr=0.002)
    assert lr_at(5, c, STEPS, Plateau()) == pytest.approx(0.002)


def test_plateau_cuts_after_patience_and_resets():
    c = config(lr_scheduler="ReduceLROnPlateau", plateau_patience=2, plateau_factor=0.5)
    plateau = Plateau()
    cuts = [plateau.observe(loss, c) for loss in (1.0, 0.9, 0.95, 0.95, 0.95, 0.8)]
    assert cuts == [False, False, False, False, True, False]
    assert lr_at(6, c, STEPS, plateau) == pytest.approx(0.05)
    plateau.reset()
    assert lr_at(6, c, STEPS, plateau) == pytest.approx(0.1)


def test_plateau_scale_only_counts_for_its_scheduler():
    plateau = Plateau(scale=0.25)
    assert lr_at(1, config(), STEPS, plateau) == pytest.approx(0.1)
    assert not math.isnan(lr_at(1, config(lr_scheduler="cosine", num_epochs=1), STEPS, plateau))


def test_cosine_warmup_starts_slower_and_meets_the_linear_ramp_at_the_end():
    from tiller.trainer.steering.config import validate_config
    from tiller.trainer.steering.schedule import Plateau, lr_at

    linear = validate_config({"warmup_enabled": True, "warmup_steps": 10, "learning_rate": 1.0})
    cosine = validate_config({"warmup_enabled": True, "warmup_steps": 10, "learning_rate": 1.0,
                              "warmup_method": "cosine"})
    at = lambda step, config: lr_at(step / 10, config, 10, Plateau())  # noqa: E731  (10 steps per epoch)
    assert at(1, cosine) < at(1, linear)
    assert at(9, cosine) == pytest.approx(1.0) == at(9, linear)
    assert [at(s, cosine) for s in range(10)] == sorted(at(s, cosine) for s in range(10))
