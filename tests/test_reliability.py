"""Many writers at once: real processes, nothing lost, no lock error reaching anyone."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tiller.store import Run, RunNotFound, Store
from tiller.trainer.steering.live_config import (
    ChangeNote,
    live_config_path,
    parse_live_file,
    render_live_file,
    request_control,
    write_atomic,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
STEPS, METRICS = 1500, ("train/loss", "train/accuracy", "val/loss", "val/accuracy")

TRAINER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from tiller.store import Store
    store = Store({runs!r})
    with store.start_run(model="mlp", dataset="digits", run_id={run_id!r}) as run:
        for step in range(1, {steps} + 1):
            run.log(step, {{name: step + i / 10 for i, name in enumerate({metrics!r})}})
            if step % 100 == 0:
                run.flush()  # an epoch boundary
                run.event("info", f"epoch boundary at step {{step}}")
    """
)


def test_four_trainers_and_a_reader_lose_nothing_and_never_see_a_lock_error(tmp_path):
    runs = tmp_path / "runs"
    Store(runs).close()  # migrate once, before the writers race to
    trainers = [
        subprocess.Popen([sys.executable, "-c", TRAINER.format(root=str(REPO_ROOT), runs=str(runs), run_id=f"w{i}",
                                                               steps=STEPS, metrics=METRICS)],
                         stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    reader, reads = Store(runs), 0
    while any(t.poll() is None for t in trainers):  # the dashboard's queries, as fast as they go
        reader.runs()
        reader.metrics(["w0", "w1", "w2", "w3"], names=["loss"], splits=["val"])
        reads += 1
    errors = [t.stderr.read() for t in trainers]
    assert [t.returncode for t in trainers] == [0, 0, 0, 0], errors
    assert not any("locked" in e for e in errors), errors
    assert reads > 0

    counts = reader.metrics().groupby("run_id").size().to_dict()
    assert counts == {f"w{i}": STEPS * len(METRICS) for i in range(4)}
    values = reader.metrics(["w2"], names=["accuracy"], splits=["val"])
    assert values["value"].tolist() == [step + 0.3 for step in range(1, STEPS + 1)]
    assert set(reader.runs()["status"]) == {"finished"}
    assert all(len(reader.events(f"w{i}")) == STEPS // 100 for i in range(4))


# ----------------------------------------------------------- run ids and paths

HOSTILE_IDS = ["../evil", "../../etc/passwd", "/etc", "a/b", "..", ".", "run\x00x", "..\\evil"]


@pytest.mark.parametrize("run_id", HOSTILE_IDS)
def test_a_hostile_run_id_never_becomes_a_path(tmp_path, run_id):
    store = Store(tmp_path / "runs")
    with pytest.raises(ValueError, match="not a valid run id"):
        store.create_run(model="mlp", dataset="digits", run_id=run_id)
    with pytest.raises(ValueError, match="not a valid run id"):
        live_config_path(store.runs_dir, run_id)
    with pytest.raises(ValueError, match="not a valid run id"):
        Run(store, run_id)
    with pytest.raises(RunNotFound):
        store.find_run(run_id)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # nothing written beside the runs folder


@pytest.mark.parametrize("text", ["../../etc/passwd model", "/abs/path", "名字 with spaces", "..", "a\\b/c"])
def test_model_names_and_run_names_from_users_stay_inside_the_runs_folder(tmp_path, text):
    store = Store(tmp_path / "runs")
    with store.start_run(model=text, dataset="digits", name=text) as run:
        run.log(1, {"train/loss": 0.5})
    assert run.dir.resolve().parent == store.runs_dir
    assert store.run(run.id)["name"] == text  # the name is shown as given, never used as a path


def test_the_run_page_refuses_a_hostile_run_in_its_address(runs_store):
    runs_store.create_run(model="mlp", dataset="digits", run_id="mlp_1")
    at = AppTest.from_file(str(REPO_ROOT / "dashboard" / "app_pages" / "run.py"), default_timeout=30)
    at.query_params["run"] = "../../etc"
    at.run()
    assert not at.exception
    assert "no run matches '../../etc'" in at.warning[0].value
    assert at.selectbox(key="run_picker").value == "mlp_1"


# ------------------------------------------------------------- save storms

def test_a_save_storm_within_one_epoch_applies_only_the_last_complete_content_once(tmp_path):
    """Pause mid-epoch, then save 60 times: editor-style partial writes, atomic saves of other
    learning rates, garbage. Only the content on disk at the next boundary counts, once."""
    from tests.test_live_steering import epochs_logged, start_and_finish_epoch_1, wait_for

    proc, store, run_id, config_path = start_and_finish_epoch_1(tmp_path / "runs", "num_epochs=200")
    request_control(config_path, "pause")
    wait_for(lambda: store.run(run_id)["status"] == "paused", "the pause", proc, timeout=30)
    versions_before = len(store.config_versions(run_id))
    complete = config_path.read_bytes()
    config = parse_live_file(complete.decode("utf-8")).values
    for i in range(20):  # every save keeps "pause", so the storm stays inside this epoch
        config_path.write_bytes(complete[: len(complete) * (i + 1) // 21])  # an editor's partial write
        write_atomic(config_path, render_live_file({**config, "learning_rate": 0.0001 * (i + 1)}, "pause",
                                                   ChangeNote(source="user", reason=f"storm {i}")))
        config_path.write_bytes(b"\xff\xfe not json at all")
    write_atomic(config_path, render_live_file({**config, "learning_rate": 0.0042}, "run",
                                               ChangeNote(source="user", reason="the last word")))
    wait_for(lambda: len(store.config_versions(run_id)) > versions_before, "the edit is applied", proc)
    wait_for(lambda: epochs_logged(store, run_id) >= 4, "two more epochs", proc)
    request_control(config_path, "stop")
    assert proc.wait(timeout=30) == 0

    versions = store.config_versions(run_id)
    applied = versions.iloc[versions_before:]
    assert len(applied) == 1, applied[["version", "reason"]]
    assert applied.iloc[0]["config"]["learning_rate"] == 0.0042 and applied.iloc[0]["reason"] == "the last word"
    errors = store.events(run_id).query("level == 'error'")
    assert errors.empty, errors["message"].tolist()  # nothing half-written was ever read at a boundary
