"""An exponential moving average of the model's weights (``model_ema``), on timm's
``ModelEmaV3``, that can be switched on, retuned and switched off mid-run.

The average covers everything in the model's state_dict: all parameters, frozen or
not (a frozen one just stops moving, and its average catches up with it), and the
BatchNorm running statistics. Integer buffers (``num_batches_tracked``) are copied.

Warmup (timm's ``use_warmup``, on by default): the n-th update (n = 1, 2, ...) uses
decay_n = min(model_ema_decay, 1 - n ** (-2/3)), timm's ``1 - (1 + step / gamma) ** -power``
with gamma 1 and power 2/3 and step = n - 1. The first update copies the weights
(decay 0); then the decay is 0.37 at n = 2, 0.79 at n = 10, 0.95 at n = 100, 0.99 at
n = 1000 and 0.999 at n = 31,623. Without it a decay of 0.9999 would keep the average at
its starting weights for the whole of a short run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.nn as nn

if TYPE_CHECKING:
    from timm.utils import ModelEmaV3


class EmaTracker:
    """Call ``update(model)`` after every optimizer step (not every batch: with gradient
    accumulation the weights only change at the step), and never for a skipped step."""

    def __init__(self, warmup: bool = True):
        self.warmup = warmup
        self.steps = 0  # updates since start(); drives the warmup
        self._ema: ModelEmaV3 | None = None

    @property
    def active(self) -> bool:
        return self._ema is not None

    @property
    def module(self) -> nn.Module:
        """The averaged model, in eval mode: evaluate and checkpoint this one."""
        return self._started().module

    @property
    def decay(self) -> float:
        return self._started().decay

    def start(self, model: nn.Module, decay: float) -> None:
        """Begin from a copy of ``model``'s weights as they are now (also mid-run)."""
        # Imported here, like timm in trainer/models/build.py: importing it takes seconds, and
        # every run would pay them at start, the MLP's that never use timm included.
        from timm.utils import ModelEmaV3

        self._ema = ModelEmaV3(model, decay=decay, use_warmup=self.warmup)
        for parameter in self._ema.module.parameters():
            parameter.requires_grad_(False)  # the average is never trained: no autograd graph
            parameter.grad = None  # deepcopy copied the model's gradients
        self.steps = 0

    def update(self, model: nn.Module) -> None:
        self.steps += 1
        # Without a step, ModelEmaV3 uses the plain decay; with one, it applies the warmup
        # (and copies the weights at the first step).
        self._started().update(model, step=self.steps if self.warmup else None)

    def set_decay(self, decay: float) -> None:
        """A hot change: the averaged weights and the step count stay."""
        self._started().decay = decay

    def stop(self) -> None:
        self._ema = None
        self.steps = 0

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "decay": self.decay, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore into a started tracker (``start`` gives it the model's shape)."""
        self._started().module.load_state_dict(state["module"])
        self.set_decay(state["decay"])
        self.steps = state["steps"]

    def _started(self) -> ModelEmaV3:
        if self._ema is None:
            raise RuntimeError("model EMA is not running: call start(model, decay) first")
        return self._ema
