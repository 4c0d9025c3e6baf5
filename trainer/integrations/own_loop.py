"""Steer your own training loop: the API the built-in trainer is made of.

    import tiller

    with tiller.run("my_config.json") as run:
        model = build(run.config.dropout_rate)
        optimizer = torch.optim.Adam(model.parameters(), lr=run.config.learning_rate)
        for epoch in run.epochs():              # 1 .. num_epochs, which may change mid-run
            for inputs, targets in batches(run.config.batch_size):
                run.step()                       # pause / stop between steps (optional)
                ...
            run.log(train_loss=..., val_loss=..., val_accuracy=..., lr=...)
            run.log_predictions(val_probs, val_labels)   # optional: the Evaluation page
            for change in run.changes():         # validated and recorded: apply them
                if change.key == "learning_rate":
                    for group in optimizer.param_groups:
                        group["lr"] = change.new

The run appears in the dashboard like any other; its live config file
(``runs/<run_id>/config.json``), the dashboard's steering form, ``tiller set``
and the advisor all steer it, through the same ``Steering`` the built-in
trainer uses: every edit is validated against Tiller's config schema, applied
at the next epoch boundary, and recorded as a config version with its source
and reason.

Your loop reads only some knobs. ``steers`` names them (by default, the hot
keys your starting config sets); every other key is fixed for the run, so
nobody is offered a knob your code would ignore.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tiller.store import Run, Store
from tiller.store.store import OWN_LOOP
from tiller.trainer.steering.config import TrainConfig, check_run_hot_keys, hot_keys, validate_config
from tiller.trainer.steering.live_config import CONFIG_FILENAME, parse_live_file, render_live_file, write_atomic
from tiller.trainer.steering.review import AcceptedChange
from tiller.trainer.steering.steer import Steering, StopRequested

# Keras-style names (seed 004's history: loss, accuracy, val_loss, val_accuracy) and
# the short ones, as the dashboard's series names.
METRIC_ALIASES = {
    "loss": "train/loss", "accuracy": "train/accuracy", "acc": "train/accuracy",
    "train_acc": "train/accuracy", "val_acc": "val/accuracy",
}


@dataclass(frozen=True)
class Change:
    """One key's new value, validated and recorded as config ``version``; yours to apply."""

    key: str
    old: Any
    new: Any
    version: int
    source: str  # dashboard, cli, file, llm, autopilot, ...
    reason: str


def run(config: str | Path | Mapping[str, Any], *, steers: Collection[str] | None = None,
        runs_dir: str | Path | None = None, name: str | None = None, dataset: str = "own loop",
        say: Callable[[str], None] = print) -> "SteeredRun":
    """Open a run of your own loop; use it as ``with tiller.run(...) as run:``.

    ``config``: a JSON config file or a dict of Tiller's config keys (``tiller keys``
    lists them; missing keys take their defaults). ``steers``: the hot keys your
    loop reads and applies. ``runs_dir``: default ``./runs`` or ``$TILLER_RUNS_DIR``.
    Raises ``ConfigError`` (a ``ValueError``) naming every problem of the config.
    """
    values = dict(config) if isinstance(config, Mapping) else parse_live_file(
        Path(config).read_text(encoding="utf-8")).values
    validated = validate_config(values)
    # By default the hot keys the config sets, and num_epochs, which epochs() itself reads.
    default = [key for key in hot_keys() if key in values or key == "num_epochs"]
    steered = check_run_hot_keys(steers if steers is not None else default)
    source = "started from a dict" if isinstance(config, Mapping) else f"started from {config}"
    return SteeredRun(Store(runs_dir), validated, steered, name=name, dataset=dataset, reason=source, say=say)


class SteeredRun:
    """A run of your own training loop; see the module's docstring."""

    def __init__(self, store: Store, config: TrainConfig, steers: list[str], *, name: str | None, dataset: str,
                 reason: str, say: Callable[[str], None]):
        self.store, self.steers, self.say = store, steers, say
        self.start_config, self.name, self.dataset, self.reason = config, name, dataset, reason
        self._run: Run | None = None
        self._steering: Steering | None = None
        self._queue: list[Change] = []
        self.epoch = 0  # the epoch in progress, 0 before the first
        self._epoch_began = 0.0
        self._paused = 0.0  # seconds paused in the epoch in progress
        self._hands_over = False  # the loop calls changes(): edits wait for it
        self._logged_epoch = 0  # the last epoch log() wrote
        self._samples_recorded = False  # log_predictions: labels and class names go in once

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> "SteeredRun":
        config = self.start_config
        # OWN_LOOP: `tiller resume` refuses it, since only this script can go on with its model and data.
        self._run = self.store.start_run(model=config.model_name, dataset=self.dataset, name=self.name,
                                         hot_keys=self.steers, trainer=OWN_LOOP).__enter__()
        try:
            write_atomic(self._run.dir / CONFIG_FILENAME, render_live_file(config.model_dump()))
            self._run.config_version(config.model_dump(), source="api", reason=self.reason, epoch=1)
            self._run.event("info", f"Started {config.model_name} in its own training loop; it steers "
                                    f"{', '.join(self.steers) or 'nothing'}.")
            self._steering = Steering(self._run, config, self.say, hot_keys=self.steers).__enter__()
        except BaseException as exc:
            self._run.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self.say(f"run {self.id}  (steer it in the dashboard, or by editing {self.config_path})")
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._steering is not None:
            self._steering.__exit__(exc_type, exc, tb)
        stop = exc_type is not None and issubclass(exc_type, StopRequested)
        if stop:
            self._steering.stopped(self.epoch, where="" if self.epoch else between_epochs(1))
            exc_type = exc = tb = None  # a stop request ends the run as stopped, not failed
        self._run.__exit__(exc_type, exc, tb)
        return stop

    # ------------------------------------------------------------ what you read

    @property
    def id(self) -> str:
        return self._live_run().id

    @property
    def dir(self) -> Path:
        return self._live_run().dir

    @property
    def config_path(self) -> Path:
        """The live config file: save an edit there and it applies at the next epoch boundary."""
        return self.dir / CONFIG_FILENAME

    @property
    def config(self) -> TrainConfig:
        """The config in force: every change taken so far is in it."""
        return self._live_steering().config

    # ------------------------------------------------------------ the loop

    def epochs(self) -> Iterator[int]:
        """1, 2, ... while ``config.num_epochs`` (re-read at every boundary) allows and nobody stops the run.

        At each boundary a pause request waits and a stop request ends the loop
        and the run as stopped. A loop that never calls ``changes`` gets each edit
        here, in ``run.config``; once it calls ``changes``, edits wait for that
        call, so each is recorded at the epoch the loop really applies it.
        """
        epoch = 1
        while True:
            try:  # a pause first: an edit made while paused applies to the epoch about to start
                self._paused = self._live_steering().at_step(epoch, -1)
            except StopRequested:
                self._live_steering().stopped(epoch - 1, where=between_epochs(epoch))
                return
            if not self._hands_over:
                self._take(epoch)
            if epoch > self.config.num_epochs:
                return
            self.epoch, self._epoch_began = epoch, time.perf_counter()
            yield epoch
            epoch += 1

    def step(self) -> None:
        """Call between optimizer steps: a pause waits here, a stop raises ``StopRequested``.

        Leaving the ``with`` block on ``StopRequested`` ends the run as stopped.
        """
        self._paused += self._live_steering().at_step(max(self.epoch, 1), 0)

    def changes(self) -> list[Change]:
        """Every change accepted since the last call, validated and recorded: apply each now.

        Takes the edit pending now, if any. Called after the epoch's ``log``, its
        changes are recorded at the next epoch; called before, at this one.
        """
        self._hands_over = True
        self._take(self.epoch + 1 if self._logged_epoch >= self.epoch else self.epoch)
        taken, self._queue = self._queue, []
        return taken

    def log(self, metrics: Mapping[str, float] | None = None, *, epoch: int | None = None, **named: float) -> None:
        """Log the epoch's metrics: ``train_loss=...``, ``val_accuracy=...``, ``lr=...`` or ``{"val/loss": ...}``.

        ``train_x`` / ``val_x`` become the dashboard's ``train/x`` / ``val/x`` series
        (Keras names such as ``loss`` and ``val_acc`` too); ``epoch_seconds`` is
        added when not given, without the time spent paused.
        """
        values = {**(metrics or {}), **{series_name(key): value for key, value in named.items()}}
        if "epoch_seconds" not in values and self._epoch_began:
            values["epoch_seconds"] = time.perf_counter() - self._epoch_began - self._paused
        epoch = epoch or max(self.epoch, 1)
        self._live_run().log(epoch, values)
        self._logged_epoch = max(self._logged_epoch, epoch)

    def log_predictions(self, probs, labels, *, class_names: list[str] | None = None,
                        sample_ids: list[str] | None = None, epoch: int | None = None) -> None:
        """The validation set's class probabilities this epoch: the dashboard's Evaluation page draws them.

        ``probs``: (samples, classes), or (samples,) for a binary model's probability
        of the positive class; ``labels``: the true class index of each sample, in
        the same order every epoch (the first call records them, with the class
        names and ids, default "0", "1", ...).
        """
        probs = as_class_probabilities(probs)
        if not self._samples_recorded:
            labels = np.asarray(labels).astype(np.int64).reshape(-1)
            if len(labels) != len(probs):
                raise ValueError(f"{len(probs)} rows of probabilities but {len(labels)} labels")
            names = list(class_names) if class_names is not None else [str(k) for k in range(probs.shape[1])]
            if len(names) != probs.shape[1]:
                raise ValueError(f"{probs.shape[1]} classes of probabilities but {len(names)} class names")
            self._live_run().val_samples(labels=labels, class_names=names,
                                         sample_ids=list(sample_ids) if sample_ids is not None else
                                         [str(i) for i in range(len(labels))],
                                         task="binary" if probs.shape[1] == 2 else "multiclass")
            self._samples_recorded = True
        self._live_run().predictions(epoch or max(self.epoch, 1), probs)

    def event(self, level: str, message: str) -> None:
        """A line in the run's event log (``info``, ``warning`` or ``error``)."""
        self._live_run().event(level, message, self.epoch or None)

    # ------------------------------------------------------------ inside

    def _take(self, epoch: int) -> None:
        steering = self._live_steering()
        change = steering.next_change(epoch)
        if change is None:
            return
        version = steering.commit(change, epoch, ["Handed to the training loop"])
        self._queue += changes_of(change, version)

    def _live_run(self) -> Run:
        if self._run is None:
            raise RuntimeError("use the run inside its block: with tiller.run(...) as run: ...")
        return self._run

    def _live_steering(self) -> Steering:
        self._live_run()
        return self._steering


def as_class_probabilities(probs) -> np.ndarray:
    """(samples, classes) float32 from a tensor or array; a binary model's (samples,) becomes [1 - p, p]."""
    if hasattr(probs, "detach"):  # a torch tensor, on any device
        probs = probs.detach().float().cpu().numpy()
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim == 2 and probs.shape[1] == 1:
        probs = probs[:, 0]
    if probs.ndim == 1:
        probs = np.stack([1 - probs, probs], axis=1)
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be (samples, classes) or (samples,), not shape {probs.shape}")
    return probs


def between_epochs(next_epoch: int) -> str:
    return f"after epoch {next_epoch - 1}" if next_epoch > 1 else "before the first epoch"


def changes_of(change: AcceptedChange, version: int) -> list[Change]:
    return [Change(key=key, old=old, new=new, version=version, source=change.note.source, reason=change.note.reason)
            for key, (old, new) in change.diff.items()]


def series_name(key: str) -> str:
    """``train_loss`` → ``train/loss``; Keras names (``val_acc``) → the dashboard's; others as they are."""
    if key in METRIC_ALIASES:
        return METRIC_ALIASES[key]
    for split in ("train", "val"):
        if key.startswith(split + "_"):
            return f"{split}/{key[len(split) + 1:]}"
    return key
