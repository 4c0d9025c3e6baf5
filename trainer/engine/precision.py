"""Mixed precision from the config: autocast for the forward pass and, for fp16 on CUDA,
loss scaling so that small gradients do not underflow to zero.

One optimizer step reads, top to bottom (the order matters):

    with precision.autocast():
        loss = loss_fn(model(inputs), targets)   # forward and loss only, never backward
    precision.backward(loss)                     # once per batch; scaled when a scaler is active
    ...at the last batch of an optimizer step:
    precision.unscale_(optimizer)                # once per step, before clipping reads the grads
    clip_gradients(model, config)
    precision.step(optimizer)                    # skips the step if the grads overflowed

What each setting means:
- CUDA: float16 autocast. With ``loss_scaling_enabled`` a ``torch.amp.GradScaler``:
  "dynamic" starts at 65536, halves on an overflow and doubles after 2000 clean steps;
  "static" keeps ``static_loss_scale`` for good. A step whose gradients hold inf/NaN is
  skipped in both modes (applying them would ruin the weights); "static" only means the
  scale itself never moves. GradScaler refuses a backoff factor of 1, so the fixed scale is
  put back after every step with ``update(new_scale=...)``.
- CPU: bfloat16 autocast and no scaler: bf16 has float32's exponent range, so gradients
  do not underflow.
- Any other device, or ``mixed_precision`` off: float32, no autocast, a plain step.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch

from tiller.trainer.steering.config import TrainConfig

PRECISION_KEYS = ("mixed_precision", "loss_scaling_enabled", "loss_scale", "static_loss_scale")
DYNAMIC_INITIAL_SCALE = 2.0**16  # torch's default: large, and a few skipped steps bring it down

LossScaling = Literal["dynamic", "static"]
DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16"}


class Precision:
    """Autocast and loss scaling for one device; rebuilt (``from_config``) when a key of
    ``PRECISION_KEYS`` changes, at an epoch boundary, never inside an optimizer step."""

    def __init__(
        self,
        device: torch.device,
        dtype: torch.dtype | None,
        scaler: torch.amp.GradScaler | None = None,
        fixed_scale: float | None = None,
    ):
        self.device = device
        self.dtype = dtype  # the autocast dtype; None when off
        self.scaler = scaler
        self.fixed_scale = fixed_scale  # set for "static" loss scaling: put back after every step
        self.loss_scaling: LossScaling | None = (
            None if scaler is None else "static" if fixed_scale is not None else "dynamic"
        )

    @classmethod
    def from_config(
        cls, config: TrainConfig, device: torch.device, previous: Precision | None = None
    ) -> Precision:
        """The precision ``config`` asks for on ``device``. Pass the ``previous`` one on a hot
        change: a dynamic scaler then goes on from the scale it had reached, not from 65536."""
        dtype = autocast_dtype(config, device)
        mode = loss_scaling(config, device)
        if mode is None:
            return cls(device, dtype)
        if mode == "static":
            fixed = float(config.static_loss_scale)
            return cls(device, dtype, torch.amp.GradScaler("cuda", init_scale=fixed), fixed_scale=fixed)
        return cls(device, dtype, dynamic_scaler(previous))

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the scale, so clipping and the logged norm see true values."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update(self.fixed_scale)  # None lets a dynamic scale grow or back off

    @property
    def scale(self) -> float | None:
        """The current loss scale; None without a scaler. Reading it waits for the GPU."""
        return None if self.scaler is None else self.scaler.get_scale()

    def describe(self) -> str:
        if self.dtype is None:
            return "full precision (float32)"
        autocast = f"{DTYPE_NAMES[self.dtype]} autocast on {self.device.type}"
        if self.loss_scaling == "dynamic":
            return f"{autocast}, dynamic loss scaling from {self.scale:g}"
        if self.loss_scaling == "static":
            return f"{autocast}, static loss scale {self.fixed_scale:g}"
        if self.dtype == torch.bfloat16:
            return f"{autocast}, no loss scaling (bf16 needs none)"
        return f"{autocast}, no loss scaling (small gradients may underflow)"



def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if not config.mixed_precision:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and torch.amp.is_autocast_available("cpu"):
        return torch.bfloat16
    return None


def loss_scaling(config: TrainConfig, device: torch.device) -> LossScaling | None:
    """Only fp16 needs a scaler, and fp16 is only used on CUDA."""
    if autocast_dtype(config, device) == torch.float16 and config.loss_scaling_enabled:
        return config.loss_scale
    return None


def dynamic_scaler(previous: Precision | None) -> torch.amp.GradScaler:
    if previous is not None and previous.loss_scaling == "dynamic":
        return previous.scaler  # keeps its scale and its count of clean steps
    if previous is not None and previous.loss_scaling == "static":
        return torch.amp.GradScaler("cuda", init_scale=previous.fixed_scale)  # known not to overflow
    return torch.amp.GradScaler("cuda", init_scale=DYNAMIC_INITIAL_SCALE)
