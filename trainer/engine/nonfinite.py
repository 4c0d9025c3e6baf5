"""What a NaN or infinite training loss does (the ``nonfinite_loss`` key).

Backpropagating a non-finite loss puts NaN into every weight at the next step,
and every number the run reports after that is garbage. So that step is never
taken. Then, as the config says:

- ``skip``: go on with the next batch, and lower ``learning_rate`` (the usual
  cause) by ``nonfinite_lr_factor``: once per epoch, and again whenever
  ``RECUT_AFTER`` non-finite losses come in a row after it;
- ``stop``: end the run at once, as failed, with the epoch and batch.

``MAX_IN_A_ROW`` in a row end the run either way: then the weights or the data
themselves are broken, and skipping would only spin through the epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiller.trainer.steering.config import TrainConfig

MAX_IN_A_ROW = 20
RECUT_AFTER = 5


class NonfiniteLoss(RuntimeError):
    """The training loss was NaN or infinite and the config (or a long streak) says stop."""


@dataclass
class NonfiniteGuard:
    in_a_row: int = 0
    skipped_in_epoch: int = 0
    skipped_total: int = 0
    lr_cuts: int = 0
    cut_this_epoch: bool = False

    def start_epoch(self) -> None:
        self.skipped_in_epoch, self.cut_this_epoch = 0, False

    def finite(self) -> None:
        self.in_a_row = 0

    def verdict(self, config: TrainConfig) -> str:
        """Count one non-finite loss; ``"stop"``, ``"cut"`` (skip and lower the lr) or ``"skip"``."""
        self.in_a_row += 1
        self.skipped_in_epoch += 1
        self.skipped_total += 1
        if config.nonfinite_loss == "stop" or self.in_a_row >= MAX_IN_A_ROW:
            return "stop"
        if not self.cut_this_epoch or self.in_a_row % RECUT_AFTER == 0:
            self.cut_this_epoch = True
            self.lr_cuts += 1
            return "cut"
        return "skip"

    def describe(self, config: TrainConfig) -> dict:
        return {"reaction": config.nonfinite_loss, "lr_factor": config.nonfinite_lr_factor,
                "skipped_steps": self.skipped_total, "lr_cuts": self.lr_cuts}


def stop_message(value: float, epoch: int, batch: int, guard: NonfiniteGuard, config: TrainConfig,
                 run_id: str) -> str:
    why = (f"{guard.in_a_row} in a row (the most that are skipped), so the weights or the data are broken"
           if config.nonfinite_loss == "skip" else "nonfinite_loss is stop")
    return (f"the training loss was {value} at epoch {epoch}, batch {batch}: {why}. The step was not taken, and "
            f"checkpoints/last.pt holds the last finished epoch, with finite weights. Lower learning_rate (tiller "
            f"set {run_id} learning_rate=...) or set nonfinite_loss to skip, then: tiller resume {run_id}")
