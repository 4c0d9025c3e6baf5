"""Model EMA: the average checked by hand, hot changes, and BatchNorm statistics."""

import pytest
import torch
import torch.nn as nn

from tiller.trainer.engine.ema import EmaTracker


class OneWeight(nn.Module):
    def __init__(self, value: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(value))

    def set(self, value: float) -> None:
        with torch.no_grad():
            self.weight.fill_(value)


def averaged(tracker: EmaTracker) -> float:
    return tracker.module.weight.item()


def hand_average(start: float, values: list[float], decays: list[float]) -> float:
    average = start
    for value, decay in zip(values, decays):
        average = decay * average + (1 - decay) * value
    return average


VALUES = [1.0, 3.0, -2.0, 5.0, 4.0, 0.5]


def follow(tracker: EmaTracker, model: OneWeight, values: list[float]) -> None:
    for value in values:
        model.set(value)  # as if the optimizer had stepped there
        tracker.update(model)


def test_without_warmup_every_step_uses_the_decay():
    model, tracker = OneWeight(10.0), EmaTracker(warmup=False)
    tracker.start(model, decay=0.5)
    follow(tracker, model, VALUES)
    assert averaged(tracker) == pytest.approx(hand_average(10.0, VALUES, [0.5] * len(VALUES)))
    assert tracker.steps == len(VALUES)


def test_warmup_copies_first_then_lets_the_decay_grow_to_its_cap():
    model, tracker = OneWeight(10.0), EmaTracker()
    tracker.start(model, decay=0.6)
    follow(tracker, model, VALUES)
    decays = [min(0.6, 1 - n ** (-2 / 3)) for n in range(1, len(VALUES) + 1)]
    assert decays[0] == 0.0 and decays[-1] == 0.6  # the cap binds from n = 4 on
    assert averaged(tracker) == pytest.approx(hand_average(10.0, VALUES, decays))


def test_warmup_moves_a_short_run_even_with_decay_0_9999():
    model, tracker = OneWeight(0.0), EmaTracker()
    tracker.start(model, decay=0.9999)
    follow(tracker, model, [1.0] * 20)
    assert averaged(tracker) == pytest.approx(1.0)  # the first update copied the weight


def test_set_decay_keeps_the_average_and_the_step_count():
    model, tracker = OneWeight(10.0), EmaTracker(warmup=False)
    tracker.start(model, decay=0.5)
    follow(tracker, model, VALUES[:3])
    kept = averaged(tracker)
    tracker.set_decay(0.9)
    assert averaged(tracker) == kept and tracker.steps == 3 and tracker.decay == 0.9
    follow(tracker, model, VALUES[3:])
    assert averaged(tracker) == pytest.approx(hand_average(kept, VALUES[3:], [0.9] * 3))


def test_starting_mid_run_copies_the_weights_of_that_moment():
    model, tracker = OneWeight(10.0), EmaTracker()
    model.set(7.0)  # trained for a while without EMA
    tracker.start(model, decay=0.5)
    assert averaged(tracker) == 7.0 and tracker.steps == 0
    assert tracker.module is not model and not tracker.module.training
    model.set(8.0)
    assert averaged(tracker) == 7.0  # a copy, not a view


def test_stop_then_start_begins_afresh():
    model, tracker = OneWeight(1.0), EmaTracker()
    tracker.start(model, decay=0.5)
    follow(tracker, model, VALUES)
    tracker.stop()
    assert not tracker.active
    with pytest.raises(RuntimeError, match="not running"):
        tracker.update(model)
    model.set(42.0)
    tracker.start(model, decay=0.5)
    assert averaged(tracker) == 42.0 and tracker.steps == 0


def test_state_dict_round_trip():
    model, tracker = OneWeight(10.0), EmaTracker()
    tracker.start(model, decay=0.7)
    follow(tracker, model, VALUES)
    restored = EmaTracker()
    restored.start(OneWeight(0.0), decay=0.1)
    restored.load_state_dict(tracker.state_dict())
    assert averaged(restored) == averaged(tracker) and restored.steps == tracker.steps and restored.decay == 0.7
    follow(tracker, model, [2.0])
    follow(restored, model, [2.0])
    assert averaged(restored) == pytest.approx(averaged(tracker))


def test_batchnorm_statistics_and_frozen_parameters_are_averaged_too():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    model[0].weight.requires_grad_(False)  # a frozen layer still feeds the average
    tracker = EmaTracker(warmup=False)
    tracker.start(model, decay=0.5)
    start_mean = model[1].running_mean.clone()
    start_weight = model[0].weight.detach().clone()
    model(torch.randn(16, 2) + 3.0)  # a training-mode forward moves the running statistics
    with torch.no_grad():
        model[0].weight.add_(1.0)
    tracker.update(model)
    averaged_bn, averaged_linear = tracker.module[1], tracker.module[0]
    assert torch.allclose(averaged_bn.running_mean, (start_mean + model[1].running_mean) / 2)
    assert averaged_bn.num_batches_tracked.item() == 1  # integer buffers are copied
    assert torch.allclose(averaged_linear.weight, start_weight + 0.5)
    assert not any(p.requires_grad for p in tracker.module.parameters())
