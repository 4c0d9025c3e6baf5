"""``tiller.run``: a user's own training loop, steered like the built-in trainer.

First the API in-process, with short loops that train nothing; then
``examples/imdb_own_loop.py`` as a real process, steered through the real CLI.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tiller
from tiller.store import Store
from tiller.trainer.data.sample_data import SEED, make_reviews, write_imdb_npz

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "imdb_own_loop.py"
EXAMPLE_CONFIG = REPO / "examples" / "imdb_own_loop.json"
LOOP_KEYS = ["learning_rate", "batch_size", "num_epochs", "dropout_rate"]
STEERED_IN_FIELD_ORDER = "num_epochs, batch_size, learning_rate, dropout_rate"
# Long enough that no run ends before the test has steered it; each test's `tiller set` ends it early.
NEVER_ENDING = 10_000


def quiet(message: str) -> None:
    pass


def start(runs_dir: Path, steers=LOOP_KEYS, **config) -> tiller.SteeredRun:
    values = {"model_name": "unit_loop", "learning_rate": 0.01, "batch_size": 8, "num_epochs": 3, **config}
    return tiller.run(values, steers=steers, runs_dir=runs_dir, say=quiet)


def edit_live_file(run: tiller.SteeredRun, **values) -> None:
    """Save an edit as a user would in an editor: the whole file, atomically replaced."""
    data = json.loads(run.config_path.read_text(encoding="utf-8"))
    temporary = run.config_path.with_suffix(".tmp")
    temporary.write_text(json.dumps({**data, **values}), encoding="utf-8")
    os.replace(temporary, run.config_path)


def series(store: Store, run_id: str, split: str, name: str) -> dict[int, float]:
    rows = store.metrics([run_id], names=[name], splits=[split])
    return dict(zip(rows["epoch"].astype(int), rows["value"]))


def messages(store: Store, run_id: str, level: str | None = None) -> list[str]:
    events = store.events(run_id)
    return list(events["message"] if level is None else events[events["level"] == level]["message"])


# ------------------------------------------------------------------- the API, in-process


def test_log_maps_loop_and_keras_names_to_the_dashboards_series(tmp_path):
    with start(tmp_path, num_epochs=2) as run:
        for epoch in run.epochs():
            if epoch == 1:
                run.log(train_loss=0.5, train_accuracy=0.6, val_loss=0.7, val_accuracy=0.8, lr=0.01)
            else:  # seed 004's Keras history names
                run.log(loss=0.4, accuracy=0.7, val_acc=0.85, **{"val/loss": 0.6})
    store = Store(tmp_path)
    assert series(store, run.id, "train", "loss") == {1: 0.5, 2: 0.4}
    assert series(store, run.id, "train", "accuracy") == {1: 0.6, 2: 0.7}
    assert series(store, run.id, "val", "loss") == {1: 0.7, 2: 0.6}
    assert series(store, run.id, "val", "accuracy") == {1: 0.8, 2: 0.85}
    assert list(series(store, run.id, "", "lr")) == [1]
    assert list(series(store, run.id, "", "epoch_seconds")) == [1, 2]  # added when not given
    assert store.run(run.id)["status"] == "finished"
    assert store.run(run.id)["hot_keys"] == ["num_epochs", "batch_size", "learning_rate", "dropout_rate"]


def test_an_edit_saved_in_the_live_file_is_handed_over_at_the_next_boundary(tmp_path):
    handed = {}
    with start(tmp_path) as run:
        for epoch in run.epochs():
            if epoch == 1:
                edit_live_file(run, learning_rate=0.05, dropout_rate=0.3)
            handed[epoch] = run.changes()
            run.log(lr=run.config.learning_rate)
    assert handed[1] == [
        tiller.Change("learning_rate", 0.01, 0.05, version=2, source="file", reason=""),
        tiller.Change("dropout_rate", 0.2, 0.3, version=2, source="file", reason=""),
    ]
    assert handed[2] == handed[3] == []
    store = Store(tmp_path)
    versions = store.config_versions(run.id)
    # changes() came before epoch 1's log: the loop applies it in epoch 1, and it is recorded there
    assert list(versions["version"]) == [1, 2] and list(versions["epoch"]) == [1, 1]
    assert list(versions["source"]) == ["api", "file"]
    assert store.current_config(run.id)["learning_rate"] == 0.05
    # run.config took the change at once, so the lr logged after it is already the new one
    assert series(store, run.id, "", "lr") == {1: 0.05, 2: 0.05, 3: 0.05}
    assert json.loads(run.config_path.read_text())["learning_rate"] == 0.05


def test_a_bad_edit_keeps_the_config_and_is_kept_beside_it_with_an_error_event(tmp_path):
    with start(tmp_path, num_epochs=2) as run:
        for epoch in run.epochs():
            if epoch == 1:
                edit_live_file(run, learning_rate=-1.0)
            assert run.changes() == []
            assert run.config.learning_rate == 0.01
    store = Store(tmp_path)
    assert list(store.config_versions(run.id)["version"]) == [1]
    errors = messages(store, run.id, "error")
    assert len(errors) == 1 and "learning_rate" in errors[0] and "Rejected config edit" in errors[0]
    rejected = list(run.dir.glob("config.rejected-*.json"))
    assert len(rejected) == 1 and json.loads(rejected[0].read_text())["learning_rate"] == -1.0
    assert json.loads(run.config_path.read_text())["learning_rate"] == 0.01  # the file shows what is in force
    assert store.run(run.id)["status"] == "finished"


def test_raising_num_epochs_mid_run_extends_the_epochs(tmp_path):
    with start(tmp_path, num_epochs=2) as run:
        seen = []
        for epoch in run.epochs():
            seen.append(epoch)
            if epoch == 1:
                edit_live_file(run, num_epochs=4)
            run.log(train_loss=1.0 / epoch)
            run.changes()
    assert seen == [1, 2, 3, 4]
    store = Store(tmp_path)
    assert store.run(run.id)["status"] == "finished" and store.run(run.id)["epoch"] == 4
    assert store.config_versions(run.id)["epoch"].tolist() == [1, 2]


def test_a_stop_request_ends_the_epochs_at_a_boundary_and_the_run_as_stopped(tmp_path):
    with start(tmp_path, num_epochs=500) as run:
        for epoch in run.epochs():  # no run.step(): only the boundary can see the stop
            run.log(train_loss=1.0 / epoch)
            if epoch == 1:
                edit_live_file(run, control="stop")
            time.sleep(0.01)  # the watcher's notification arrives on its own thread
    store = Store(tmp_path)
    record = store.run(run.id)
    assert record["status"] == "stopped"
    assert 1 <= record["epoch"] < 500
    assert f"Stopped after epoch {record['epoch']} on request." in messages(store, run.id, "warning")


def test_a_stop_request_between_steps_ends_the_run_as_stopped_not_failed(tmp_path):
    with start(tmp_path, num_epochs=500) as run:
        for epoch in run.epochs():
            run.log(train_loss=1.0 / epoch)
            if epoch == 2:
                edit_live_file(run, control="stop")
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:  # the watcher's notification arrives on its own thread
                    run.step()
                    time.sleep(0.01)
                pytest.fail("run.step() never raised StopRequested")
    # the with-block took StopRequested: we get here
    assert run.epoch == 2
    record = Store(tmp_path).run(run.id)
    assert record["status"] == "stopped" and record["epoch"] == 2


@pytest.mark.parametrize(("takes_changes", "applied_from"), [
    ("never", 2),         # run.config carries it from the boundary the pause held
    ("before log", 2),    # handed over at the top of epoch 2, where the loop applies it
    ("after log", 3),     # handed over after epoch 2's log: the loop applies it from epoch 3
])
def test_an_edit_made_while_paused_is_recorded_at_the_epoch_the_loop_applies_it(tmp_path, takes_changes, applied_from):
    def edit_while_paused_then_resume(run: tiller.SteeredRun) -> None:
        store = Store(tmp_path)
        deadline = time.monotonic() + 10
        while store.run(run.id)["status"] != "paused" and time.monotonic() < deadline:
            time.sleep(0.02)
        edit_live_file(run, learning_rate=0.05, control="run")

    lr_used, lr = {}, None
    with start(tmp_path, num_epochs=3) as run:
        lr = run.config.learning_rate
        for epoch in run.epochs():  # no run.step(): the pause can only be seen at the boundary
            if takes_changes == "never":
                lr = run.config.learning_rate
            elif takes_changes == "before log":
                lr = next((c.new for c in run.changes() if c.key == "learning_rate"), lr)
            lr_used[epoch] = lr
            run.log(train_loss=1.0, lr=lr)
            if epoch == 1:
                edit_live_file(run, control="pause")
                time.sleep(0.2)  # let the watcher see it before the boundary
                threading.Thread(target=edit_while_paused_then_resume, args=(run,), daemon=True).start()
            if takes_changes == "after log":
                lr = next((c.new for c in run.changes() if c.key == "learning_rate"), lr)
    store = Store(tmp_path)
    assert "Paused in epoch 2 before it starts." in messages(store, run.id)
    assert lr_used == {e: 0.01 if e < applied_from else 0.05 for e in (1, 2, 3)}
    assert store.config_versions(run.id)["epoch"].tolist() == [1, applied_from]


def test_logged_predictions_feed_the_evaluation_page(tmp_path):
    import torch

    labels = np.array([0, 1, 1, 0, 1])
    with start(tmp_path, num_epochs=2) as run:
        for epoch in run.epochs():
            positive = torch.tensor([0.1, 0.8, 0.6, 0.3, 0.2 * epoch])  # a binary model's sigmoid
            run.log_predictions(positive, labels, class_names=["negative", "positive"])
    store = Store(tmp_path)
    second = store.predictions(run.id, 2)
    assert second.task == "binary" and second.class_names == ["negative", "positive"]
    assert second.labels.tolist() == labels.tolist() and second.sample_ids == ["0", "1", "2", "3", "4"]
    stored = second.probs  # kept at float16 precision
    assert np.allclose(stored[:, 1], [0.1, 0.8, 0.6, 0.3, 0.4], atol=1e-3) and np.allclose(stored.sum(1), 1, atol=1e-3)
    assert np.allclose(store.predictions(run.id, 1).probs[4], [0.8, 0.2], atol=1e-3)


def test_predictions_that_do_not_match_their_labels_are_refused(tmp_path):
    with start(tmp_path, num_epochs=1) as run:
        for _ in run.epochs():
            with pytest.raises(ValueError, match="3 rows of probabilities but 2 labels"):
                run.log_predictions(np.full((3, 4), 0.25), [0, 1])
            with pytest.raises(ValueError, match="4 classes of probabilities but 2 class names"):
                run.log_predictions(np.full((2, 4), 0.25), [0, 1], class_names=["a", "b"])
            with pytest.raises(ValueError, match="not shape"):
                run.log_predictions(np.zeros((2, 2, 2)), [0, 1])


def test_an_exception_in_the_loop_marks_the_run_failed(tmp_path):
    with pytest.raises(RuntimeError, match="out of memory"):
        with start(tmp_path) as run:
            for epoch in run.epochs():
                run.log(train_loss=1.0)
                if epoch == 2:
                    raise RuntimeError("out of memory")
    record = Store(tmp_path).run(run.id)
    assert record["status"] == "failed" and "Traceback" in record["error"] and "out of memory" in record["error"]
    assert record["epoch"] == 2


@pytest.mark.parametrize("steers, problem", [
    (["learning_rate", "learnig_rate"], "learnig_rate: unknown key; did you mean 'learning_rate'?"),
    (["model_name"], "model_name: fixed for every run"),
    ("learning_rate", "must be a list of key names"),
])
def test_steers_with_an_unknown_or_fixed_key_is_refused_before_a_run_starts(tmp_path, steers, problem):
    with pytest.raises(tiller.ConfigError) as info:
        start(tmp_path, steers=steers)
    assert any(problem in p for p in info.value.problems), info.value.problems
    assert Store(tmp_path).runs().empty


def test_steers_defaults_to_the_hot_keys_the_config_sets_and_num_epochs(tmp_path):
    with tiller.run({"learning_rate": 0.01, "model_name": "x"}, runs_dir=tmp_path, say=quiet) as run:
        assert run.steers == ["num_epochs", "learning_rate"]


# ------------------------------------------------------------------- the example, as a real process


@pytest.fixture(scope="module")
def imdb_npz(tmp_path_factory) -> Path:
    """The imdb.npz `tiller make-sample-data` writes (same seed, same reviews), without the image sets."""
    path = tmp_path_factory.mktemp("sample-data") / "imdb.npz"
    write_imdb_npz(path, make_reviews(np.random.default_rng(SEED)))
    return path


def tiller_cli(runs_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """The installed `tiller` command, as a user types it."""
    script = Path(sys.executable).with_name("tiller")
    command = [str(script)] if script.exists() else [sys.executable, "-c", "from tiller.trainer.cli.commands import main; main()"]
    return subprocess.run([*command, *args, "--runs-dir", str(runs_dir)], capture_output=True, text=True,
                          timeout=60, cwd=REPO)


class Example:
    """``examples/imdb_own_loop.py`` running in its own process, its output in a file (a pipe could fill up)."""

    def __init__(self, tmp_path: Path, imdb_npz: Path, **config):
        self.runs_dir, self.output = tmp_path / "runs", tmp_path / "example.out"
        config_path = tmp_path / "config.json"
        config_path.write_text(json.dumps({**json.loads(EXAMPLE_CONFIG.read_text()), **config}))
        with open(self.output, "w") as output:
            self.process = subprocess.Popen(
                [sys.executable, str(EXAMPLE), "--config", str(config_path), "--data", str(imdb_npz),
                 "--runs-dir", str(self.runs_dir)], stdout=output, stderr=subprocess.STDOUT, cwd=tmp_path)

    def wait_until_started(self) -> None:
        self.run_id = self.wait_for(self.started_run, "the run to start")
        self.store = Store(self.runs_dir)  # only now: the example has created the database

    def started_run(self) -> str | None:
        live_files = list(self.runs_dir.glob("*/config.json"))
        return live_files[0].parent.name if live_files else None

    def wait_for(self, condition, what: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = condition()
            if found:
                return found
            if self.process.poll() is not None:
                raise AssertionError(f"the example exited ({self.process.returncode}) while waiting for "
                                     f"{what}:\n{self.printed()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.printed()}")

    def epochs_logged(self) -> int:
        return len(series(self.store, self.run_id, "val", "accuracy"))

    def status(self) -> str:
        return self.store.run(self.run_id)["status"]

    def finish(self, timeout: float = 60) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"the example did not finish:\n{self.printed()}") from None

    def printed(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def start_example(tmp_path, imdb_npz):
    """Start the example with these config overrides; a failed test must not leave it training."""
    started: list[Example] = []

    def start(**config) -> Example:
        example = Example(tmp_path, imdb_npz, **config)
        started.append(example)
        example.wait_until_started()
        return example

    yield start
    for example in started:
        if example.process.poll() is None:
            example.process.kill()
            example.process.wait(10)


def test_the_example_is_paused_steered_from_the_cli_and_resumed(start_example):
    example = start_example(num_epochs=NEVER_ENDING, learning_rate=0.01, batch_size=32)
    example.wait_for(lambda: example.epochs_logged() >= 1, "the first epoch")

    assert tiller_cli(example.runs_dir, "pause", example.run_id).returncode == 0
    example.wait_for(lambda: example.status() == "paused", "the pause")
    paused = next(m for m in messages(example.store, example.run_id) if m.startswith("Paused in epoch"))
    paused_in = int(re.match(r"Paused in epoch (\d+)", paused).group(1))
    # The example takes changes after each epoch's log: the edit applies from the epoch after the paused one.
    applies_at, last = paused_in + 1, paused_in + 3

    refused = tiller_cli(example.runs_dir, "set", example.run_id, "weight_decay=0.01")
    assert refused.returncode == 2
    assert "weight_decay: this run's training loop does not read it" in refused.stderr
    assert f"it steers {STEERED_IN_FIELD_ORDER}" in refused.stderr

    reason = "bigger steps on bigger batches"
    sent = tiller_cli(example.runs_dir, "set", example.run_id, "learning_rate=0.02", "batch_size=64",
                      f"num_epochs={last}", "--reason", reason)
    assert sent.returncode == 0, sent.stderr
    assert tiller_cli(example.runs_dir, "resume", example.run_id).returncode == 0
    assert example.finish() == 0, example.printed()

    shown = tiller_cli(example.runs_dir, "show", example.run_id, "--json")
    details = json.loads(shown.stdout)
    assert details["run"]["status"] == "finished" and details["run"]["epoch"] == last
    evaluated = example.store.predictions(example.run_id, last)  # what the Evaluation page draws
    assert evaluated.class_names == ["negative", "positive"] and evaluated.task == "binary"
    assert [v["version"] for v in details["config_versions"]] == [1, 2]  # the refused key left no version
    first, second = details["config_versions"]
    assert first["source"] == "api" and first["config"]["weight_decay"] == 0.0
    assert (second["source"], second["reason"], second["epoch"]) == ("cli", reason, applies_at)
    assert (second["config"]["learning_rate"], second["config"]["batch_size"]) == (0.02, 64)
    assert second["config"]["weight_decay"] == 0.0

    lr = {m["epoch"]: m["value"] for m in details["metrics"] if m["name"] == "lr"}
    assert sorted(lr) == list(range(1, last + 1))
    assert {epoch for epoch, value in lr.items() if value == 0.02} == set(range(applies_at, last + 1))
    assert {epoch for epoch, value in lr.items() if value == 0.01} == set(range(1, applies_at))

    printed = example.printed()
    assert f"applied learning_rate 0.01 -> 0.02 (config v2 from cli: {reason})" in printed
    assert f"applied batch_size 32 -> 64 (config v2 from cli: {reason})" in printed
    assert f"epoch {last}/{last} " in printed and "test accuracy" in printed


def test_the_example_stopped_from_the_cli_ends_as_stopped_with_its_epochs_kept(start_example):
    example = start_example(num_epochs=NEVER_ENDING)
    example.wait_for(lambda: example.epochs_logged() >= 2, "two epochs")

    assert tiller_cli(example.runs_dir, "stop", example.run_id).returncode == 0
    assert example.finish() == 0, example.printed()

    record = example.store.run(example.run_id)
    assert record["status"] == "stopped"
    done = int(record["epoch"])
    assert 2 <= done < NEVER_ENDING
    for split in ("train", "val"):
        for name in ("loss", "accuracy"):
            assert sorted(series(example.store, example.run_id, split, name)) == list(range(1, done + 1))
    # Mid-epoch (the example checks between steps) or, rarely, right at a boundary.
    assert any(m.startswith(("Stopped during epoch", "Stopped after epoch"))
               for m in messages(example.store, example.run_id, "warning"))
    assert "stopped during epoch" in example.printed() or "stopped after epoch" in example.printed()
