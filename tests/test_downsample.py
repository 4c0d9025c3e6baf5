"""tiller.dashboard.downsample: fewer points per curve, extremes and endpoints kept, no randomness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tiller.dashboard.downsample import downsample, lttb_indices, minmax_indices


def noisy_curve(n: int = 20_000) -> np.ndarray:
    steps = np.arange(n)
    y = np.exp(-steps / 5_000) + 0.05 * np.sin(steps * 0.37) + 0.02 * np.cos(steps * 1.91)
    y[n * 5 // 8] = 4.0  # a one-step loss spike
    y[n // 3] = -1.0  # and a one-step dip
    return y


def curve_frame(y: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"epoch": np.arange(1, len(y) + 1), "value": y})


@pytest.mark.parametrize("budget", [5, 100, 2_000])
def test_minmax_keeps_global_extremes_and_both_ends_within_budget(budget):
    y = noisy_curve()
    kept = minmax_indices(y, budget)
    assert len(kept) <= budget
    assert kept[0] == 0 and kept[-1] == len(y) - 1
    assert list(kept) == sorted(set(kept))  # x order, no repeats
    assert y[kept].max() == y.max() and y[kept].min() == y.min()


def test_minmax_keeps_each_buckets_extremes():
    y = noisy_curve(1_000)
    kept = set(minmax_indices(y, 202))  # 100 buckets of ten interior points
    bucket = np.arange(1, 999)[np.arange(998) * 100 // 998 == 42]
    assert bucket[np.argmax(y[bucket])] in kept and bucket[np.argmin(y[bucket])] in kept


def test_minmax_keeps_a_gap_as_a_gap():
    y = noisy_curve(10_000)
    y[4_000:4_100] = np.nan  # a diverged stretch
    kept = minmax_indices(y, 500)
    assert len(kept) <= 500
    assert np.isnan(y[kept]).any()
    assert np.nanmax(y[kept]) == np.nanmax(y) and np.nanmin(y[kept]) == np.nanmin(y)


def test_minmax_leaves_short_curves_alone():
    assert list(minmax_indices(np.array([3.0, 1.0, 2.0]), 10)) == [0, 1, 2]


@pytest.mark.parametrize("budget", [3, 50, 2_000])
def test_lttb_keeps_endpoints_and_returns_exactly_the_budget(budget):
    y = noisy_curve()
    kept = lttb_indices(np.arange(len(y)), y, budget)
    assert len(kept) == budget
    assert kept[0] == 0 and kept[-1] == len(y) - 1
    assert np.all(np.diff(kept) > 0)


def test_lttb_keeps_a_spike_that_dominates_its_bucket():
    y = np.zeros(1_000)
    y[500] = 10.0
    assert 500 in lttb_indices(np.arange(1_000), y, 100)


def test_lttb_leaves_out_missing_values():
    y = noisy_curve(1_000)
    y[100:200] = np.nan
    kept = lttb_indices(np.arange(1_000), y, 100)
    assert len(kept) == 100 and np.isfinite(y[kept]).all()


@pytest.mark.parametrize("method", ["minmax", "lttb"])
def test_same_input_same_output(method):
    frame = curve_frame(noisy_curve())
    first, _ = downsample(frame, 1_000, method=method)
    second, _ = downsample(frame.copy(), 1_000, method=method)
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.parametrize("method", ["minmax", "lttb"])
def test_downsample_reduces_long_frames_and_says_so(method):
    frame = curve_frame(noisy_curve())
    reduced, was_reduced = downsample(frame, 2_000, method=method)
    assert was_reduced and len(reduced) <= 2_000
    assert reduced["epoch"].iloc[0] == 1 and reduced["epoch"].iloc[-1] == 20_000
    assert reduced["epoch"].is_monotonic_increasing


def test_downsample_returns_short_frames_unchanged():
    frame = curve_frame(noisy_curve(50))
    same, was_reduced = downsample(frame, 2_000)
    assert not was_reduced and same.equals(frame)


def test_downsample_refuses_an_unknown_method():
    with pytest.raises(ValueError, match="unknown downsampling method"):
        downsample(curve_frame(noisy_curve(100)), 10, method="random")
