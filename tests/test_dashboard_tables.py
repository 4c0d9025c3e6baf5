"""The dashboard's pure helpers: tables, steering decisions, text."""

from __future__ import annotations

import pandas as pd
import pytest

from tiller.dashboard import display, steering, tables
from tiller.trainer.steering.config import TrainConfig

CONFIG = TrainConfig().model_dump()


def test_config_diff_table_keeps_only_differing_keys():
    configs = {"a": CONFIG, "b": {**CONFIG, "learning_rate": 0.01}, "c": {**CONFIG, "seed": 7}}
    table = tables.config_diff_table(configs)
    assert list(table["key"]) == ["seed", "learning_rate"]
    assert table.set_index("key").loc["learning_rate"].tolist() == ["0.001", "0.01", "0.001"]


def test_config_diff_table_shows_a_key_missing_from_one_config():
    old = {**CONFIG, "retired_key": ""}  # recorded under an older schema
    table = tables.config_diff_table({"old": old, "new": CONFIG})
    assert table.to_dict("records") == [{"key": "retired_key", "old": '""', "new": tables.ABSENT}]


def test_config_diff_table_of_identical_configs_is_empty():
    assert tables.config_diff_table({"a": CONFIG, "b": dict(CONFIG)}).empty


def test_final_metrics_table_takes_the_last_epoch_and_the_best_val_accuracy():
    runs = pd.DataFrame([{"id": "r1", "status": "finished", "epoch": 2, "num_epochs": 2}])
    metrics = pd.DataFrame(
        [
            {"run_id": "r1", "epoch": 1, "split": "val", "name": "accuracy", "value": 0.9},
            {"run_id": "r1", "epoch": 2, "split": "val", "name": "accuracy", "value": 0.8},
            {"run_id": "r1", "epoch": 2, "split": "train", "name": "loss", "value": 0.3},
        ]
    )
    row = tables.final_metrics_table(runs, metrics, {"r1": "first"}).iloc[0]
    assert (row["run"], row["epochs"], row["val accuracy"], row["best val accuracy"]) == ("first", 2, 0.8, 0.9)
    assert row["train loss"] == 0.3 and row["val loss"] is None


def test_changed_values_leaves_out_untouched_keys():
    submitted = {"learning_rate": 0.01, "batch_size": 32, "num_epochs": 20}
    assert steering.changed_values(submitted, CONFIG) == {"learning_rate": 0.01}


@pytest.mark.parametrize(
    ("updates", "done", "problem"),
    [
        ({"learning_rate": 0.0}, 0, "learning_rate"),
        ({"batch_size": 0}, 0, "batch_size"),
        ({"num_epochs": 3}, 5, "below the 5 epochs already trained"),
        ({"model_name": "resnet18"}, 0, "model_name: fixed for the life of the run"),
    ],
)
def test_change_problems_names_the_key(updates, done, problem):
    assert any(problem in p for p in steering.change_problems(CONFIG, updates, done))


def test_change_problems_accepts_a_valid_change():
    assert steering.change_problems(CONFIG, {"learning_rate": 0.01, "num_epochs": 5}, 5) == []


def test_change_problems_and_the_config_table_follow_the_runs_own_hot_keys():
    loop_keys = ["learning_rate", "num_epochs"]  # a user's loop that reads only these
    assert steering.change_problems(CONFIG, {"learning_rate": 0.01}, 5, loop_keys) == []
    problems = steering.change_problems(CONFIG, {"batch_size": 64}, 5, loop_keys)
    assert problems == ["batch_size: this run's training loop does not read it (it steers num_epochs, "
                        "learning_rate); it stays 32 for the life of the run"]
    changes = tables.config_table(CONFIG, loop_keys).set_index("key")["changes"]
    assert changes["learning_rate"] == "at the next epoch" and changes["batch_size"] == "fixed for the run"
    assert tables.config_table(CONFIG).set_index("key")["changes"]["batch_size"] == "at the next epoch"


@pytest.mark.parametrize(
    ("status", "requested", "pause", "resume", "stop"),
    [
        ("running", "run", True, False, True),
        ("running", "pause", False, True, True),  # a pause asked for but not reached yet
        ("paused", "pause", False, True, True),
        ("running", "stop", False, False, False),
        ("finished", "run", False, False, False),
        ("crashed", "pause", False, False, False),
    ],
)
def test_allowed_controls(status, requested, pause, resume, stop):
    assert steering.allowed_controls(status, requested) == {"pause": pause, "run": resume, "stop": stop}


def test_md_escape_keeps_user_text_literal():
    assert display.md_escape("[click](http://x) :red[y] *z*") == r"\[click\](http\://x) \:red\[y\] \*z\*"


def test_local_time_uses_the_given_zone():
    assert display.local_time(0, "Asia/Tokyo") == "1970-01-01 09:00:00"
    assert display.local_time(float("nan")) == ""


def test_events_markdown_keeps_each_event_on_one_escaped_row():
    events = pd.DataFrame([{"time": 0.0, "epoch": 3.0, "level": "error", "message": "a | b\n*not bold*"},
                           {"time": 0.0, "epoch": None, "level": "info", "message": "started"}])
    rows = tables.events_markdown(events, "UTC").splitlines()
    assert rows[0] == "| time | epoch | level | message |" and len(rows) == 4
    assert rows[2] == "| 1970‑01‑01\u00a000:00:00 | 3 | 🔴\u00a0error | a \\| b \\*not bold\\* |"
    assert rows[3].endswith("| ℹ️\u00a0info | started |")


def test_local_clock_is_the_time_of_day_in_the_given_zone():
    assert display.local_clock(3_600, "America/New_York") == "20:00:00"


@pytest.mark.parametrize(("seconds", "text"), [(42, "42 s"), (370, "6 min"), (5_400, "1 h 30 min")])
def test_duration_text(seconds, text):
    assert display.duration_text(seconds) == text


def pace_metrics(seconds: list[float]) -> pd.DataFrame:
    rows = [{"epoch": epoch, "split": "", "name": "epoch_seconds", "value": value}
            for epoch, value in enumerate(seconds, start=1)]
    rows += [{"epoch": epoch, "split": "", "name": "samples_per_sec", "value": 1_450.0}
             for epoch in range(1, len(seconds) + 1)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("status", "line"),
    [
        ("running", "Epoch 5/40 · 10.0 s per epoch · 1,450 samples/s · about 6 min left"),
        ("paused", "Epoch 5/40 · 10.0 s per epoch · 1,450 samples/s · paused"),
        ("stopped", "Epoch 5/40 · 10.0 s per epoch · 1,450 samples/s"),
    ],
)
def test_progress_line_gives_the_pace_of_the_last_epochs(status, line):
    run = {"status": status, "epoch": 5, "num_epochs": 40}
    assert display.progress_line(run, pace_metrics([60.0, 60.0, 9.0, 10.0, 11.0])) == line


def test_progress_line_without_timings_is_the_epoch_count():
    empty = pd.DataFrame(columns=["epoch", "split", "name", "value"])
    assert display.progress_line({"status": "running", "epoch": None, "num_epochs": 40}, empty) == "Epoch 0/40"


# ------------------------------------------------------------- a change sent from the form


def config_history(*configs: dict, start: float = 100.0) -> pd.DataFrame:
    return pd.DataFrame([{"version": n, "epoch": 2 * n, "config": c, "time": start + n}
                         for n, c in enumerate(configs, start=1)])


NO_EVENTS = pd.DataFrame(columns=["time", "epoch", "level", "message"])
SENT = steering.SentChange(updates={"learning_rate": 0.01}, before={"learning_rate": 0.001}, version=1, time=100.0)


def test_a_sent_change_is_pending_while_the_live_file_asks_for_it():
    pending = {"changes": {"learning_rate": [0.001, 0.01]}, "control": "run"}
    outcome = steering.sent_outcome(SENT, config_history(CONFIG), pending, NO_EVENTS, "running")
    assert outcome.state == "pending"


def test_a_sent_change_is_applied_as_the_first_later_version_holding_it():
    history = config_history(CONFIG, {**CONFIG, "batch_size": 64}, {**CONFIG, "batch_size": 64, "learning_rate": 0.01})
    outcome = steering.sent_outcome(SENT, history, None, NO_EVENTS, "running")
    assert (outcome.state, outcome.version, outcome.epoch, outcome.time) == ("applied", 3, 6, 103.0)


def test_a_sent_change_the_run_refused_carries_the_runs_words():
    events = pd.DataFrame([{"time": 99.0, "epoch": 1, "level": "error", "message": "before it was sent"},
                           {"time": 101.0, "epoch": 3, "level": "error", "message": "Rejected config edit: no."}])
    outcome = steering.sent_outcome(SENT, config_history(CONFIG), None, events, "running")
    assert (outcome.state, outcome.message) == ("refused", "Rejected config edit: no.")


@pytest.mark.parametrize(("status", "state"), [("stopped", "ended"), ("running", "replaced")])
def test_a_sent_change_nobody_asks_for_any_more(status, state):
    pending = {"changes": {"learning_rate": [0.001, 0.02]}, "control": "run"}  # edited from elsewhere since
    assert steering.sent_outcome(SENT, config_history(CONFIG), pending, NO_EVENTS, status).state == state


def test_run_labels_add_the_id_only_when_names_repeat():
    runs = pd.DataFrame({"id": ["a1", "a2", "b1"], "name": ["same", "same", "b1"]})
    assert display.run_labels(runs) == {"a1": "same (a1)", "a2": "same (a2)", "b1": "b1"}


def test_in_force_table_reads_a_real_state_file(tmp_path):
    from tiller.store import Store
    from tiller.trainer.steering.config import validate_config
    from tiller.trainer.engine.loop import train
    from tiller.trainer.steering.live_config import STATE_FILENAME
    import json

    config = validate_config({"num_epochs": 1, "use_augmentation": True, "model_ema": True, "optimizer": "SGD"})
    run_id = train(config, Store(tmp_path), say=lambda message: None)
    state = json.loads((tmp_path / run_id / STATE_FILENAME).read_text())
    table = dict(zip(*tables.in_force_table(state).to_dict("list").values()))
    assert table["optimizer"].startswith("SGD (lr 0.001")
    assert table["augmentation"].startswith("45 of 45 batches augmented")
    assert table["batches"].startswith("45 batches of up to 32 samples, 45 optimizer steps")
    assert table["weight average (EMA)"].startswith("decay 0.9999, 45 updates")
