"""Smoothing of metric curves: a bias-corrected EMA and a moving-window mean. Pure numpy/pandas.

Both work on one run's values in step order and never mix runs (``smooth_runs``
smooths each run on its own). A missing value (NaN, or an infinity: a diverged
loss) stays missing in the output, so a gap in the raw curve is a gap in the
smoothed one too; the values around it are smoothed as if it were absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Method = Literal["none", "ema", "window"]


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Bias-corrected exponential moving average, as TensorBoard and W&B draw it.

    ``s_t = weight * s_(t-1) + (1 - weight) * x_t`` from ``s_0 = 0``, divided by
    ``1 - weight**t``: without that division the curve starts near zero, because
    ``s_0 = 0`` weighs on the first points. ``t`` counts the finite values only.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"the EMA weight must be in [0, 1), got {weight}")
    series = _finite_series(values)
    # pandas' adjusted EWM divides by the sum of the weights used, sum(w**i) =
    # (1 - w**t) / (1 - w): exactly the bias correction above, computed in C.
    smoothed = series.ewm(alpha=1.0 - weight, adjust=True, ignore_na=True).mean()
    return smoothed.where(series.notna()).to_numpy()


def moving_mean(values: np.ndarray, window: int, *, centred: bool = True) -> np.ndarray:
    """Mean over ``window`` points: centred on each point, or of it and the points before it.

    Near the ends and next to gaps the mean is over the finite values the window holds.
    """
    if window < 1:
        raise ValueError(f"the window must hold at least one point, got {window}")
    series = _finite_series(values)
    smoothed = series.rolling(window, center=centred, min_periods=1).mean()
    return smoothed.where(series.notna()).to_numpy()


def _finite_series(values: np.ndarray) -> pd.Series:
    array = np.asarray(values, dtype=float)
    return pd.Series(np.where(np.isfinite(array), array, np.nan))


@dataclass(frozen=True)
class Smoothing:
    """What the user picked: no smoothing, an EMA with ``weight``, or a ``window``-point mean."""

    method: Method = "none"
    weight: float = 0.6  # TensorBoard's default: visibly smoother, still follows turns
    window: int = 10
    centred: bool = True  # a centred window does not lag behind the raw curve

    @property
    def active(self) -> bool:
        return self.method != "none"

    def apply(self, values: np.ndarray) -> np.ndarray:
        """``values`` (one run, in step order) smoothed; a copy of them when the method is none."""
        if self.method == "ema":
            return ema(values, self.weight)
        if self.method == "window":
            return moving_mean(values, self.window, centred=self.centred)
        return np.asarray(values, dtype=float).copy()

    def describe(self) -> str:
        """For the chart's legend and captions: ``"EMA 0.6"``, ``"centred mean of 10"``."""
        if self.method == "ema":
            return f"EMA {self.weight:g}"
        if self.method == "window":
            return f"{'centred' if self.centred else 'trailing'} mean of {self.window}"
        return "raw"


def smooth_runs(frame: pd.DataFrame, smoothing: Smoothing, *, run: str = "run_id", step: str = "epoch",
                value: str = "value") -> pd.Series:
    """``frame[value]`` smoothed within each run in ``step`` order, aligned to ``frame``'s index."""
    # Row positions rather than index labels: frames concatenated per run repeat labels.
    ordered = frame.reset_index(drop=True).sort_values([run, step], kind="stable")
    smoothed = np.empty(len(frame))
    for _, rows in ordered.groupby(run, sort=False):
        smoothed[rows.index] = smoothing.apply(rows[value].to_numpy())
    return pd.Series(smoothed, index=frame.index)
