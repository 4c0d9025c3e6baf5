"""tiller.dashboard.smoothing: bias-corrected EMA and moving-window mean, per run, gaps kept."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tiller.dashboard.smoothing import Smoothing, ema, moving_mean, smooth_runs

NAN = float("nan")


def hand_ema(values: list[float], weight: float) -> list[float]:
    """The definition, step by step: s_t = w s_(t-1) + (1 - w) x_t, then s_t / (1 - w**t)."""
    state, out = 0.0, []
    for t, x in enumerate(values, start=1):
        state = weight * state + (1 - weight) * x
        out.append(state / (1 - weight**t))
    return out


def test_ema_matches_the_hand_computation():
    values = [1.0, 2.0, 3.0, 10.0, 4.0]
    assert ema(np.array(values), 0.5) == pytest.approx(hand_ema(values, 0.5))
    # Worked out on paper for w = 0.5: 1, (0.25 + 1) / 0.75, (0.625 + 1.5) / 0.875.
    assert ema(np.array(values[:3]), 0.5) == pytest.approx([1.0, 5 / 3, 17 / 7])


def test_ema_is_debiased_so_a_constant_stays_constant():
    assert ema(np.full(50, 3.0), 0.99) == pytest.approx(np.full(50, 3.0))


def test_ema_weight_zero_is_the_raw_curve():
    values = np.array([4.0, 1.0, 7.0])
    assert ema(values, 0.0) == pytest.approx(values)


@pytest.mark.parametrize("weight", [-0.1, 1.0, 1.5])
def test_ema_refuses_weights_outside_zero_to_one(weight):
    with pytest.raises(ValueError, match="weight"):
        ema(np.array([1.0, 2.0]), weight)


def test_ema_skips_gaps_and_keeps_them():
    smoothed = ema(np.array([1.0, NAN, 2.0, np.inf, 3.0]), 0.5)
    assert np.isnan(smoothed[1]) and np.isnan(smoothed[3])
    # The finite values are smoothed as if the gaps were not there.
    assert smoothed[[0, 2, 4]] == pytest.approx(hand_ema([1.0, 2.0, 3.0], 0.5))


def test_ema_of_a_leading_gap_starts_at_the_first_value():
    assert ema(np.array([NAN, 5.0, 7.0]), 0.5)[1:] == pytest.approx([5.0, 19 / 3])


def test_single_point_and_empty_input():
    assert ema(np.array([2.5]), 0.9) == pytest.approx([2.5])
    assert moving_mean(np.array([2.5]), 10) == pytest.approx([2.5])
    assert len(ema(np.array([]), 0.9)) == 0 and len(moving_mean(np.array([]), 3)) == 0


def test_centred_moving_mean():
    assert moving_mean(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 3) == pytest.approx([1.5, 2.0, 3.0, 4.0, 4.5])


def test_trailing_moving_mean_uses_only_past_points():
    assert moving_mean(np.array([1.0, 2.0, 3.0, 4.0]), 2, centred=False) == pytest.approx([1.0, 1.5, 2.5, 3.5])


def test_moving_mean_averages_around_gaps_and_keeps_them():
    smoothed = moving_mean(np.array([1.0, 2.0, NAN, 4.0, 6.0]), 3)
    assert np.isnan(smoothed[2])
    assert smoothed[[0, 1, 3, 4]] == pytest.approx([1.5, 1.5, 5.0, 5.0])


def test_moving_mean_refuses_an_empty_window():
    with pytest.raises(ValueError, match="window"):
        moving_mean(np.array([1.0]), 0)


def test_smoothing_settings_choose_the_method():
    values = np.array([1.0, 3.0, 2.0, 8.0])
    assert Smoothing("ema", weight=0.5).apply(values) == pytest.approx(hand_ema(list(values), 0.5))
    assert Smoothing("window", window=2, centred=False).apply(values) == pytest.approx([1.0, 2.0, 2.5, 5.0])
    assert Smoothing().apply(values) == pytest.approx(values) and not Smoothing().active
    assert Smoothing("ema", weight=0.6).describe() == "EMA 0.6"
    assert Smoothing("window", window=5, centred=False).describe() == "trailing mean of 5"


def test_smooth_runs_never_mixes_runs():
    frame = pd.DataFrame({
        "run_id": ["a", "b", "a", "b", "a", "b"],
        "epoch": [1, 1, 2, 2, 3, 3],
        "value": [0.0, 100.0, 0.0, 100.0, 0.0, 100.0],
    })
    smoothed = smooth_runs(frame, Smoothing("window", window=3))
    assert list(smoothed.index) == list(frame.index)
    assert smoothed[frame["run_id"] == "a"].tolist() == [0.0, 0.0, 0.0]
    assert smoothed[frame["run_id"] == "b"].tolist() == [100.0, 100.0, 100.0]


def test_smooth_runs_follows_step_order_not_row_order():
    frame = pd.DataFrame({"run_id": ["a"] * 3, "epoch": [3, 1, 2], "value": [3.0, 1.0, 2.0]})
    smoothed = smooth_runs(frame, Smoothing("ema", weight=0.5))
    assert smoothed.tolist() == pytest.approx([17 / 7, 1.0, 5 / 3])


def test_smooth_runs_handles_repeated_index_labels():
    # Frames concatenated run by run repeat index labels; each run is still smoothed on its own.
    frame = pd.concat([pd.DataFrame({"run_id": r, "epoch": [1, 2], "value": [v, v + 2]}) for r, v in (("a", 0), ("b", 10))])
    assert smooth_runs(frame, Smoothing("window", window=2, centred=False)).tolist() == [0.0, 1.0, 10.0, 11.0]
