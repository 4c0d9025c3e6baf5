"""tiller.dashboard.data: what the pages read, and how long each read stays cached."""

from __future__ import annotations

import pandas as pd
import pytest

from tiller.dashboard import data
from tiller.store import Store


def seed(store: Store, run_id: str, *, epochs: int, status: str = "running") -> None:
    store.create_run(model="mlp", dataset="digits", run_id=run_id)
    store.add_config_version(run_id, {"learning_rate": 1e-3}, source="cli", epoch=1)
    for epoch in range(1, epochs + 1):
        store.log_metrics(run_id, epoch, {"train/loss": 1 / epoch, "val/accuracy": epoch / 10})
    if status != "running":
        store.update_run(run_id, status=status)


def test_metrics_read_per_run_match_one_store_query(runs_store):
    seed(runs_store, "b_live", epochs=3)
    seed(runs_store, "a_done", epochs=2, status="finished")
    runs_store.create_run(model="mlp", dataset="digits", run_id="c_empty")  # nothing logged yet
    frame = data.metrics(["c_empty", "b_live", "a_done", "b_live"])
    pd.testing.assert_frame_equal(frame, runs_store.metrics(["a_done", "b_live", "c_empty"]))
    assert frame["value"].dtype == float  # an empty run's frame does not turn values into objects
    assert data.metrics([]).empty and data.metrics(["c_empty"]).empty


def test_a_live_refresh_rereads_live_runs_but_keeps_what_ended_runs_logged(runs_store, monkeypatch):
    seed(runs_store, "live", epochs=2)
    seed(runs_store, "done", epochs=2, status="finished")
    assert len(data.metrics(["live", "done"])) == 8 and len(data.config_versions("done")) == 1
    read = []
    real_metrics = Store.metrics
    monkeypatch.setattr(Store, "metrics", lambda self, run_ids=None, *args, **kw: read.append(tuple(run_ids))
                        or real_metrics(self, run_ids, *args, **kw))
    runs_store.log_metrics("live", 3, {"train/loss": 0.3})
    assert len(data.metrics(["live", "done"])) == 8 and read == []  # within the interval, nothing is read again
    data.forget_live_data()
    after = data.metrics(["live", "done"])
    assert after.groupby("run_id").size().to_dict() == {"done": 4, "live": 5}
    assert read == [("live",)]  # the ended run came from the cache that does not expire
    assert len(data.config_versions("done")) == 1


def test_a_run_that_is_resumed_and_ends_again_is_read_again(runs_store):
    seed(runs_store, "run", epochs=2, status="stopped")
    assert len(data.metrics(["run"])) == 4 and len(data.config_versions("run")) == 1
    runs_store.update_run("run", status="running")  # as `tiller resume` will
    runs_store.add_config_version("run", {"learning_rate": 1e-4}, source="user", epoch=3)
    runs_store.log_metrics("run", 3, {"train/loss": 0.3})
    runs_store.update_run("run", status="finished", updated=runs_store.run("run")["updated"] + 1)
    data.forget_live_data()
    assert len(data.metrics(["run"])) == 5 and len(data.config_versions("run")) == 2


def test_a_run_is_read_as_ended_only_once_its_status_says_so(runs_store):
    seed(runs_store, "run", epochs=2)
    assert len(data.metrics(["run"])) == 4
    runs_store.log_metrics("run", 3, {"train/loss": 0.3})
    runs_store.update_run("run", status="stopped")
    data.forget_live_data()
    assert len(data.metrics(["run"])) == 5  # its last rows, read after it ended
    assert data.run_record("run")["status"] == "stopped"


@pytest.mark.parametrize("status", ["running", "finished", "failed"])
def test_run_record_reads_one_run_as_the_runs_list_shows_it(runs_store, status):
    seed(runs_store, "mlp_1", epochs=4, status=status)
    seed(runs_store, "mlp_2", epochs=1)
    record = data.run_record("mlp_1")
    listed = data.runs().set_index("id").loc["mlp_1"].to_dict()
    assert record == {"id": "mlp_1", **listed}
    assert (record["status"], record["epoch"]) == (status, 4)
    assert data.run_record("no_such_run") is None


def test_a_folder_without_a_database_lists_no_runs_and_is_left_as_it_was(tmp_path, monkeypatch):
    # The first run creates the database; the dashboard only reads, so a mistyped folder leaves no trace.
    folder = tmp_path / "empty"
    folder.mkdir()
    monkeypatch.setenv("TILLER_RUNS_DIR", str(folder))
    assert data.runs().empty and not data.has_database()
    assert list(folder.iterdir()) == []
