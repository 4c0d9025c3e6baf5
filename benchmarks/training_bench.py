"""What Tiller costs a training loop, per epoch, on the digits MLP (a script, not a test).

    /work/venv/bin/python benchmarks/training_bench.py [--quick] [--json FILE]

Two figures, both per epoch, on scikit-learn's bundled digits (the trainer's own
split: 1,437 training samples, batches of 32, so 45 steps an epoch), seed 001's MLP
(64 -> 128 ReLU -> dropout 0.2 -> 10), Adam at lr 0.001, one torch thread everywhere:

- tracking (target: at most 2 % slower): a plain PyTorch loop against the same loop
  plus what Tiller adds to a user's loop: a ``Run`` from ``Store.start_run`` (its
  heartbeat thread included), ``run.log`` after every epoch, a ``ConfigWatcher`` on the
  run's live config file, the edit check at every epoch boundary and the pause/stop
  check before every step (as ``EpochLoop`` does). A harsher variant also logs the
  loss after every step.
- the built-in trainer (``tiller.trainer.engine.loop.train``, what ``tiller train`` runs) against
  the plain loop, with where its extra time goes: validation, stored predictions,
  state.json, checkpoints, ...

The machine is expected to be noisy (two shared cores), so every variant runs in
many short blocks of epochs, interleaved, each round in another order (all orders
in turn) so that none always follows another; each block's first epoch is left out
as a warm-up; the seconds are medians of all the other epochs, and an overhead
is the median over rounds of each round's ratio (see ``Blocks.overhead_pct``), with a
95 % interval from resampling whole rounds. Each tracked block is a run
of its own; the per-step logger writes to a database of its own, so that the
per-epoch variant does not share its write-ahead log (and its checkpoints).
Progress goes to stderr; the Markdown table to stdout.
"""

from __future__ import annotations

import gc
import itertools
import math
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator
from unittest import mock

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import tiller.trainer.engine.loop  # noqa: E402
from benchmarks.standalone import run_standalone  # noqa: E402
from tiller.store import Run, Store  # noqa: E402
from tiller.store.run import HEARTBEAT_INTERVAL_S  # noqa: E402
from tiller.trainer.steering.config import validate_config  # noqa: E402
from tiller.trainer.data import load_data  # noqa: E402
from tiller.trainer.steering.live_config import CONFIG_FILENAME, render_live_file, write_atomic  # noqa: E402
from tiller.trainer.steering.watcher import ConfigWatcher  # noqa: E402

TARGET_OVERHEAD_PCT = 2.0
THREADS = 1  # a 45-step MLP gains nothing from more, and two shared cores make more threads noisier
CONFIG = {"model_name": "mlp", "dataset": "digits", "batch_size": 32, "learning_rate": 0.001,
          "optimizer": "Adam", "hidden_size": 128, "dropout_rate": 0.2}


@dataclass(frozen=True)
class Plan:
    rounds: int  # each round runs one block of every variant
    block_epochs: int  # epochs per block, the first of them a warm-up left out


# Many short blocks: the load of other programs comes in bursts of seconds, and a burst
# that falls on one block only is outvoted by the rounds around it. Rounds are a multiple
# of the orders of the variants (6 for tracking's three, 2 for the trainer's two).
PLANS = {  # (tracking, trainer)
    "quick": (Plan(rounds=6, block_epochs=5), Plan(rounds=4, block_epochs=5)),
    "full": (Plan(rounds=60, block_epochs=6), Plan(rounds=20, block_epochs=8)),
}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


Seconds = tuple[float, float]  # (wall, CPU) seconds


class Stopwatch:
    """Wall and CPU seconds since it started.

    CPU time is the whole process's, every thread included, so work Tiller moves
    to a background thread (heartbeat, watcher, a metrics writer) still counts;
    and it barely moves when other programs load the machine, which wall time does.
    """

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> Seconds:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


# ------------------------------------------------------------------ the plain loop

@dataclass
class Learner:
    """Model, optimizer and batches, new for every block of epochs (see ``new_learner``)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    samples: TensorDataset
    batch_size: int

    def batches(self, epoch: int) -> DataLoader:
        generator = torch.Generator().manual_seed(epoch)  # every variant sees epoch n in the same order
        return DataLoader(self.samples, batch_size=self.batch_size, shuffle=True, generator=generator)


def digits_samples() -> TensorDataset:
    """The trainer's own training split of the digits, so every loop sees the same samples."""
    data = load_data(validate_config(CONFIG))
    return TensorDataset(data.train.images, data.train.labels)


def new_learner(samples: TensorDataset) -> Learner:
    """The same starting weights and dropout masks every time, so every block of every
    variant does the very same arithmetic. A model trained on for hundreds of epochs would
    not: its gradients drift into subnormal floats, which slowed its epochs by a tenth."""
    torch.manual_seed(42)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, CONFIG["hidden_size"]), nn.ReLU(),
                          nn.Dropout(CONFIG["dropout_rate"]), nn.Linear(CONFIG["hidden_size"], 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=CONFIG["learning_rate"])
    return Learner(model, optimizer, samples, CONFIG["batch_size"])


def train_epoch(learner: Learner, epoch: int, before_step: Callable[[], None] | None = None,
                after_step: Callable[[int, float], None] | None = None) -> dict[str, float]:
    """One epoch of plain PyTorch, with the loss and accuracy any loop computes to print them.

    ``before_step``/``after_step`` are where a tracked loop adds its per-step work.
    """
    learner.model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for step, (inputs, targets) in enumerate(learner.batches(epoch)):
        if before_step is not None:
            before_step()
        logits = learner.model(inputs)
        loss = F.cross_entropy(logits, targets)
        learner.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        learner.optimizer.step()
        loss_value = loss.item()
        loss_sum += loss_value * len(targets)
        correct += (logits.argmax(dim=1) == targets).sum().item()
        seen += len(targets)
        if after_step is not None:
            after_step(step, loss_value)
    return {"train/loss": loss_sum / seen, "train/accuracy": correct / seen}


def untracked_block(samples: TensorDataset, epochs: range) -> list[Seconds]:
    learner, seconds = new_learner(samples), []
    for epoch in epochs:
        watch = Stopwatch()
        train_epoch(learner, epoch)
        seconds.append(watch.read())
    return seconds


# --------------------------------------------------------------- the tracked loop

def check_control(watcher: ConfigWatcher) -> None:
    """``EpochLoop.at_step_boundary`` while nobody pauses or stops: what every step pays."""
    if watcher.control == "pause" or watcher.control == "stop":
        raise RuntimeError("nobody steers the benchmark's run")


@contextmanager
def tracked_run(store: Store, setup_seconds: list[float]) -> Iterator[tuple[Run, ConfigWatcher]]:
    """A run with its heartbeat, live config file and watcher, as ``tiller.trainer.engine.loop.train`` opens them."""
    began = time.perf_counter()
    with store.start_run(model="mlp", dataset="digits") as run:
        config_path = run.dir / CONFIG_FILENAME
        write_atomic(config_path, render_live_file(CONFIG))
        with ConfigWatcher(config_path) as watcher:
            setup_seconds.append(time.perf_counter() - began)
            yield run, watcher
            began = time.perf_counter()
    setup_seconds[-1] += time.perf_counter() - began  # closing: watcher, heartbeat, final status


def tracked_block(samples: TensorDataset, epochs: range, store: Store, setup_seconds: list[float], *,
                  log_every_step: bool = False) -> list[Seconds]:
    learner, seconds = new_learner(samples), []
    steps = len(learner.batches(0))
    with tracked_run(store, setup_seconds) as (run, watcher):
        for epoch in epochs:
            watch = Stopwatch()
            if watcher.take_edit() is not None:  # the epoch boundary: nobody edits here, but it is checked
                raise RuntimeError("nobody edits the benchmark's live config")
            first_step = (epoch - 1) * steps + 1
            log_step = (lambda step, loss: run.log(first_step + step, {"train/loss": loss})) if log_every_step else None
            metrics = train_epoch(learner, epoch, lambda: check_control(watcher), log_step)
            run.log(epoch, metrics, lr=CONFIG["learning_rate"])
            seconds.append(watch.read())
    return seconds


def heartbeat_seconds(store: Store, beats: int = 50) -> float:
    """One ``Store.beat``, the heartbeat thread's whole work every HEARTBEAT_INTERVAL_S."""
    run_id = store.create_run(model="mlp", dataset="digits")
    times = []
    for _ in range(beats):
        began = time.perf_counter()
        store.beat(run_id)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


# ------------------------------------------------------------- interleaved blocks

WALL, CPU = 0, 1  # columns of a block's array


@dataclass
class Blocks:
    """Per-epoch (wall, CPU) seconds of each variant, one array per round, the warm-up epoch dropped."""

    by_round: dict[str, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))

    def add(self, variant: str, seconds: list[Seconds]) -> None:
        self.by_round[variant].append(np.array(seconds[1:]))

    def epochs(self, variant: str) -> np.ndarray:
        return np.concatenate(self.by_round[variant])

    def median(self, variant: str, column: int = WALL) -> float:
        """The median epoch of all rounds."""
        return float(np.median(self.epochs(variant)[:, column]))

    def round_ratios(self, variant: str, baseline: str, column: int = WALL) -> np.ndarray:
        """Each round's median epoch of ``variant`` over that of ``baseline``."""
        return np.array([np.median(mine[:, column]) / np.median(theirs[:, column])
                         for mine, theirs in zip(self.by_round[variant], self.by_round[baseline])])

    def overhead_pct(self, variant: str, baseline: str, column: int = WALL,
                     rounds: Iterable[int] | None = None) -> float:
        """How much slower ``variant`` is than ``baseline``, in per cent: the median of the rounds' ratios.

        Ratios within a round compare blocks run a second apart, under the same load; a
        burst of load that hits one block of a round makes an outlier that the median of
        all rounds leaves out. (On this machine the epochs of a block came in at either
        about 30 or about 50 ms, by the load of the moment; comparing the medians of all
        epochs instead swung by several per cent with how many slow blocks each variant drew.)
        """
        ratios = self.round_ratios(variant, baseline, column)
        picked = ratios if rounds is None else ratios[list(rounds)]
        return float(100 * (np.median(picked) - 1))


def interleave(variants: dict[str, Callable[[range], list[Seconds]]], plan: Plan, what: str) -> Blocks:
    """Run every variant ``plan.rounds`` times, in every order in turn (ABC, ACB, BAC, ...).

    Every order, not just rotations: a block can leave something behind for the next
    (a heavy logger leaves a long write-ahead log), and with all orders each variant
    follows each other equally often.
    """
    blocks, names = Blocks(), list(variants)
    orders = list(itertools.permutations(names))
    for index in range(plan.rounds):
        epochs = range(1, plan.block_epochs + 1)
        for name in orders[index % len(orders)]:
            gc.collect()  # no variant inherits another's garbage
            blocks.add(name, variants[name](epochs))
        if (index + 1) % max(1, plan.rounds // 5) == 0:  # a few progress lines, not one per round
            say(f"{what}: {index + 1}/{plan.rounds} rounds, medians so far: " + ", ".join(
                f"{name} {1000 * blocks.median(name):.1f} ms" for name in names))
    return blocks


def overhead_interval(blocks: Blocks, variant: str, baseline: str, resamples: int = 2000) -> list[float]:
    """95 % interval of the wall-time overhead (%), resampling whole rounds: the epochs of
    one block share the machine's load of the moment, so rounds, not epochs, are independent."""
    rng = np.random.default_rng(0)
    rounds = len(blocks.by_round[baseline])
    overheads = [blocks.overhead_pct(variant, baseline, WALL, rng.integers(0, rounds, rounds))
                 for _ in range(resamples)]
    return [float(p) for p in np.percentile(overheads, [2.5, 97.5])]


def measure_tracking(plan: Plan, samples: TensorDataset, store: Store, per_step_store: Store) -> dict:
    setup_seconds: list[float] = []
    untracked_block(samples, range(1, 4))  # warm-up: first allocations and lazy imports
    blocks = interleave({
        "untracked": lambda epochs: untracked_block(samples, epochs),
        "tracked": lambda epochs: tracked_block(samples, epochs, store, setup_seconds),
        "tracked_per_step": lambda epochs: tracked_block(samples, epochs, per_step_store, [], log_every_step=True),
    }, plan, "tracking")
    overhead = blocks.overhead_pct("tracked", "untracked")
    beat = heartbeat_seconds(store)
    return {
        "epochs_per_variant": len(blocks.epochs("untracked")),
        "rounds": plan.rounds,
        "untracked_epoch_s": blocks.median("untracked"),
        "untracked_epoch_cpu_s": blocks.median("untracked", CPU),
        "tracked_epoch_s": blocks.median("tracked"),
        "tracked_epoch_cpu_s": blocks.median("tracked", CPU),
        "tracked_overhead_pct": overhead,
        "tracked_overhead_95_pct": overhead_interval(blocks, "tracked", "untracked"),
        "tracked_cpu_overhead_pct": blocks.overhead_pct("tracked", "untracked", CPU),
        "target_overhead_pct": TARGET_OVERHEAD_PCT,
        "met": overhead <= TARGET_OVERHEAD_PCT,
        "per_step_epoch_s": blocks.median("tracked_per_step"),
        "per_step_epoch_cpu_s": blocks.median("tracked_per_step", CPU),
        "per_step_overhead_pct": blocks.overhead_pct("tracked_per_step", "untracked"),
        "per_step_cpu_overhead_pct": blocks.overhead_pct("tracked_per_step", "untracked", CPU),
        "run_open_close_s": statistics.median(setup_seconds),
        "heartbeat_beat_s": beat,
    }


# ------------------------------------------------------------ the built-in trainer

PHASES = ("train", "validate", "metrics log", "predictions", "state.json", "checkpoints", "edit check")


class PhaseClock:
    """Seconds spent in each phase of each epoch of a trainer run."""

    def __init__(self):
        self.epochs: list[dict[str, float]] = []
        self._current: dict[str, float] = defaultdict(float)
        self._watch = Stopwatch()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self._current[name] += time.perf_counter() - began

    def start(self) -> None:
        self._watch, self._current = Stopwatch(), defaultdict(float)

    def end_epoch(self) -> None:
        """The epoch's line was printed: the loop's last act of an epoch."""
        wall, cpu = self._watch.read()
        phases = {name: self._current[name] for name in PHASES}
        phases["rest"] = wall - sum(phases.values())
        self.epochs.append({"wall": wall, "cpu": cpu, **phases})
        self.start()


class TimedRun:
    """The run handle as the loop sees it, timing the store calls it makes every epoch."""

    TIMED = {"log": "metrics log", "flush": "metrics log", "predictions": "predictions"}

    def __init__(self, run, clock: PhaseClock):
        self._run, self._clock = run, clock

    def __getattr__(self, name: str):
        attribute = getattr(self._run, name)
        if name not in self.TIMED:
            return attribute

        def timed(*args, **kwargs):
            with self._clock.phase(self.TIMED[name]):
                return attribute(*args, **kwargs)
        return timed


def timed_loop_class(clock: PhaseClock) -> type:
    """``EpochLoop`` with each phase of an epoch on ``clock``; its own code runs unchanged."""

    class TimedEpochLoop(tiller.trainer.engine.loop.EpochLoop):
        def __init__(self, state, run, steering, say_line):
            def say_and_clock(line: str) -> None:
                if line.startswith("epoch "):
                    clock.end_epoch()
                say_line(line)
            super().__init__(state, run, steering, say_and_clock)
            self.run = TimedRun(run, clock)

        def run_to_end(self) -> None:
            clock.start()
            super().run_to_end()

        def take_pending_edit(self, epoch):
            with clock.phase("edit check"):
                return super().take_pending_edit(epoch)

        def train_epoch(self, epoch):
            with clock.phase("train"):
                return super().train_epoch(epoch)

        def evaluate(self):
            with clock.phase("validate"):
                return super().evaluate()

        def write_state(self, epoch):
            with clock.phase("state.json"):
                return super().write_state(epoch)

        def save_checkpoints(self, epoch, metrics):
            with clock.phase("checkpoints"):
                return super().save_checkpoints(epoch, metrics)

    return TimedEpochLoop


def trainer_block(store: Store, epochs: range, phases: list[dict[str, float]]) -> list[Seconds]:
    """One run of the real ``tiller.trainer.engine.loop.train``; its epochs' wall seconds (phases into ``phases``)."""
    clock = PhaseClock()
    config = validate_config({**CONFIG, "num_epochs": len(epochs)})
    # Patched by name so that the real train() (run, live file, watcher, loop) is what runs.
    with mock.patch.object(tiller.trainer.engine.loop, "EpochLoop", timed_loop_class(clock)):
        tiller.trainer.engine.loop.train(config, store, say=lambda line: None)
    phases.extend(clock.epochs[1:])  # the first epoch is the warm-up, as in every block
    return [(epoch["wall"], epoch["cpu"]) for epoch in clock.epochs]


def measure_trainer(plan: Plan, samples: TensorDataset, store: Store) -> dict:
    phases: list[dict[str, float]] = []
    untracked_block(samples, range(1, 4))
    trainer_block(store, range(1, 3), [])  # warm-up: the trainer's imports and first run
    blocks = interleave({
        "untracked": lambda epochs: untracked_block(samples, epochs),
        "trainer": lambda epochs: trainer_block(store, epochs, phases),
    }, plan, "trainer")
    return {
        "epochs_per_variant": len(blocks.epochs("untracked")),
        "rounds": plan.rounds,
        "untracked_epoch_s": blocks.median("untracked"),
        "untracked_epoch_cpu_s": blocks.median("untracked", CPU),
        "trainer_epoch_s": blocks.median("trainer"),
        "trainer_epoch_cpu_s": blocks.median("trainer", CPU),
        "trainer_overhead_pct": blocks.overhead_pct("trainer", "untracked"),
        "trainer_cpu_overhead_pct": blocks.overhead_pct("trainer", "untracked", CPU),
        "phases_s": {name: statistics.median(epoch[name] for epoch in phases) for name in (*PHASES, "rest")},
    }


# --------------------------------------------------------------------- the report

def measure(quick: bool = False) -> dict:
    """Both figures; ``quick`` takes about 15 s on two cores and gives rougher medians."""
    torch.set_num_threads(THREADS)
    tracking_plan, trainer_plan = PLANS["quick" if quick else "full"]
    samples = digits_samples()
    with tempfile.TemporaryDirectory(prefix="tiller-training-bench-") as folder:
        store, per_step_store = Store(Path(folder) / "per-epoch"), Store(Path(folder) / "per-step")
        try:
            tracking = measure_tracking(tracking_plan, samples, store, per_step_store)
            built_in = measure_trainer(trainer_plan, samples, store)
        finally:
            store.close()
            per_step_store.close()
    steps = math.ceil(len(samples) / CONFIG["batch_size"])
    return {"threads": THREADS, "batch_size": CONFIG["batch_size"], "steps_per_epoch": steps, "quick": quick,
            "tracking": tracking, "trainer": built_in}


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f} ms"


def signed_pct(value: float) -> str:
    return f"{value:+.1f} %"


PHASE_LABELS = {
    "train": "training pass (also: lr schedule, gradient norm, accuracy every step)",
    "validate": "validation pass",
    "metrics log": "metrics log",
    "predictions": "validation predictions stored",
    "state.json": "state.json written",
    "checkpoints": "checkpoints (last.pt; best.pt when better)",
    "edit check": "live-config edit check",
    "rest": "the rest (autopilot, early stopping, printing)",
}


def row(label: str, figures: dict, prefix: str, *, baseline: bool = False, target: str = "",
        interval: list[float] | None = None) -> str:
    """One loop's line: wall and CPU per epoch, each beside its overhead over the plain loop."""
    wall_s, cpu_s = ms(figures[f"{prefix}_epoch_s"]), ms(figures[f"{prefix}_epoch_cpu_s"])
    if baseline:
        return f"| {label} | {wall_s} | — | {cpu_s} | — | |"
    wall = signed_pct(figures[f"{prefix}_overhead_pct"])
    if interval:
        wall += f" (95 %: {signed_pct(interval[0])} to {signed_pct(interval[1])})"
    return f"| {label} | {wall_s} | {wall} | {cpu_s} | {signed_pct(figures[f'{prefix}_cpu_overhead_pct'])} | {target} |"


def phase_row(name: str, seconds: float, plain_epoch: float) -> str:
    """The training pass stands in for the plain loop's epoch; every other phase comes on top of it."""
    if name == "train":
        against = signed_pct(100 * (seconds / plain_epoch - 1))
    else:
        against = f"{signed_pct(100 * seconds / plain_epoch)} of plain"
    return f"| · {PHASE_LABELS[name]} | {ms(seconds)} | {against} | | | |"


def markdown(result: dict) -> str:
    tracking, built_in = result["tracking"], result["trainer"]
    verdict = "met" if tracking["met"] else "**missed**"
    plain_epoch = built_in["untracked_epoch_s"]
    lines = [
        "### Training overhead (digits MLP)",
        "",
        "| loop | wall per epoch | vs plain | CPU per epoch | vs plain | target |",
        "|---|---|---|---|---|---|",
        row("plain PyTorch loop (baseline)", tracking, "untracked", baseline=True),
        row("same loop, tracked and watched by Tiller", tracking, "tracked",
            target=f"≤ +{tracking['target_overhead_pct']:g} % wall: {verdict}",
            interval=tracking["tracked_overhead_95_pct"]),
        row("same, also logging the loss every step", tracking, "per_step"),
        row("plain PyTorch loop (baseline, between the trainer's runs)", built_in, "untracked", baseline=True),
        row("built-in trainer (`tiller train`), whole epoch", built_in, "trainer"),
    ]
    lines += [phase_row(name, seconds, plain_epoch) for name, seconds in built_in["phases_s"].items()]
    lines += [
        "",
        f"Seconds are medians of all epochs; each overhead is the median over interleaved rounds of the round's "
        f"ratio. {result['steps_per_epoch']} steps of {result['batch_size']} per epoch, {result['threads']} torch "
        f"thread; {tracking['epochs_per_variant']} measured epochs per variant in {tracking['rounds']} rounds for "
        f"tracking, {built_in['epochs_per_variant']} in {built_in['rounds']} for the trainer. CPU time is "
        f"the process's, background threads included. Once per run, Tiller also takes "
        f"{ms(tracking['run_open_close_s'])} (opening and closing the run, live file and watcher); its heartbeat "
        f"takes {1000 * tracking['heartbeat_beat_s']:.2f} ms every {HEARTBEAT_INTERVAL_S:g} s. The phases' medians "
        f"need not add up to the epoch's.",
    ]
    return "\n".join(lines)


def main() -> None:
    run_standalone(__doc__, measure, markdown, quick_help="about 15 s, rougher medians")


if __name__ == "__main__":
    main()
