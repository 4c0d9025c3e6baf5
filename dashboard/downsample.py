"""Fewer points per curve without losing what matters. Pure numpy/pandas, deterministic.

A browser draws a few thousand points per line smoothly; a user's own loop may
log twenty thousand steps per run. Random sampling would drop the spikes people
look for, so the reduction here is one of:

- ``minmax``: per bucket of consecutive points, the lowest and the highest value
  (and the first missing value, so a gap stays a gap), plus the first and last
  points. Every peak and trough of the full curve is drawn.
- ``lttb``: Largest-Triangle-Three-Buckets (Steinarsson, 2013): per bucket the
  point that spans the largest triangle with its neighbours, plus the endpoints.
  It keeps the visual shape with one point per bucket; a one-step spike inside a
  bucket of larger swings can be dropped. Missing values are left out.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

Method = Literal["minmax", "lttb"]
METHOD_NOTES = {
    "minmax": "min/max per bucket keeps every peak",
    "lttb": "LTTB keeps the curve's shape",
}


def minmax_indices(y: np.ndarray, max_points: int) -> np.ndarray:
    """Positions to keep, ascending: first, last, and per bucket the min, the max and a first gap."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    if max_points < 5:
        raise ValueError(f"min/max needs room for at least 5 points, got {max_points}")
    interior = np.arange(1, n - 1)
    finite = np.isfinite(y[1:-1])
    buckets = (max_points - 2) // 2
    while True:
        bucket = (interior - 1) * buckets // (n - 2)  # equal shares of the interior points
        gap_buckets, first_gaps = np.unique(bucket[~finite], return_index=True)
        # Each bucket with a gap costs a third point; fewer, wider buckets make room for it.
        if 2 + 2 * buckets + len(gap_buckets) <= max_points:
            break
        buckets = (max_points - 2 - len(gap_buckets)) // 2
    keep = [np.array([0, n - 1]), _extremes_per_bucket(interior[finite], y, bucket[finite]),
            interior[~finite][first_gaps]]
    return np.unique(np.concatenate(keep))


def _extremes_per_bucket(positions: np.ndarray, y: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    """The positions of the smallest and the largest value within each bucket."""
    if len(positions) == 0:
        return positions
    # Sorted by bucket, then by value: each bucket's run starts at its min and ends at its max.
    order = np.lexsort((y[positions], bucket))
    sorted_buckets = bucket[order]
    starts = np.flatnonzero(np.r_[True, sorted_buckets[1:] != sorted_buckets[:-1]])
    ends = np.r_[starts[1:] - 1, len(order) - 1]
    return positions[order[np.r_[starts, ends]]]


def lttb_indices(x: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray:
    """Positions LTTB keeps, ascending; ``max_points`` of them when there are more finite points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    finite = np.flatnonzero(np.isfinite(y))
    if len(finite) <= max_points:
        return finite
    if max_points < 3:
        raise ValueError(f"LTTB needs room for at least 3 points, got {max_points}")
    fx, fy = x[finite], y[finite]
    n = len(fx)
    edges = np.linspace(1, n - 1, max_points - 1).astype(int)  # max_points - 2 buckets between the ends
    # Each bucket's mean point stands in for the next choice; after the last bucket comes the end point.
    sizes = np.diff(edges)
    mean_x = np.r_[np.add.reduceat(fx[:-1], edges[:-1]) / sizes, fx[-1]].tolist()
    mean_y = np.r_[np.add.reduceat(fy[:-1], edges[:-1]) / sizes, fy[-1]].tolist()
    # The choice in each bucket depends on the one before, so this is a loop; over
    # Python floats it is several times faster than numpy calls on ten-point slices.
    xs, ys, bounds = fx.tolist(), fy.tolist(), edges.tolist()
    chosen = [0]
    for bucket in range(max_points - 2):
        ax, ay = xs[chosen[-1]], ys[chosen[-1]]
        cx, cy = mean_x[bucket + 1], mean_y[bucket + 1]
        points = range(bounds[bucket], bounds[bucket + 1])
        chosen.append(max(points, key=lambda i: abs((ax - cx) * (ys[i] - ay) - (ax - xs[i]) * (cy - ay))))
    chosen.append(n - 1)
    return finite[chosen]


def downsample(frame: pd.DataFrame, max_points: int, *, method: Method = "minmax", x: str = "epoch",
               y: str = "value") -> tuple[pd.DataFrame, bool]:
    """One curve's rows (sorted by ``x``) cut to at most ``max_points``; and whether any were dropped."""
    if len(frame) <= max_points:
        return frame, False
    if method == "minmax":
        kept = minmax_indices(frame[y].to_numpy(), max_points)
    elif method == "lttb":
        kept = lttb_indices(frame[x].to_numpy(), frame[y].to_numpy(), max_points)
    else:
        raise ValueError(f"unknown downsampling method {method!r}; expected minmax or lttb")
    return frame.iloc[kept], True
