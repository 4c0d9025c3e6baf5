"""A run whose own training loop reads only some hot keys: every other key is fixed for it.

The run declares its list when it starts (``Store.start_run(hot_keys=...)``); the
store keeps it, and the review, the dashboard's form, ``tiller set`` and the
advisor all refuse or leave out the keys it does not steer. ``None`` (the
built-in trainer) keeps every hot key steerable.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import sqlite_utils

from tiller.store import Store
from tiller.store.migrations import MIGRATIONS
from tests.test_advisor_rules import advise, by_key, gap_growing
from tests.test_dashboard import button, live_file, run_page, texts
from tiller.trainer.advisor.checks import check_suggestions, combined_problems
from tiller.trainer.advisor.context import adjustable_keys, context_payload
from tiller.trainer.advisor.service import ask
from tiller.trainer.advisor.types import Suggestion
from tiller.trainer.cli.commands import main
from tiller.trainer.steering.config import (
    ConfigError, TrainConfig, check_run_hot_keys, describe_keys, frozen_violations, hot_keys, steerable_keys,
)
from tiller.trainer.steering.live_config import LiveFile, render_live_file
from tiller.trainer.steering.review import review_edit

# What a small user loop reads: the example of the steering API.
LOOP_KEYS = ["learning_rate", "batch_size", "num_epochs", "dropout_rate"]
IN_FIELD_ORDER = ["num_epochs", "batch_size", "learning_rate", "dropout_rate"]
RUN_ID = "loop_20260101_000001"


def seed_loop_run(store: Store, hot_keys=LOOP_KEYS, epochs: int = 3, **config) -> dict:
    """A running run of a user's loop that declared ``hot_keys``: a config version, metrics, its live file."""
    values = TrainConfig(**config).model_dump()
    store.create_run(model="custom", dataset="own", name="my loop", run_id=RUN_ID, hot_keys=hot_keys)
    store.add_config_version(RUN_ID, values, source="cli", reason="initial config", epoch=1)
    for epoch in range(1, epochs + 1):
        store.log_metrics(RUN_ID, epoch, {"train/loss": 1.0 / epoch, "val/loss": 1.1 / epoch,
                                          "train/accuracy": 0.5 + epoch / 20, "val/accuracy": 0.45 + epoch / 20})
    (store.runs_dir / RUN_ID).mkdir(parents=True, exist_ok=True)
    live_file(store, RUN_ID).write_text(render_live_file(values), encoding="utf-8")
    return values


# ------------------------------------------------------------------- store


def test_an_older_database_gets_the_column_and_its_runs_steer_every_hot_key(tmp_path):
    db = sqlite_utils.Database(tmp_path / "tiller.db")
    for index, migration in enumerate(MIGRATIONS[:-1], start=1):  # the schema before the hot_keys column
        migration(db)
        db.execute(f"PRAGMA user_version = {index}")
    db["runs"].insert({"id": "old", "name": "old", "status": "finished", "created": 1.0, "updated": 1.0,
                       "heartbeat": 1.0})
    db.conn.commit()
    db.conn.close()

    store = Store(tmp_path)
    assert "hot_keys" in store.db["runs"].columns_dict
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store.run_hot_keys("old") is None
    assert store.run("old")["hot_keys"] is None


def test_start_run_keeps_the_declared_keys(store):
    with store.start_run(model="custom", dataset="own", hot_keys=LOOP_KEYS) as run:
        run.log(1, {"train/loss": 0.5})
    assert store.run_hot_keys(run.id) == LOOP_KEYS
    assert store.run(run.id)["hot_keys"] == LOOP_KEYS
    assert store.runs().set_index("id").loc[run.id, "hot_keys"] == LOOP_KEYS


def test_no_list_means_every_hot_key_and_an_empty_list_means_none(store):
    everything = store.create_run(model="mlp", dataset="digits")
    nothing = store.create_run(model="custom", dataset="own", hot_keys=[])
    assert store.run_hot_keys(everything) is None and store.run(everything)["hot_keys"] is None
    assert store.run_hot_keys(nothing) == [] and store.run(nothing)["hot_keys"] == []


def test_a_lone_key_name_is_refused_before_a_run_is_recorded(store):
    with pytest.raises(TypeError, match="list of key names"):
        store.start_run(model="custom", dataset="own", hot_keys="learning_rate")
    assert store.runs().empty


# ------------------------------------------------------------------ schema


def test_check_run_hot_keys_names_each_unknown_and_each_fixed_key():
    with pytest.raises(ConfigError) as info:
        check_run_hot_keys(["learning_rate", "learnig_rate", "model_name", "dropout_rate"])
    assert info.value.problems == [
        "learnig_rate: unknown key; did you mean 'learning_rate'?",
        "model_name: fixed for every run (fixed for the run (start a new run to change it)), so no training "
        "loop may steer it",
    ]


def test_check_run_hot_keys_returns_them_in_field_order():
    assert check_run_hot_keys(LOOP_KEYS) == IN_FIELD_ORDER
    assert check_run_hot_keys(LOOP_KEYS + ["learning_rate"]) == IN_FIELD_ORDER  # a repeat counts once
    with pytest.raises(ConfigError, match="not the string"):
        check_run_hot_keys("learning_rate")


def test_steerable_keys_are_every_hot_key_or_the_runs_own():
    assert steerable_keys(None) == hot_keys()
    assert steerable_keys(LOOP_KEYS) == IN_FIELD_ORDER
    assert steerable_keys([]) == []


def test_describe_keys_marks_only_the_runs_keys_hot():
    rows = {row["key"]: row for row in describe_keys(LOOP_KEYS)}
    assert [key for key, row in rows.items() if row["hot"]] == IN_FIELD_ORDER
    assert rows["weight_decay"]["applies"] == "fixed for this run: its training loop does not read it"
    assert rows["learning_rate"]["applies"] == "next epoch"
    assert {row["key"] for row in describe_keys() if row["hot"]} == set(hot_keys())


# ------------------------------------------------------------------ review


def test_review_refuses_a_key_the_loop_does_not_read():
    current = TrainConfig()
    with pytest.raises(ConfigError) as info:
        review_edit(LiveFile(values={"weight_decay": 0.01, "learning_rate": 0.01}), current, 2, hot_keys=LOOP_KEYS)
    assert info.value.problems == [
        "weight_decay: this run's training loop does not read it (it steers num_epochs, batch_size, learning_rate, "
        "dropout_rate); it stays 0.0 for the life of the run"
    ]


def test_review_accepts_the_loops_keys_and_every_hot_key_without_a_list():
    current = TrainConfig()
    change = review_edit(LiveFile(values={"dropout_rate": 0.3}), current, 2, hot_keys=LOOP_KEYS)
    assert change is not None and change.diff == {"dropout_rate": [0.2, 0.3]}
    assert review_edit(LiveFile(values={"weight_decay": 0.01}), current, 2) is not None  # as before: no list
    assert review_edit(LiveFile(values={"weight_decay": 0.0}), current, 2, hot_keys=LOOP_KEYS) is None  # unchanged


def test_a_key_fixed_for_every_run_keeps_its_own_message():
    problems = frozen_violations(TrainConfig(), {"model_name": "resnet18", "momentum": 0.5}, hot_keys=[])
    assert problems[0].startswith("model_name: fixed for the life of the run")
    assert problems[1] == "momentum: this run's training loop does not read it (it steers no key); it stays 0.9 " \
                          "for the life of the run"


# --------------------------------------------------------------- dashboard


def test_the_form_offers_only_the_runs_keys(runs_store):
    seed_loop_run(runs_store)
    at = run_page(RUN_ID)
    assert not at.exception
    offered = {w.key.rsplit("-", 1)[-1] for w in [*at.number_input, *at.checkbox, *at.selectbox, *at.text_input]
               if w.key and w.key.startswith(f"steer-{RUN_ID}-v1-")}
    assert offered == set(LOOP_KEYS)
    assert "reads 4 of Tiller's" in texts(at.caption)
    config_table = next(d.value for d in at.dataframe if "changes" in d.value.columns and "value" in d.value.columns)
    changes = dict(zip(config_table["key"], config_table["changes"]))
    assert changes["learning_rate"] == "at the next epoch" and changes["weight_decay"] == "fixed for the run"


def test_the_form_sends_a_change_of_the_runs_keys(runs_store):
    seed_loop_run(runs_store)
    at = run_page(RUN_ID)
    at.number_input(key=f"steer-{RUN_ID}-v1-dropout_rate").set_value(0.35)
    button(at, "Send changes").click().run()
    assert not at.exception
    assert json.loads(live_file(runs_store, RUN_ID).read_text())["dropout_rate"] == 0.35


def test_a_hand_edit_of_an_unsteered_key_shows_as_rejected(runs_store):
    values = seed_loop_run(runs_store)
    live_file(runs_store, RUN_ID).write_text(render_live_file({**values, "weight_decay": 0.01}))
    at = run_page(RUN_ID)
    assert not at.exception
    assert "will be rejected" in texts(at.error)
    assert "weight_decay: this run's training loop does not read it" in texts(at.error)


# --------------------------------------------------------------------- cli


def test_tiller_set_refuses_a_key_the_loop_does_not_read(runs_store, capsys):
    seed_loop_run(runs_store)
    before = live_file(runs_store, RUN_ID).read_bytes()
    with pytest.raises(SystemExit) as info:
        main(["set", RUN_ID, "weight_decay=0.01", "--runs-dir", str(runs_store.runs_dir)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one line
    assert err.startswith("tiller: not sent: weight_decay: this run's training loop does not read it (it steers "
                          "num_epochs, batch_size, learning_rate, dropout_rate)")
    assert live_file(runs_store, RUN_ID).read_bytes() == before


def test_tiller_show_says_which_keys_the_run_steers(runs_store, capsys):
    seed_loop_run(runs_store)
    main(["show", RUN_ID, "--runs-dir", str(runs_store.runs_dir)])
    assert "steers    learning_rate, batch_size, num_epochs, dropout_rate (every other key" in capsys.readouterr().out
    main(["show", RUN_ID, "--json", "--runs-dir", str(runs_store.runs_dir)])
    assert json.loads(capsys.readouterr().out)["run"]["hot_keys"] == LOOP_KEYS


def test_tiller_set_sends_a_key_the_loop_reads(runs_store, capsys):
    seed_loop_run(runs_store)
    main(["set", RUN_ID, "dropout_rate=0.3", "--runs-dir", str(runs_store.runs_dir)])
    assert "applies at the next epoch boundary" in capsys.readouterr().out
    assert json.loads(live_file(runs_store, RUN_ID).read_text())["dropout_rate"] == 0.3


# ----------------------------------------------------------------- advisor


def test_the_advisor_may_adjust_only_the_runs_keys():
    assert adjustable_keys(LOOP_KEYS) == IN_FIELD_ORDER
    assert "weight_decay" in adjustable_keys() and "autopilot" not in adjustable_keys()
    payload = context_payload(gap_growing_for(LOOP_KEYS))
    assert list(payload["adjustable_keys"]) == IN_FIELD_ORDER
    assert "weight_decay" in payload["fixed_keys"] and "adjustable_keys_note" in payload


def gap_growing_for(run_hot_keys):
    """The rules tests' growing-gap run on the flat MLP, as a loop reading ``run_hot_keys``."""
    return dataclasses.replace(gap_growing(model_name="mlp"), hot_keys=run_hot_keys)


def test_the_rules_leave_out_keys_the_run_does_not_steer():
    assert by_key(advise(gap_growing_for(None))) == {"weight_decay": 1e-4, "dropout_rate": 0.3}
    advice = advise(gap_growing_for(LOOP_KEYS))
    assert by_key(advice) == {"dropout_rate": 0.3}
    assert "does not read weight_decay, label_smoothing_enabled" in advice.analysis


def test_an_unsteered_regulariser_takes_no_place_under_the_cap():
    advice = advise(gap_growing_for(LOOP_KEYS + ["label_smoothing_enabled"]))
    assert by_key(advice) == {"dropout_rate": 0.3, "label_smoothing_enabled": True}


def test_checks_refuse_a_suggestion_for_an_unsteered_key():
    config = TrainConfig().model_dump()
    checked = check_suggestions([Suggestion("weight_decay", 0.0, 0.01, "overfitting"),
                                 Suggestion("dropout_rate", 0.2, 0.3, "overfitting")], config, 3, LOOP_KEYS)
    assert checked[0].problem.startswith("weight_decay: this run's training loop does not read it")
    assert checked[1].ok
    assert check_suggestions([Suggestion("weight_decay", 0.0, 0.01, "")], config, 3)[0].ok  # no list: as before
    assert combined_problems(config, {"weight_decay": 0.01}, 3, LOOP_KEYS)[0].startswith("weight_decay: this run's")


def test_asking_about_a_run_reads_its_keys_from_the_store(store, monkeypatch):
    # Batch 512 x accumulation 4 on 1,600 samples: a single optimizer step per epoch. The rules would
    # lower the accumulation, but this loop does not read it, so only a smaller batch is suggested.
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with store.start_run(model="custom", dataset="own", hot_keys=LOOP_KEYS) as run:
        config = TrainConfig(num_epochs=50, batch_size=512, gradient_accumulation_enabled=True)
        run.config_version(config.model_dump(), source="cli", epoch=1)
        run.val_samples(labels=[0, 1] * 50, sample_ids=[str(i) for i in range(100)], class_names=["a", "b"],
                        train_counts=[800, 800])
        right = np.eye(2)[[0, 1] * 50]  # every validation sample right: no class is behind
        for epoch in range(1, 4):
            run.log(epoch, {"train/loss": 0.5, "val/loss": 0.5, "train/accuracy": 0.8, "val/accuracy": 0.8})
            run.predictions(epoch, right)
        run.flush()
        record = ask(store, run.id, offline=True, asked_by="cli")
    assert [s.parameter for s in record.suggestions] == ["batch_size"]
    assert record.suggestions[0].suggested_value == 16  # 1600 / 16 = 100 batches, / 4 = 25 steps: accumulation stays
    assert "does not read gradient_accumulation_steps" in record.analysis
