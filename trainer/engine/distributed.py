"""Data-parallel training across processes: what the processes of one job share.

Started by ``torchrun`` (or ``tiller train --nproc N``, which starts torchrun),
every process trains the same model on its own shard of each epoch. ``World``
is the job as one process sees it; for a plain single-process run it is
``World.single()`` and every method below is the identity, so the training loop
has one code path.

Gradients are averaged here, one flattened ``all_reduce`` per optimizer step,
instead of by ``DistributedDataParallel``: DDP fixes the set of trainable
parameters when it is built, and Tiller changes it mid-run (freeze, unfreeze,
switching the optimizer). The result is the same average DDP computes, minus
overlapping communication with the backward pass.

A peer that dies makes the next collective fail at once (gloo sees the socket
close; torchrun then ends the others): ``PeerLost`` says so in words.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import math
import os
import re
import signal
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

import torch
import torch.distributed as dist
import torch.nn as nn

from tiller.trainer.steering.config import CONTROLS  # sent as their index

T = TypeVar("T")

# How long a collective waits for a process that is alive but silent (hung) before
# failing. A paused job still talks every PAUSE_POLL_S, so pauses never reach it.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


class PeerLost(RuntimeError):
    """Another process of the job died or stopped answering; the job cannot go on."""


class JobEnded(PeerLost):
    """torchrun ended this process: another process of the job failed, or torchrun itself was stopped."""


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def ignore_termination() -> None:
    """From now on SIGTERM does nothing: a failure being recorded is not cut short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def end_job_on_sigterm() -> None:
    """SIGTERM raises ``JobEnded`` once, so the run is recorded as failed; later ones are ignored so
    nothing cuts that recording short."""

    def end(signum, frame):
        ignore_termination()
        raise JobEnded("torchrun ended this process: another process of the job failed (see torchrun's output "
                       "for which), or torchrun itself was stopped")

    signal.signal(signal.SIGTERM, end)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""

    @classmethod
    def single(cls) -> "World":
        return cls()

    @classmethod
    def from_env(cls) -> "World":
        """The job torchrun started this process in (its environment says which), or a single process."""
        if not launched_by_torchrun():
            return cls.single()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
        return cls(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local_rank, backend=backend)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that watches the config file and writes the run's records."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self) -> torch.device:
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def describe(self) -> str:
        return f"{self.size} processes ({self.backend})" if self.distributed else "1 process"

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    # ------------------------------------------------------------ collectives

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value``, on every rank (any picklable object)."""
        if not self.distributed:
            return value
        box = [value]
        with self._collective("broadcast"):
            dist.broadcast_object_list(box, src=0, device=self._wire())
        return box[0]

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.size
        with self._collective("gather"):
            dist.all_gather_object(out, value)
        return out

    def sum(self, *values: float) -> list[float]:
        """Each of ``values`` summed over the ranks."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self._wire())
        with self._collective("all_reduce"):
            dist.all_reduce(tensor)
        return tensor.tolist()

    def all_finite(self, value: float) -> bool:
        """Whether ``value`` is finite on every rank: a batch's step is skipped everywhere or nowhere."""
        return self.sum(0.0 if math.isfinite(value) else 1.0)[0] == 0

    def control(self, mine: str) -> str:
        """Rank 0's pause/stop/run control, on every rank: all ranks act on it at the same step."""
        if not self.distributed:
            return mine
        code = torch.tensor([CONTROLS.index(mine) if self.is_main else 0], device=self._wire())
        with self._collective("broadcast"):
            dist.broadcast(code, src=0)
        return CONTROLS[int(code.item())]

    def average_gradients(self, model: nn.Module) -> None:
        """Every rank's gradients become their mean over the ranks (one flattened all_reduce)."""
        if not self.distributed:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        with self._collective("all_reduce of gradients"):
            dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def share_parameters(self, module: nn.Module) -> None:
        """Rank 0's weights and buffers everywhere: the job starts from one model."""
        self._broadcast_tensors(list(module.parameters()) + list(module.buffers()), "parameters")

    def share_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (batch-norm statistics) everywhere, as DDP's ``broadcast_buffers`` does."""
        self._broadcast_tensors(list(module.buffers()), "buffers")

    def _broadcast_tensors(self, tensors: list[torch.Tensor], what: str) -> None:
        if not self.distributed:
            return
        with torch.no_grad(), self._collective(f"broadcast of {what}"):
            for tensor in tensors:
                dist.broadcast(tensor.data, src=0)

    def _wire(self) -> torch.device:
        return self.device() if self.backend == "nccl" else torch.device("cpu")

    @contextlib.contextmanager
    def _collective(self, what: str):
        """Turns the backend's error for a dead or silent peer into ``PeerLost``, in words."""
        try:
            yield
        except PeerLost:
            raise
        except RuntimeError as exc:  # gloo and NCCL both raise RuntimeError (DistBackendError)
            raise PeerLost(f"another process of this {self.size}-process job died or stopped answering during "
                           f"{what} (seen from rank {self.rank}: {backend_reason(exc)})") from exc


def backend_reason(exc: BaseException) -> str:
    """The backend's own words, without its source path and advice: "Read error [127.0.0.1]:62622: Connection reset by peer"."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^\[[^\]]*\.(?:cc|cpp|h)(?::\d+)?\]\s*", "", text)  # gloo's "[.../pair.cc:545] "
    return text.split(". ")[0].rstrip(".")


def weights_fingerprint(weights: Mapping[str, torch.Tensor]) -> str:
    """A short digest of a state dict (every parameter and buffer), to check that the ranks hold the same model."""
    digest = hashlib.sha256()
    for name, tensor in weights.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
