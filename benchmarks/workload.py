"""Workload W, as in ``../shared/peers/LOGGING_BENCH.md``: 20 runs x 2,000 steps x 4 metrics.

Tiller's logging benchmark and the peers' share it, so every figure counts the same points.
"""

from __future__ import annotations

METRICS = ("train/loss", "train/accuracy", "val/loss", "val/accuracy")
W_RUNS, W_STEPS = 20, 2_000


def values(step: int) -> dict[str, float]:
    """The 4 metrics of one step."""
    return {name: 1.0 / (step + i + 1) for i, name in enumerate(METRICS)}
