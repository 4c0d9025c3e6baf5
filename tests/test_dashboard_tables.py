"""The dashboard's pure helpers: tables, steering decisions, text."""

from __future__ import annotations

import pandas as pd
import pytest

from dashboard import display, steering, tables
from trainer.config import TrainConfig

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


def test_run_labels_add_the_id_only_when_names_repeat():
    runs = pd.DataFrame({"id": ["a1", "a2", "b1"], "name": ["same", "same", "b1"]})
    assert display.run_labels(runs) == {"a1": "same (a1)", "a2": "same (a2)", "b1": "b1"}


def test_in_force_table_reads_a_real_state_file(tmp_path):
    from store import Store
    from trainer.config import validate_config
    from trainer.loop import train
    from trainer.live_config import STATE_FILENAME
    import json

    config = validate_config({"num_epochs": 1, "use_augmentation": True, "model_ema": True, "optimizer": "SGD"})
    run_id = train(config, Store(tmp_path), say=lambda message: None)
    state = json.loads((tmp_path / run_id / STATE_FILENAME).read_text())
    table = dict(zip(*tables.in_force_table(state).to_dict("list").values()))
    assert table["optimizer"].startswith("SGD (lr 0.001")
    assert table["augmentation"].startswith("45 of 45 batches augmented")
    assert table["batches"].startswith("45 batches of up to 32 samples, 45 optimizer steps")
    assert table["weight average (EMA)"].startswith("decay 0.9999, 45 updates")
