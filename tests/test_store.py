import sqlite3
import threading
import time

import pytest

from tiller.store import HEARTBEAT_TIMEOUT_S, RunNotFound, Store
from tiller.store.db import connect
from tiller.store.migrations import MIGRATIONS


def test_open_creates_schema_in_wal_mode(store):
    assert store.db_path.exists()
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert {"runs", "metrics", "config_versions", "events", "checkpoints"} <= set(store.db.table_names())


def test_reopening_does_not_migrate_twice(tmp_path):
    Store(tmp_path).close()
    again = Store(tmp_path)  # would fail with "table runs already exists"
    assert again.runs().empty


def test_connections_opening_a_new_database_at_once_migrate_it_once(tmp_path):
    # The demo's trainer and the dashboard often create the same database in the same
    # instant: each must wait for the other's migration and see it done, not redo it.
    for attempt in range(5):
        path = tmp_path / f"try{attempt}" / "runs.db"
        start = threading.Barrier(4)
        outcomes = []

        def open_at_once():
            start.wait()
            try:
                db = connect(path)
                outcomes.append(db.execute("PRAGMA user_version").fetchone()[0])
                db.conn.close()
            except Exception as exc:  # recorded, so the assertion shows what went wrong
                outcomes.append(repr(exc))

        threads = [threading.Thread(target=open_at_once) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes == [len(MIGRATIONS)] * 4


def test_context_manager_marks_finished(store):
    with store.start_run(model="mlp", dataset="digits") as run:
        run.log(1, {"train/loss": 0.5, "val/accuracy": 0.8}, lr=0.001)
    row = store.run(run.id)
    assert row["status"] == "finished"
    assert row["epoch"] == 1 and row["best_val_accuracy"] == 0.8


def test_context_manager_marks_failed_with_traceback(store):
    with pytest.raises(ZeroDivisionError):
        with store.start_run(model="mlp", dataset="digits") as run:
            1 / 0
    row = store.run(run.id)
    assert row["status"] == "failed"
    assert "ZeroDivisionError" in row["error"] and "Traceback" in row["error"]
    assert store.events(run.id)["level"].tolist() == ["error"]


def test_keyboard_interrupt_marks_stopped(store):
    with pytest.raises(KeyboardInterrupt):
        with store.start_run(model="mlp", dataset="digits") as run:
            raise KeyboardInterrupt
    assert store.run(run.id)["status"] == "stopped"


def test_metrics_long_form_and_filters(store):
    with store.start_run(model="mlp", dataset="digits") as run:
        for epoch in (1, 2):
            run.log(epoch, {"train/loss": 1 / epoch, "val/loss": 2 / epoch, "lr": 0.1})
    df = store.metrics([run.id], names=["loss"], splits=["val"])
    assert df[["epoch", "split", "name", "value"]].values.tolist() == [[1, "val", "loss", 2.0], [2, "val", "loss", 1.0]]
    assert set(store.metrics([run.id])["split"]) == {"train", "val", ""}
    assert set(store.metrics([run.id], epochs=[2])["epoch"]) == {2} and len(store.metrics([run.id], epochs=[2])) == 3
    assert store.metrics([]).empty


def test_relogging_an_epoch_replaces_the_value(store):
    run_id = store.create_run(model="mlp", dataset="digits")
    store.log_metrics(run_id, 1, {"val/loss": 1.0})
    store.log_metrics(run_id, 1, {"val/loss": 0.5})
    assert store.metrics([run_id])["value"].tolist() == [0.5]


def test_config_versions_record_diff_source_and_epoch(store):
    run_id = store.create_run(model="mlp", dataset="digits")
    store.add_config_version(run_id, {"learning_rate": 0.001, "num_epochs": 5}, source="cli", epoch=1)
    v = store.add_config_version(run_id, {"learning_rate": 0.01, "num_epochs": 5}, source="user",
                                 reason="too slow", epoch=3)
    assert v == 2
    history = store.config_versions(run_id)
    assert history["diff"].tolist() == [{}, {"learning_rate": [0.001, 0.01]}]
    assert history["source"].tolist() == ["cli", "user"]
    assert history["epoch"].tolist() == [1, 3]
    assert store.current_config(run_id)["learning_rate"] == 0.01
    assert store.run(run_id)["num_epochs"] == 5


def test_rejects_unknown_source_status_and_level(store):
    run_id = store.create_run(model="mlp", dataset="digits")
    with pytest.raises(ValueError):
        store.add_config_version(run_id, {}, source="robot", epoch=1)
    with pytest.raises(ValueError):
        store.update_run(run_id, status="exploded")
    with pytest.raises(ValueError):
        store.add_event(run_id, "fatal", "x")


def test_run_ids_are_unique_and_path_safe(store):
    ids = {store.create_run(model="../../etc/passwd model", dataset="d") for _ in range(3)}
    assert len(ids) == 3
    for run_id in ids:
        assert "/" not in run_id and ".." not in run_id
        assert (store.runs_dir / run_id).resolve().parent == store.runs_dir


def test_find_run_by_prefix_and_latest(store):
    a = store.create_run(model="alpha", dataset="d")
    b = store.create_run(model="beta", dataset="d")
    assert store.find_run("alp") == a
    assert store.find_run(b) == b
    assert store.find_run("latest") == b
    with pytest.raises(RunNotFound):
        store.find_run("gamma")


def test_ambiguous_prefix_is_an_error(store):
    store.create_run(model="alpha", dataset="d", run_id="alpha_1")
    store.create_run(model="alpha", dataset="d", run_id="alpha_2")
    with pytest.raises(RunNotFound, match="several"):
        store.find_run("alpha")


def test_stale_heartbeat_shows_crashed(store):
    run_id = store.create_run(model="mlp", dataset="d")
    assert store.run(run_id)["status"] == "running"
    store.update_run(run_id, heartbeat=time.time() - HEARTBEAT_TIMEOUT_S - 1)
    assert store.run(run_id)["status"] == "crashed"


def test_reader_sees_writes_while_a_writer_holds_the_database(tmp_path):
    writer, reader = Store(tmp_path), Store(tmp_path)
    run_id = writer.create_run(model="mlp", dataset="d")
    with writer.db.conn:  # an open write transaction
        writer.db.execute("INSERT INTO events (run_id, time, level, message) VALUES (?, 0, 'info', 'x')", [run_id])
        assert reader.runs()["id"].tolist() == [run_id]  # WAL: readers are not blocked


def test_checkpoints_upsert_per_kind(store):
    run_id = store.create_run(model="mlp", dataset="d")
    store.record_checkpoint(run_id, kind="last", epoch=1, path="a.pt")
    store.record_checkpoint(run_id, kind="last", epoch=2, path="a.pt")
    store.record_checkpoint(run_id, kind="best", epoch=1, path="b.pt", metric="val/accuracy", value=0.9)
    df = store.checkpoints(run_id)
    assert df.set_index("kind")["epoch"].to_dict() == {"best": 1, "last": 2}


def test_foreign_keys_enforced(store):
    with pytest.raises(sqlite3.IntegrityError):
        store.log_metrics("no-such-run", 1, {"loss": 1.0})


def test_predictions_round_trip_compactly(store):
    import numpy as np

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=50).astype(np.float32)
    labels = rng.integers(0, 3, size=50)
    with store.start_run(model="mlp", dataset="d") as run:
        run.val_samples(labels=labels, sample_ids=[f"良性/{i}.png" for i in range(50)],
                        class_names=["良性", "恶性", "正常"])
        run.predictions(1, probs)
        run.predictions(2, probs[::-1])
    store.record_val_samples(run.id, labels=labels, sample_ids=[f"良性/{i}.png" for i in range(50)],
                             class_names=["良性", "恶性", "正常"], train_counts=[5, 7, 9])
    stored = store.predictions(run.id, 1)
    assert store.prediction_epochs(run.id) == [1, 2]
    assert np.allclose(stored.probs, probs, atol=1e-3)  # float16
    assert stored.probs.dtype == np.float32 and list(stored.labels) == list(labels)
    assert stored.class_names == ["良性", "恶性", "正常"] and stored.sample_ids[3] == "良性/3.png"
    assert stored.task == "multiclass" and stored.train_counts == [5, 7, 9]
    assert (stored.predicted == probs.argmax(axis=1)).mean() > 0.95
    assert store.predictions(run.id, 3) is None
    blob = store.db.execute("SELECT length(probs) FROM predictions WHERE epoch = 1").fetchone()[0]
    assert blob == 50 * 3 * 2


def test_predictions_refuse_mismatched_shapes(store):
    import numpy as np

    run_id = store.create_run(model="mlp", dataset="d")
    with pytest.raises(ValueError, match="2 sample ids for 3 labels"):
        store.record_val_samples(run_id, labels=[0, 1, 1], sample_ids=["a", "b"], class_names=["x", "y"])
    with pytest.raises(ValueError, match="samples, classes"):
        store.record_predictions(run_id, 1, np.zeros(4))
