"""The dashboard's pages, run headless with AppTest against a database seeded in tmp_path."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tiller.store import Store
from tiller.trainer.steering.config import TrainConfig
from tiller.trainer.steering.live_config import CONFIG_FILENAME, render_live_file, request_change

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"
PAGES = DASHBOARD / "app_pages"
TIMEOUT_S = 15  # the first run imports plotly and pandas


def seed_run(
    store: Store,
    run_id: str,
    *,
    name: str,
    status: str = "running",
    epochs: int = 4,
    config: dict | None = None,
    lr_change_at: int | None = None,
) -> dict:
    """A run as the trainer leaves it: config version(s), metrics per epoch, events, live file."""
    config = TrainConfig(**(config or {})).model_dump()
    store.create_run(model=config["model_name"], dataset="digits", name=name, run_id=run_id)
    store.add_config_version(run_id, config, source="cli", reason="initial config", epoch=1)
    for epoch in range(1, epochs + 1):
        if epoch == lr_change_at:
            config = {**config, "learning_rate": config["learning_rate"] / 10}
            store.add_config_version(run_id, config, source="user", reason="plateau", epoch=epoch)
        store.log_metrics(run_id, epoch, {
            "train/loss": 1.0 / epoch, "val/loss": 1.2 / epoch, "train/accuracy": 0.5 + epoch / 20,
            "val/accuracy": 0.45 + epoch / 20, "lr": config["learning_rate"], "epoch_seconds": 1.5,
        })
    store.add_event(run_id, "info", f"Started {config['model_name']} on digits.")
    if status != "running":
        store.update_run(run_id, status=status)
    (store.runs_dir / run_id).mkdir(parents=True, exist_ok=True)
    live_file(store, run_id).write_text(render_live_file(config), encoding="utf-8")
    return config


def live_file(store: Store, run_id: str) -> Path:
    return store.runs_dir / run_id / CONFIG_FILENAME


def run_page(run_id: str | None = None) -> AppTest:
    at = AppTest.from_file(str(PAGES / "run.py"), default_timeout=TIMEOUT_S)
    if run_id:
        at.query_params["run"] = run_id
    return at.run()


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def texts(elements) -> str:
    """The elements' Markdown as plain text (the pages escape user text)."""
    return re.sub(r"\\(.)", r"\1", "\n".join(str(e.value) for e in elements))


# ------------------------------------------------------------------ runs page


def test_runs_page_lists_runs_newest_first_with_links(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="older", status="finished")
    seed_run(runs_store, "mlp_20260101_000002", name="newer")
    at = AppTest.from_file(str(PAGES / "runs.py"), default_timeout=TIMEOUT_S).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["name"]) == ["newer", "older"]
    assert list(table["open"]) == ["run?run=mlp_20260101_000002", "run?run=mlp_20260101_000001"]
    assert list(table["status"]) == ["🟢 running", "✅ finished"]
    assert list(table["epoch"]) == ["4/20", "4/20"]


def test_runs_page_shows_no_name_for_a_run_named_after_its_id(runs_store):
    seed_run(runs_store, "mlp_20260101_000003", name="mlp_20260101_000003")
    at = AppTest.from_file(str(PAGES / "runs.py"), default_timeout=TIMEOUT_S).run()
    assert list(at.dataframe[0].value["name"]) == [""]


# ------------------------------------------------------------------- run page


def test_run_page_shows_charts_config_and_form(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="steer me", lr_change_at=3)
    at = run_page("mlp_20260101_000001")
    assert not at.exception
    assert at.header[0].value == "steer me"
    assert len(at.get("plotly_chart")) == 3  # loss, accuracy, lr
    assert at.number_input(key="steer-mlp_20260101_000001-v2-learning_rate").value == pytest.approx(1e-4)
    assert not button(at, "Send changes").disabled
    history = at.dataframe[1].value
    assert list(history["source"]) == ["user", "cli"] and list(history["from epoch"]) == [3, 1]
    assert "learning_rate 0.001 → 0.0001" in history["changes"].iloc[0]


def test_run_page_reduces_the_curves_of_a_long_step_loop(runs_store):
    runs_store.create_run(model="custom", dataset="own", name="steps", run_id="loop_20260101_000001")
    for step in range(1, 3_001):  # a user's own loop logs steps as "epochs"
        runs_store.log_metrics("loop_20260101_000001", step, {"train/loss": 1.0 / step, "val/loss": 1.1 / step})
    runs_store.add_config_version("loop_20260101_000001", {"lr": 0.1, "width": 64}, source="cli", epoch=1)
    at = run_page("loop_20260101_000001")
    assert not at.exception
    assert "nothing here to steer" in texts(at.info)  # its own config has none of the trainer's keys
    assert "Showing at most 2,000 of 3,000 points per curve" in texts(at.caption)
    assert [points(t["x"]) for t in chart_spec(at, "loss-loop_20260101_000001")["data"]] == [2_000, 2_000]


def test_run_page_defaults_to_newest_live_run(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="live one")
    seed_run(runs_store, "mlp_20260101_000002", name="done", status="finished")
    at = run_page()
    assert not at.exception
    assert at.header[0].value == "live one"
    assert at.query_params["run"] == "mlp_20260101_000001"


def test_submit_sends_only_changed_keys_as_user(runs_store):
    config = seed_run(runs_store, "mlp_20260101_000001", name="steer me")
    path = live_file(runs_store, "mlp_20260101_000001")
    # An edit from the CLI, not applied yet: the form must not undo it.
    request_change(path, {"batch_size": 64}, source="cli", fallback=config)
    at = run_page("mlp_20260101_000001")
    at.number_input(key="steer-mlp_20260101_000001-v1-learning_rate").set_value(0.01)
    at.text_input(key="steer-mlp_20260101_000001-reason").input("loss is flat")
    button(at, "Send changes").click().run()
    assert not at.exception
    written = json.loads(path.read_text())
    assert written["learning_rate"] == 0.01 and written["batch_size"] == 64
    assert written["_change"]["source"] == "user" and written["_change"]["reason"] == "loss is flat"
    assert "Sent learning_rate 0.001 → 0.01 at " in texts(at.info) and "pending" in texts(at.info)
    assert at.text_input(key="steer-mlp_20260101_000001-reason").value == ""  # it went with its change
    pending = next(d.value for d in at.dataframe if "requested" in d.value.columns)
    assert dict(zip(pending["key"], pending["requested"])) == {"batch_size": "64", "learning_rate": "0.01"}


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [("learning_rate", 0.0, "learning_rate"), ("num_epochs", 2, "below the 4 epochs already trained")],
)
def test_invalid_value_is_refused_without_writing(runs_store, key, value, problem):
    seed_run(runs_store, "mlp_20260101_000001", name="steer me")
    before = live_file(runs_store, "mlp_20260101_000001").read_bytes()
    at = run_page("mlp_20260101_000001")
    at.number_input(key=f"steer-mlp_20260101_000001-v1-{key}").set_value(value)
    button(at, "Send changes").click().run()
    assert not at.exception
    assert "Not sent" in texts(at.error) and problem in texts(at.error)
    assert live_file(runs_store, "mlp_20260101_000001").read_bytes() == before


def test_pause_writes_control_and_enables_resume(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="steer me")
    at = run_page("mlp_20260101_000001")
    assert button(at, "Resume").disabled
    button(at, "Pause").click().run()
    assert not at.exception
    assert json.loads(live_file(runs_store, "mlp_20260101_000001").read_text())["control"] == "pause"
    assert button(at, "Pause").disabled and not button(at, "Resume").disabled


def test_pause_over_a_bad_edit_standing_keeps_it_and_says_so(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="steer me")
    at = run_page("mlp_20260101_000001")
    path = live_file(runs_store, "mlp_20260101_000001")
    path.write_text('{"learning_rate": 0.01,', encoding="utf-8")  # a hand edit cut short
    button(at, "Pause").click().run()
    assert not at.exception
    assert json.loads(path.read_text())["control"] == "pause"
    [kept] = path.parent.glob("config.rejected-*.json")
    assert kept.read_text(encoding="utf-8") == '{"learning_rate": 0.01,'
    shown = texts(at.toast)
    assert "Pause requested" in shown and "held an edit the run cannot take" in shown and kept.name in shown


def test_control_is_not_sent_to_a_run_that_ended_since_the_page_drew(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="steer me")
    at = run_page("mlp_20260101_000001")
    runs_store.update_run("mlp_20260101_000001", status="finished")
    button(at, "Pause").click().run()
    assert not at.exception
    assert json.loads(live_file(runs_store, "mlp_20260101_000001").read_text())["control"] == "run"
    assert "Nothing sent: the run is finished" in texts(at.toast)


def test_bad_hand_edit_is_shown_as_pending_and_rejected(runs_store):
    config = seed_run(runs_store, "mlp_20260101_000001", name="steer me")
    live_file(runs_store, "mlp_20260101_000001").write_text(render_live_file({**config, "learning_rate": -1.0}))
    at = run_page("mlp_20260101_000001")
    assert not at.exception
    assert "will be rejected" in texts(at.error) and "learning_rate: input should be greater than 0" in texts(at.error)
    pending = next(d.value for d in at.dataframe if "requested" in d.value.columns)
    assert pending.to_dict("records") == [{"key": "learning_rate", "in force": "0.001", "requested": "-1.0"}]


def test_finished_run_shows_its_config_without_controls_or_form(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="done", status="finished")
    at = run_page("mlp_20260101_000001")
    assert not at.exception
    assert not [b for b in at.button if b.label in ("Send changes", "Pause", "Resume")]
    assert [s.value for s in at.subheader][:1] == ["Config at the end"]
    config = at.dataframe[0].value
    assert list(config.columns) == ["key", "value"] and "learning_rate" in list(config["key"])


def test_stopped_run_says_how_to_go_on(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="halted", status="stopped")
    at = run_page("mlp_20260101_000001")
    assert not at.exception
    assert "tiller resume mlp_20260101_000001" in texts(at.info)
    assert not [b for b in at.button if b.label == "Send changes"]


def test_failed_run_shows_its_error(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="broken")
    runs_store.add_event("mlp_20260101_000001", "error", "Run failed: RuntimeError: out of memory")
    runs_store.update_run("mlp_20260101_000001", status="failed", error="Traceback ...\nRuntimeError: out of memory")
    at = run_page("mlp_20260101_000001")
    assert not at.exception
    assert "RuntimeError: out of memory" in texts(at.error)


def test_run_page_empty_state(runs_store):
    at = run_page()
    assert not at.exception
    assert "tiller demo" in texts(at.info)


def test_run_page_before_the_first_epoch_says_it_is_under_way(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="fresh", epochs=0)
    at = run_page("mlp_20260101_000001")
    assert not at.exception
    assert "Epoch 1 is under way" in texts(at.info)
    assert not at.get("plotly_chart")
    assert not button(at, "Send changes").disabled  # it can be steered already


def test_run_page_before_the_config_is_recorded_says_the_trainer_is_starting(runs_store):
    runs_store.create_run(model="mlp", dataset="digits", name="starting", run_id="mlp_20260101_000001")
    at = run_page("mlp_20260101_000001")
    assert not at.exception
    assert "The trainer is starting" in texts(at.info)
    assert not [b for b in at.button if b.label == "Send changes"]
    assert not [s for s in at.subheader if s.value in ("Steer", "Advisor", "Config history")]


def test_run_page_charts_share_one_epoch_range_while_a_change_is_pending(runs_store):
    config = seed_run(runs_store, "mlp_20260101_000001", name="steer me", epochs=5)
    # Recorded at the boundary before epoch 6, which is in progress: not logged yet.
    runs_store.add_config_version("mlp_20260101_000001", {**config, "learning_rate": 0.01}, source="user", epoch=6)
    at = run_page("mlp_20260101_000001")
    assert not at.exception
    ranges = [chart_spec(at, f"{name}-mlp_20260101_000001")["layout"]["xaxis"]["range"]
              for name in ("loss", "accuracy", "lr")]
    assert ranges[0] == ranges[1] == ranges[2]
    assert ranges[0][0] < 1 and 6 < ranges[0][1] < 7


def test_run_page_shows_progress_and_pace(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="steer me")  # 4 of 20 epochs, 1.5 s each
    at = run_page("mlp_20260101_000001")
    [progress] = at.get("progress")
    assert progress.proto.text == "Epoch 4/20 · 1.5 s per epoch · about 24 s left"


def test_events_are_shown_in_full(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="steer me")
    long = ("Rejected config edit before epoch 5: batch_size: input should be greater than or equal to 1; "
            "num_epochs: 2 is below the 4 epochs already trained. Training goes on with the last good config; "
            "the rejected file is kept as config.rejected-20260101_000001.json.")
    runs_store.add_event("mlp_20260101_000001", "error", long, 5)
    at = run_page("mlp_20260101_000001")
    assert not at.exception
    assert f"| {long} |" in texts(at.markdown)  # a Markdown table's cell wraps: all of it reads
    assert not [d for d in at.dataframe if "message" in d.value.columns]  # a grid cuts long text off


def test_an_old_error_is_left_to_the_events_table(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="steer me")  # 4 epochs done
    runs_store.add_event("mlp_20260101_000001", "error", "Rejected config edit before epoch 2: too big.", 2)
    assert "too big" not in texts(run_page("mlp_20260101_000001").error)
    runs_store.add_event("mlp_20260101_000001", "error", "Rejected config edit before epoch 5: too small.", 5)
    st_clear_caches()
    assert "(epoch 5, " in texts(run_page("mlp_20260101_000001").error)


def test_pause_and_resume_give_feedback_without_drawing_from_a_fragment_callback(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="steer me")
    warnings = LogRecords()
    logging.getLogger("streamlit").addHandler(warnings)
    try:
        at = run_page("mlp_20260101_000001")
        button(at, "Pause").click().run()
        assert "Pause requested" in texts(at.toast)
        button(at, "Resume").click().run()
        assert "Resume requested" in texts(at.toast)
    finally:
        logging.getLogger("streamlit").removeHandler(warnings)
    assert not [m for m in warnings.messages if "callback that displays" in m]


# ------------------------------------------------------ run page: a change sent


def send_lr(at: AppTest, run_id: str, lr: float, version: int = 1) -> AppTest:
    at.number_input(key=f"steer-{run_id}-v{version}-learning_rate").set_value(lr)
    return button(at, "Send changes").click().run()


def st_clear_caches() -> None:
    """What the next refresh after ``data.CACHE_TTL_S`` reads: the store as it is now."""
    import streamlit as st

    st.cache_data.clear()


def test_a_sent_change_reads_pending_then_applied_as_its_version(runs_store):
    config = seed_run(runs_store, "mlp_20260101_000001", name="steer me")
    at = send_lr(run_page("mlp_20260101_000001"), "mlp_20260101_000001", 0.01)
    assert "pending" in texts(at.info) and "once epoch 5 finishes" in texts(at.info)
    # The trainer applies it at the boundary: a new version, from epoch 5.
    runs_store.add_config_version("mlp_20260101_000001", {**config, "learning_rate": 0.01}, source="user", epoch=5)
    live_file(runs_store, "mlp_20260101_000001").write_text(render_live_file({**config, "learning_rate": 0.01}))
    st_clear_caches()
    at.run()
    assert not at.exception
    assert "Applied as **v2** from epoch 5: learning_rate 0.001 → 0.01" in texts(at.success)
    assert not [i for i in at.info if str(i.value).startswith("Sent")]
    # The inputs show the config in force, v2.
    assert at.number_input(key="steer-mlp_20260101_000001-v2-learning_rate").value == pytest.approx(0.01)


def test_an_applied_change_leaves_the_form_once_it_has_been_read(runs_store, monkeypatch):
    from tiller.dashboard import steering_widgets

    config = seed_run(runs_store, "mlp_20260101_000001", name="steer me")
    at = send_lr(run_page("mlp_20260101_000001"), "mlp_20260101_000001", 0.01)
    runs_store.add_config_version("mlp_20260101_000001", {**config, "learning_rate": 0.01}, source="user", epoch=5)
    monkeypatch.setattr(steering_widgets, "APPLIED_SHOWN_S", 0.0)
    st_clear_caches()
    at.run()
    assert "Applied as" not in texts(at.success) and "Sent" not in texts(at.info)


def test_a_sent_change_the_run_refused_says_why(runs_store):
    config = seed_run(runs_store, "mlp_20260101_000001", name="steer me")
    at = send_lr(run_page("mlp_20260101_000001"), "mlp_20260101_000001", 0.01)
    # What the trainer does with an edit it refuses: the file back to the config in force, an error event.
    live_file(runs_store, "mlp_20260101_000001").write_text(render_live_file(config))
    runs_store.add_event("mlp_20260101_000001", "error", "Rejected config edit before epoch 5: not today.", 5)
    st_clear_caches()
    at.run()
    assert "Not applied: learning_rate 0.001 → 0.01" in texts(at.error)
    assert "Rejected config edit before epoch 5: not today." in texts(at.error)
    assert "pending" not in texts(at.info)


def test_a_sent_change_to_a_run_that_stopped_first_says_so(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="steer me")
    at = send_lr(run_page("mlp_20260101_000001"), "mlp_20260101_000001", 0.01)
    runs_store.update_run("mlp_20260101_000001", status="stopped")
    st_clear_caches()
    at.run()
    assert not at.exception
    assert "tiller resume" in texts(at.info)  # the page now shows the stopped run's way on


def test_a_version_recorded_between_draws_keeps_what_the_user_submitted(runs_store):
    config = seed_run(runs_store, "mlp_20260101_000001", name="steer me")
    at = run_page("mlp_20260101_000001")  # the form is drawn from v1
    # The autopilot changes the dropout meanwhile: v2.
    runs_store.add_config_version("mlp_20260101_000001", {**config, "dropout_rate": 0.3}, source="llm", epoch=5)
    st_clear_caches()
    at.number_input(key="steer-mlp_20260101_000001-v1-batch_size").set_value(64)
    button(at, "Send changes").click().run()
    assert not at.exception
    written = json.loads(live_file(runs_store, "mlp_20260101_000001").read_text())
    assert written["batch_size"] == 64  # not dropped with the v1 inputs
    assert written["dropout_rate"] == config["dropout_rate"]  # the file is the trainer's to rewrite
    assert written["_change"]["source"] == "user"
    assert at.number_input(key="steer-mlp_20260101_000001-v2-batch_size").value == 64
    assert at.number_input(key="steer-mlp_20260101_000001-v2-dropout_rate").value == pytest.approx(0.3)
    assert "Sent batch_size 32 → 64" in texts(at.info)


class LogRecords(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_app_navigates_to_the_run_page(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="steer me")
    at = AppTest.from_file(str(DASHBOARD / "app.py"), default_timeout=TIMEOUT_S).run()
    assert not at.exception and at.title[0].value == "Runs"
    at.switch_page("app_pages/run.py").run()
    assert not at.exception and at.header[0].value == "steer me"


# --------------------------------------------------------------- compare page


def test_compare_page_shows_only_differing_keys(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="base", status="finished")
    seed_run(runs_store, "mlp_20260101_000002", name="fast", status="finished", config={"learning_rate": 0.01})
    at = AppTest.from_file(str(PAGES / "compare.py"), default_timeout=TIMEOUT_S).run()
    assert not at.exception
    assert at.multiselect[0].value == ["mlp_20260101_000002", "mlp_20260101_000001"]
    assert len(at.get("plotly_chart")) == 3  # the curves, parallel coordinates, scatter
    differences, finals = at.dataframe[0].value, at.dataframe[1].value
    assert list(differences["key"]) == ["learning_rate"]
    assert list(differences.columns) == ["key", "fast", "base"]
    assert list(finals["epochs"]) == [4, 4]
    assert finals["best val accuracy"].tolist() == pytest.approx([0.65, 0.65])
    assert at.get("download_button")


def test_compare_page_empty_state(runs_store):
    at = AppTest.from_file(str(PAGES / "compare.py"), default_timeout=TIMEOUT_S).run()
    assert not at.exception
    assert "tiller demo" in texts(at.info)


# ------------------------------------------- compare page: smoothing, hyperparameters


def compare_page() -> AppTest:
    return AppTest.from_file(str(PAGES / "compare.py"), default_timeout=TIMEOUT_S).run()


def chart_spec(at: AppTest, key: str) -> dict:
    return json.loads(next(c for c in at.get("plotly_chart") if c.key == key).proto.spec)


def points(array) -> int:
    """Length of a trace array in a chart's JSON; Plotly sends numpy arrays as base64 typed arrays."""
    import base64  # here, not at the top: this file's header is shared with other pages' tests

    import numpy as np

    if isinstance(array, dict):
        return len(base64.b64decode(array["bdata"])) // np.dtype(array["dtype"]).itemsize
    return len(array)


def seed_three_runs(store: Store) -> list[str]:
    seed_run(store, "mlp_20260101_000001", name="base", status="finished")
    seed_run(store, "mlp_20260101_000002", name="fast", status="finished", config={"learning_rate": 0.01})
    seed_run(store, "mlp_20260101_000003", name="sgd", config={"optimizer": "SGD", "nesterov": True}, lr_change_at=3)
    return ["mlp_20260101_000001", "mlp_20260101_000002", "mlp_20260101_000003"]


def test_compare_page_smooths_with_the_raw_lines_faint_and_marks_config_changes(runs_store):
    run_ids = seed_three_runs(runs_store)
    at = compare_page()
    assert at.multiselect(key="compare_runs").proto.max_selections == 50
    at.multiselect(key="compare_runs").set_value(run_ids).run()
    at.radio(key="compare_smoothing").set_value("ema").run()
    at.slider(key="compare_ema_weight").set_value(0.8).run()
    assert not at.exception
    traces = chart_spec(at, "compare-chart")["data"]
    faint = [t for t in traces if t.get("opacity", 1) < 0.5]
    assert [t["name"] for t in faint] == ["base (raw)", "fast (raw)", "sgd (raw)"]
    changes = [t for t in traces if t["mode"] == "markers"]
    assert len(changes) == 1 and changes[0]["x"] == [3] and "plateau" in changes[0]["hovertext"][0]
    assert "faint lines are the raw values" in texts(at.caption)


def test_compare_page_moving_window_smoothing(runs_store):
    seed_three_runs(runs_store)
    at = compare_page()
    at.radio(key="compare_smoothing").set_value("window").run()
    at.slider(key="compare_window").set_value(3).run()
    at.checkbox(key="compare_centred").uncheck().run()
    assert not at.exception
    assert chart_spec(at, "compare-chart")["layout"]["title"]["text"] == "Validation accuracy by run, trailing mean of 3"


def test_compare_page_plots_differing_settings_against_the_best_metric(runs_store):
    run_ids = seed_three_runs(runs_store)
    at = compare_page()
    at.multiselect(key="compare_runs").set_value(run_ids).run()
    assert not at.exception
    dimensions = chart_spec(at, "compare-parcoords")["data"][0]["dimensions"]
    assert [d["label"] for d in dimensions] == ["learning_rate (log)", "optimizer", "nesterov",
                                                "best validation accuracy"]
    assert at.selectbox(key="compare_scatter_key").options == ["learning_rate", "optimizer", "nesterov"]
    at.selectbox(key="compare_scatter_key").set_value("optimizer").run()
    at.selectbox(key="compare_scatter_colour").set_value("learning_rate").run()
    at.selectbox(key="compare_target").set_value(("val", "loss")).run()
    assert not at.exception
    scatter = chart_spec(at, "compare-scatter")
    assert scatter["layout"]["xaxis"]["ticktext"] == ["Adam", "SGD"]
    assert scatter["layout"]["title"]["text"] == "Best validation loss by optimizer"
    # The config table and the CSV export are still there.
    assert list(at.dataframe[0].value["key"]) == ["learning_rate", "optimizer", "nesterov"]
    assert at.get("download_button")


def test_compare_page_says_why_there_is_nothing_to_plot_against(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="one")
    seed_run(runs_store, "mlp_20260101_000002", name="twin")
    at = compare_page()
    assert not at.exception
    assert "share every numeric, true/false and choice setting" in texts(at.info)
    at.multiselect(key="compare_runs").set_value(["mlp_20260101_000001"]).run()
    assert not at.exception
    assert "Pick two or more runs to see their settings" in texts(at.caption)


def test_compare_page_reduces_long_step_curves_and_says_so(runs_store):
    for run_id, lr in (("loop_20260101_000001", 0.1), ("loop_20260101_000002", 0.01)):
        runs_store.create_run(model="custom", dataset="own", name=run_id, run_id=run_id)
        runs_store.add_config_version(run_id, {"lr": lr, "width": 64}, source="cli", epoch=1)
        for step in range(1, 3_001):  # a user's own loop logs steps as "epochs"
            runs_store.log_metrics(run_id, step, {"val/loss": 1.0 / step})
    at = compare_page()
    assert not at.exception
    assert "Showing at most 2,000 of 3,000 points per run" in texts(at.caption)
    assert [points(t["x"]) for t in chart_spec(at, "compare-chart")["data"]] == [2_000, 2_000]
    assert [d["label"] for d in chart_spec(at, "compare-parcoords")["data"][0]["dimensions"]][0] == "lr"


def test_compare_page_without_validation_says_when_the_views_appear(runs_store):
    for run_id in ("loop_20260101_000001", "loop_20260101_000002"):
        runs_store.create_run(model="custom", dataset="own", name=run_id, run_id=run_id)
        runs_store.log_metrics(run_id, 1, {"train/loss": 0.5})
    at = compare_page()
    assert not at.exception
    assert "None of the chosen runs has validated yet" in texts(at.info)


def test_compare_page_evaluates_two_runs_side_by_side(runs_store):
    from tiller.trainer.steering.config import validate_config
    from tiller.trainer.engine.loop import train

    quiet = {"say": lambda message: None}
    slow = train(validate_config({"num_epochs": 2, "learning_rate": 0.0003}), runs_store, name="slow", **quiet)
    fast = train(validate_config({"num_epochs": 2, "learning_rate": 0.01}), runs_store, name="fast", **quiet)
    at = compare_page()
    assert not at.exception
    keys = {chart.key for chart in at.get("plotly_chart")}
    assert {"side_confusion_left", "side_confusion_right", "side_scores_left", "side_scores_right"} <= keys
    assert [at.selectbox(key=k).value for k in ("side_run_left", "side_run_right")] == [fast, slow]
    left, right = (chart_spec(at, f"side_confusion_{side}") for side in ("left", "right"))
    assert left["data"][0]["z"] != right["data"][0]["z"]  # two different runs' matrices
    assert "(best validation accuracy)" in at.selectbox(key=f"side_epoch_left_{fast}").format_func(
        at.selectbox(key=f"side_epoch_left_{fast}").value)


def test_compare_page_side_by_side_waits_for_predictions(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="base", status="finished")
    seed_run(runs_store, "mlp_20260101_000002", name="fast", status="finished", config={"learning_rate": 0.01})
    at = compare_page()
    assert not at.exception
    assert "no stored validation predictions yet" in texts(at.info)
