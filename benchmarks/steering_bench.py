"""How fast a running trainer notices and applies a steering edit (a script, not a test).

    /work/venv/bin/python benchmarks/steering_bench.py [--quick] [--json FILE]

Two figures:

- detection (target: at most 0.5 s): a real ``ConfigWatcher`` on a live config file;
  the time from the start of a save until the watcher has flagged the edit
  (``ConfigWatcher.wait_for_edit``). Saved two ways: atomically with
  ``tiller.trainer.steering.live_config.request_change``, as the dashboard and the CLI do, and
  rewritten in place, as a text editor does. Each both in an idle process and in one
  that trains the digits MLP in another thread, as the trainer's process does (the
  watcher's thread then has to win the GIL from the training loop).
- the full path, in a real ``python -m tiller train`` process on the digits MLP:
  from ``request_change`` of the learning rate until the run records it as applied
  (its config version) and until its ``state.json`` shows the optimizer running with
  it, next to the epoch's length. Target: applied at the next epoch boundary, every
  time. Requests are sent at random moments of an epoch, so the latency spreads over
  one epoch; what the trainer itself adds is the time from the end of the epoch (or
  from the request, when it came later) to the recorded version. Pause and resume,
  honoured at the next training step, are timed the same way from the run's events.

Progress goes to stderr; the Markdown table to stdout.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.standalone import run_standalone  # noqa: E402
from tiller.store import Store  # noqa: E402
from tiller.trainer.steering.live_config import (  # noqa: E402
    STATE_FILENAME,
    live_config_path,
    render_live_file,
    request_change,
    request_control,
    write_atomic,
)
from tiller.trainer.steering.watcher import ConfigWatcher  # noqa: E402

TARGET_DETECTION_S = 0.5
DETECTION_TIMEOUT_S = 5.0  # a save not flagged by then counts as missed, at this value
SETTLE_S = 0.05  # after a detection, for the save's last notifications to arrive before the next save
# How often the full path reads the run's records and state.json. Not faster: each read
# is a query, and on two cores the benchmark would slow the trainer it measures. The
# applied time comes from the recorded version, so only the state.json time depends on it.
POLL_S = 0.02
WAIT_S = 60.0  # the most any step of the full path may take before the benchmark gives up
LEARNING_RATES = (0.002, 0.001)  # sent in turn, so every request changes something
# Epochs of about a third of a second on two cores: long enough for a request to land at
# a random moment of one, short enough for many samples.
TRAINER_SETTINGS = {"model_name": "mlp", "dataset": "digits", "batch_size": 4, "learning_rate": 0.001,
                    "num_epochs": 100_000}


@dataclass(frozen=True)
class Plan:
    detections: int  # per save method and process load
    changes: int  # lr changes sent to the real trainer
    pauses: int  # pause/resume pairs sent to it


PLANS = {"quick": Plan(detections=8, changes=4, pauses=2), "full": Plan(detections=60, changes=40, pauses=10)}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def spread(seconds: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(seconds), "max_s": max(seconds), "samples": len(seconds)}


# -------------------------------------------------------------------- detection

def save_atomically(path: Path, learning_rate: float) -> None:
    """What the dashboard's form and ``tiller set`` do."""
    request_change(path, {"learning_rate": learning_rate}, source="user", reason="steering benchmark")


def save_in_place(path: Path, learning_rate: float) -> None:
    """What a text editor does: truncate the file, write it, close it."""
    path.write_text(render_live_file({"learning_rate": learning_rate}), encoding="utf-8")


SAVES: dict[str, Callable[[Path, float], None]] = {"atomic": save_atomically, "in_place": save_in_place}


def settle(watcher: ConfigWatcher) -> None:
    """Take the last save and its late notifications, so the next sample starts unflagged."""
    time.sleep(SETTLE_S)
    while watcher.take_edit() is not None:
        time.sleep(SETTLE_S)


def detection_seconds(watcher: ConfigWatcher, path: Path, save: Callable[[Path, float], None],
                      learning_rate: float) -> float:
    settle(watcher)
    began = time.perf_counter()
    save(path, learning_rate)
    flagged = watcher.wait_for_edit(DETECTION_TIMEOUT_S)
    return time.perf_counter() - began if flagged else DETECTION_TIMEOUT_S


@contextmanager
def training_in_background() -> Iterator[None]:
    """The digits MLP (random digits-shaped data) training in a thread until the block ends."""
    stop = threading.Event()

    def train() -> None:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
        optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
        inputs, targets = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
        while not stop.is_set():
            loss = F.cross_entropy(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()  # the trainer reads the loss every step

    thread = threading.Thread(target=train, name="background-training", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def measure_detection(samples: int, folder: Path) -> dict[str, dict]:
    path = folder / "config.json"
    write_atomic(path, render_live_file({"learning_rate": 0.001}))
    results = {}
    with ConfigWatcher(path) as watcher:
        for load in ("idle", "training"):
            with training_in_background() if load == "training" else nullcontext():
                for method, save in SAVES.items():
                    seconds = [detection_seconds(watcher, path, save, LEARNING_RATES[i % 2]) for i in range(samples)]
                    results[f"{method}_{load}"] = spread(seconds)
                    say(f"detection, {method} save, {load} process: median "
                        f"{1000 * statistics.median(seconds):.1f} ms, max {1000 * max(seconds):.1f} ms")
    return results


# -------------------------------------------------------- the full path, for real

class TrainerProcess:
    """``python -m tiller train`` on the digits MLP in ``runs_dir``, read through a Store;
    as a context manager, it asks the run to stop when the block ends."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = runs_dir
        self.log_path = runs_dir.parent / "trainer.log"
        command = [sys.executable, "-m", "tiller", "train", "--runs-dir", str(runs_dir), "--name", "steering bench"]
        for key, value in TRAINER_SETTINGS.items():
            command += ["--set", f"{key}={json.dumps(value)}"]
        # One torch thread, as in the training benchmark: the MLP gains nothing from more.
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(self.log_path, "w", encoding="utf-8") as log:
            self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.store = Store(runs_dir)
        self.run_id = self.wait_for(self._only_run, "the run to start")
        self.config_path = live_config_path(runs_dir, self.run_id)
        self.state_path = self.config_path.with_name(STATE_FILENAME)

    def wait_for(self, condition: Callable[[], object], what: str):
        """Poll ``condition`` until it returns something true; fail if the trainer exits or stalls."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.process.poll() is not None:
                raise RuntimeError(f"the trainer exited ({self.process.returncode}) while waiting for {what}:\n"
                                   f"{self.log_path.read_text()[-2000:]}")
            time.sleep(POLL_S)
        raise TimeoutError(f"waited {WAIT_S:g} s for {what}")

    def _only_run(self) -> str | None:
        runs = self.store.runs()
        return runs["id"].iloc[0] if len(runs) else None

    def epoch_end_times(self) -> dict[int, float]:
        """When each finished epoch's metrics were logged (Unix seconds), by epoch."""
        df = self.store.metrics([self.run_id], names=["lr"])
        return dict(zip(df["epoch"].astype(int), df["time"]))

    def epochs_done(self) -> int:
        return max(self.epoch_end_times(), default=0)

    def version_with_reason(self, reason: str) -> dict | None:
        versions = self.store.config_versions(self.run_id)
        match = versions[versions["reason"] == reason]
        return None if match.empty else match.iloc[0].to_dict()

    def state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):  # not yet written; written atomically after
            return {}

    def event_after(self, prefix: str, since: float) -> dict | None:
        events = self.store.events(self.run_id)
        match = events[events["message"].str.startswith(prefix) & (events["time"] >= since)]
        return None if match.empty else match.iloc[0].to_dict()

    def __enter__(self) -> "TrainerProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            request_control(self.config_path, "stop")
            try:
                self.process.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.store.close()


@dataclass
class ChangeSample:
    applied_s: float  # request -> config version recorded
    in_state_s: float  # request -> state.json shows the optimizer at the new lr
    trainer_s: float  # from the epoch's end (or the request, if later) -> recorded
    next_boundary: bool  # applied at the first boundary after the request


def change_sample(trainer: TrainerProcess, index: int) -> ChangeSample:
    learning_rate, reason = LEARNING_RATES[index % 2], f"steering benchmark, change {index}"
    done_before = trainer.epochs_done()
    sent = time.time()
    request_change(trainer.config_path, {"learning_rate": learning_rate}, source="user", reason=reason)
    version = trainer.wait_for(lambda: trainer.version_with_reason(reason), f"change {index} to be applied")
    epoch = int(version["epoch"])
    trainer.wait_for(lambda: in_state(trainer.state(), epoch, learning_rate), f"change {index} in state.json")
    seen_in_state = time.time()
    # The boundary before ``epoch`` comes once epoch - 1 has ended; the request may have come later.
    previous_end = trainer.wait_for(lambda: trainer.epoch_end_times().get(epoch - 1), f"epoch {epoch - 1}'s end")
    return ChangeSample(
        applied_s=version["time"] - sent,
        in_state_s=seen_in_state - sent,
        trainer_s=version["time"] - max(sent, previous_end),
        # Epochs finished when it was sent: done_before, maybe done_before + 1 (its log had not landed
        # yet). Epoch done_before + 1 or + 2 is the first to start after it.
        next_boundary=epoch <= done_before + 2,
    )


def in_state(state: dict, epoch: int, learning_rate: float) -> bool:
    return state.get("epoch", 0) >= epoch and state["optimizer"]["lr"] == learning_rate


def pause_sample(trainer: TrainerProcess) -> tuple[float, float]:
    """Seconds from a pause request to the run's 'Paused' event, and from resume to 'Resumed'."""
    sent = time.time()
    request_control(trainer.config_path, "pause")
    paused = trainer.wait_for(lambda: trainer.event_after("Paused", sent), "the pause")
    resumed_at = time.time()
    request_control(trainer.config_path, "run")
    resumed = trainer.wait_for(lambda: trainer.event_after("Resumed", resumed_at), "the resume")
    return paused["time"] - sent, resumed["time"] - resumed_at


def epoch_seconds(trainer: TrainerProcess) -> list[float]:
    """Wall seconds between consecutive epochs' logs, steering included: the trainer's epoch period."""
    ends = sorted(trainer.epoch_end_times().items())
    return [later - earlier for (_, earlier), (_, later) in zip(ends, ends[1:])]


def measure_full_path(plan: Plan, folder: Path) -> dict:
    rng = random.Random(0)  # the same moments on every run of the benchmark
    with TrainerProcess(folder / "runs") as trainer:
        trainer.wait_for(lambda: trainer.epochs_done() >= 2, "two epochs")
        period = statistics.median(epoch_seconds(trainer))
        samples = []
        for index in range(plan.changes):
            time.sleep(rng.uniform(0, period))  # a random moment of the epoch
            samples.append(change_sample(trainer, index))
            say(f"full path, change {index + 1}/{plan.changes}: applied after {samples[-1].applied_s:.3f} s, "
                f"in state.json after {samples[-1].in_state_s:.3f} s")
        epochs = epoch_seconds(trainer)  # before the pauses, which lengthen their epochs
        pauses = []
        for index in range(plan.pauses):
            time.sleep(rng.uniform(0, period))
            pauses.append(pause_sample(trainer))
            say(f"full path, pause {index + 1}/{plan.pauses}: paused after {pauses[-1][0]:.3f} s, "
                f"resumed after {pauses[-1][1]:.3f} s")
    pause_s = [paused for paused, _ in pauses]
    return {
        "epoch": spread(epochs),
        "applied": spread([s.applied_s for s in samples]),
        "in_state": spread([s.in_state_s for s in samples]),
        "trainer_adds": spread([s.trainer_s for s in samples]),
        "applied_at_next_boundary": sum(s.next_boundary for s in samples),
        "met": all(s.next_boundary for s in samples),
        "pause": {**spread(pause_s), "target_s": TARGET_DETECTION_S, "met": max(pause_s) <= TARGET_DETECTION_S},
        "resume": spread([resumed for _, resumed in pauses]),
    }


# ------------------------------------------------------------------- the report

def measure(quick: bool = False) -> dict:
    """Both figures; ``quick`` takes about half a minute, most of it the trainer's start."""
    plan = PLANS["quick" if quick else "full"]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="tiller-steering-bench-") as folder:
        detection = measure_detection(plan.detections, Path(folder))
        full_path = measure_full_path(plan, Path(folder))
    worst = max(figures["max_s"] for figures in detection.values())
    return {
        "quick": quick,
        "detection": {**detection, "target_s": TARGET_DETECTION_S, "met": worst <= TARGET_DETECTION_S},
        "full_path": full_path,
        "trainer_settings": TRAINER_SETTINGS,
    }


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f} ms"


def markdown(result: dict) -> str:
    detection, full = result["detection"], result["full_path"]

    def within(figures: dict) -> str:
        """Every sample, not just the median, must be within the target."""
        verdict = "met" if figures["max_s"] <= detection["target_s"] else "**missed**"
        return f"≤ {1000 * detection['target_s']:.0f} ms: {verdict}"

    def line(label: str, figures: dict, aim: str = "") -> str:
        return f"| {label} | {ms(figures['median_s'])} | {ms(figures['max_s'])} | {figures['samples']} | {aim} |"

    lines = [
        "### Steering latency (digits MLP)",
        "",
        "| from a save to … | median | max | samples | target |",
        "|---|---|---|---|---|",
        line("flagged by the watcher: atomic save (dashboard, CLI), idle process", detection["atomic_idle"],
             within(detection["atomic_idle"])),
        line("… atomic save, process training", detection["atomic_training"], within(detection["atomic_training"])),
        line("… in-place save (text editor), idle process", detection["in_place_idle"],
             within(detection["in_place_idle"])),
        line("… in-place save, process training", detection["in_place_training"],
             within(detection["in_place_training"])),
        line("real trainer: pause honoured (next step)", full["pause"], within(full["pause"])),
        line("real trainer: resume honoured", full["resume"]),
        line("real trainer: lr change recorded as applied", full["applied"],
             f"next epoch boundary: {full['applied_at_next_boundary']} of {full['applied']['samples']}"),
        line("real trainer: lr change in force in state.json", full["in_state"]),
        line("· of which the trainer's own part (from the epoch's end)", full["trainer_adds"]),
        line("the trainer's epoch, for comparison (baseline)", full["epoch"]),
    ]
    settings = ", ".join(f"{k}={v}" for k, v in result["trainer_settings"].items() if k != "num_epochs")
    lines += [
        "",
        f"Detection is timed from the start of the save to `ConfigWatcher.wait_for_edit`; the lr changes were "
        f"sent at random moments of an epoch to `python -m tiller train` ({settings}), so they wait up to one "
        f"epoch for the next boundary; the trainer's own part runs from the end of the epoch (or the request, "
        f"if later) to the recorded config version; state.json is read every {1000 * POLL_S:.0f} ms.",
    ]
    return "\n".join(lines)


def main() -> None:
    run_standalone(__doc__, measure, markdown, quick_help="about half a minute, fewer samples")


if __name__ == "__main__":
    main()
