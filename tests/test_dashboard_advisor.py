"""The run page's advisor: asking, applying, refusing, failing, reverting, reports, the autopilot;
and the pure helpers behind it (``tiller.dashboard.advice_views``)."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tiller.dashboard import advice_views as views
from tiller.store import Store
from tests.anthropic_fake import unreachable_url
from tests.test_dashboard import LogRecords, button, live_file, run_page, texts
from tiller.trainer.advisor import AdviceRecord, CheckedSuggestion, ask
from tiller.trainer.advisor.types import Advice, Suggestion
from tiller.trainer.steering.config import TrainConfig
from tiller.trainer.steering.live_config import render_live_file

RUN = "mlp_20260101_000001"
# Train loss falls while val loss climbs from epoch 3: the offline rules call it overfitting.
TRAIN_LOSS = [1.0, 0.7, 0.5, 0.35, 0.25, 0.18]
VAL_LOSS = [1.0, 0.8, 0.7, 0.75, 0.85, 0.95]


@pytest.fixture(autouse=True)
def no_api_key(monkeypatch):
    """Every test starts without a key, as the offline advisor's tests need; one test sets it."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


def seed_overfitting_run(store: Store, *, status: str = "running", config: dict | None = None,
                         lr_change_at: int | None = None) -> dict:
    """A run of six epochs that overfits, with its live config file, as the trainer leaves it."""
    config = TrainConfig(**(config or {})).model_dump()
    store.create_run(model=config["model_name"], dataset="digits", name="overfits", run_id=RUN)
    store.add_config_version(RUN, config, source="cli", reason="initial config", epoch=1)
    for epoch, (train, val) in enumerate(zip(TRAIN_LOSS, VAL_LOSS), start=1):
        if epoch == lr_change_at:
            config = {**config, "learning_rate": config["learning_rate"] / 10}
            store.add_config_version(RUN, config, source="user", reason="plateau", epoch=epoch)
        store.log_metrics(RUN, epoch, {"train/loss": train, "val/loss": val, "train/accuracy": 1 - train / 2,
                                       "val/accuracy": 1 - val / 2, "lr": config["learning_rate"]})
    if status != "running":
        store.update_run(RUN, status=status)
    (store.runs_dir / RUN).mkdir(parents=True, exist_ok=True)
    live_file(store, RUN).write_text(render_live_file(config), encoding="utf-8")
    return config


class FakeAdvisor:
    """Suggests a fixed key (refused by the checks) and a valid learning rate."""

    name = "fake"

    def advise(self, ctx):
        return Advice(analysis="Two ideas.", advisor="fake", suggestions=[
            Suggestion("model_name", ctx.config["model_name"], "resnet18", "a bigger model"),
            Suggestion("learning_rate", ctx.config["learning_rate"], 0.0005, "val loss climbs"),
        ])


def ask_on_page(at: AppTest, question: str = "") -> AppTest:
    if question:
        at.text_input(key=f"ask-question-{RUN}").input(question)
    return button(at, "Ask for suggestions").click().run()


def editor(at: AppTest, record_id: str):
    """The advice's editor: the suggestions that can still be ticked (its key names its rows)."""
    [found] = [e for e in at.data_editor if e.key.startswith(f"advice-{record_id}-")]
    return found


def handled(at: AppTest) -> pd.DataFrame:
    """The read-only table of the suggestions that cannot be ticked (sent, applied, refused)."""
    return next(d.value for d in at.dataframe if "sent" in d.value.columns)


def tick(at: AppTest, record_id: str, rows: list[int]) -> AppTest:
    """Tick the apply box of the given rows (0-based) in the advice's editor, as a browser would."""
    at.session_state[editor(at, record_id).key] = {
        "edited_rows": {row: {"apply": True} for row in rows}, "added_rows": [], "deleted_rows": [],
    }
    return at.run()


def written(store: Store) -> dict:
    return json.loads(live_file(store, RUN).read_text(encoding="utf-8"))


def page_text(at: AppTest) -> str:
    """Everything the page sent to the browser, as protobuf text."""
    parts = []

    def walk(node):
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


# --------------------------------------------------------------------- asking


def test_ask_offline_shows_the_analysis_and_the_suggestions(runs_store):
    seed_overfitting_run(runs_store)
    at = run_page(RUN)
    assert not at.exception
    assert "offline rule-based advisor (no ANTHROPIC_API_KEY set)" in texts(at.caption)
    assert not at.toggle  # no key: nothing to switch between
    ask_on_page(at, "why does val loss climb?")
    assert not at.exception
    [record] = runs_store.advice(RUN).to_dict("records")
    assert record["advisor"] == "offline rules" and record["asked_by"] == "user"
    assert record["question"] == "why does val loss climb?"
    shown = texts(at.markdown)
    assert "**Overfitting**" in shown and "why does val loss climb?" in shown and "after epoch 6" in shown
    table = editor(at, record["id"]).value
    assert list(table.columns) == views.SUGGESTION_COLUMNS
    assert list(table["parameter"]) == [s["parameter"] for s in record["suggestions"]]
    assert len(table) >= 2 and set(table["status"]) == {"valid"}
    assert not table["apply"].any()  # nothing is ticked for the user
    assert not [d for d in at.dataframe if "sent" in d.value.columns]  # nothing is sent or refused yet
    assert button(at, "Apply selected at next epoch").disabled  # until something is ticked
    # A reload (a new session) reads the same advice back from the store.
    again = run_page(RUN)
    assert not again.exception and "**Overfitting**" in texts(again.markdown)


def test_apply_selected_writes_the_llm_change_with_its_id(runs_store):
    config = seed_overfitting_run(runs_store)
    at = ask_on_page(run_page(RUN))
    [record] = [AdviceRecord.from_row(r) for r in runs_store.advice(RUN).to_dict("records")]
    skipped, chosen = record.suggestions[:2]  # the rules suggest augmentation, then weight decay
    tick(at, record.id, [1])
    button(at, "Apply selected at next epoch").click().run()
    assert not at.exception
    live = written(runs_store)
    assert live[chosen.parameter] == chosen.suggested_value
    assert live[skipped.parameter] == config[skipped.parameter]  # not ticked, not sent
    assert live["_change"]["source"] == "llm" and live["_change"]["id"] == f"{record.id}#2"
    assert f"as change {record.id}#2 (source llm)" in texts(at.success)
    # The sent suggestion leaves the editor: it reads pending, with no box to tick again.
    sent = handled(at)
    assert sent[["sent", "#", "parameter"]].values.tolist() == [["✓", 2, chosen.parameter]]
    assert sent["status"].tolist() == ["⏳ sent, pending: applies once epoch 7 finishes"]
    table = editor(at, record.id).value
    assert 2 not in table["#"].tolist() and 1 in table["#"].tolist()
    assert not table["apply"].any()
    # Once the trainer applies it, the suggestion reads applied, with its version and epoch.
    runs_store.add_config_version(RUN, {**config, chosen.parameter: chosen.suggested_value},
                                  source="llm", reason="advice", epoch=7, change_id=f"{record.id}#2")
    st.cache_data.clear()
    later = run_page(RUN)
    assert handled(later)["status"].tolist() == ["✅ applied as v2, in force from epoch 7"]
    assert 2 not in editor(later, record.id).value["#"].tolist()
    history = next(d.value for d in later.dataframe if "request" in d.value.columns)
    assert history["request"].tolist()[0] == f"{record.id}#2"


def test_a_sent_suggestion_cannot_be_ticked_and_sent_again(runs_store):
    seed_overfitting_run(runs_store)
    at = ask_on_page(run_page(RUN))
    [record] = [AdviceRecord.from_row(r) for r in runs_store.advice(RUN).to_dict("records")]
    tick(at, record.id, [1])
    button(at, "Apply selected at next epoch").click().run()
    assert written(runs_store)["_change"]["id"] == f"{record.id}#2"
    # Tick everything the editor still offers and send it: #2 is not among it.
    others = editor(at, record.id).value["#"].tolist()
    assert 2 not in others and others
    tick(at, record.id, list(range(len(others))))
    button(at, "Apply selected at next epoch").click().run()
    assert not at.exception
    assert written(runs_store)["_change"]["id"] == f"{record.id}#{','.join(map(str, others))}"


def test_a_refused_suggestion_cannot_be_applied(runs_store):
    config = seed_overfitting_run(runs_store)
    record = ask(runs_store, RUN, advisor=FakeAdvisor())
    at = run_page(RUN)
    # The refused suggestion is listed with why, and has no box to tick.
    refused = handled(at)
    assert refused["#"].tolist() == [1] and refused["sent"].tolist() == [""]
    assert refused["status"][0].startswith("⛔ refused: model_name: fixed for the life of the run")
    assert editor(at, record.id).value["#"].tolist() == [2]
    tick(at, record.id, [0])
    button(at, "Apply selected at next epoch").click().run()
    assert not at.exception
    live = written(runs_store)
    assert live["model_name"] == config["model_name"] and live["learning_rate"] == 0.0005
    assert live["_change"]["id"] == f"{record.id}#2"


def test_with_every_suggestion_handled_there_is_nothing_to_tick(runs_store):
    seed_overfitting_run(runs_store)
    record = ask(runs_store, RUN, advisor=FakeAdvisor())
    at = tick(run_page(RUN), record.id, [0])
    button(at, "Apply selected at next epoch").click().run()
    assert not at.exception
    assert not [e for e in at.data_editor if e.key.startswith(f"advice-{record.id}-")]
    assert not [b for b in at.button if b.label == "Apply selected at next epoch"]
    assert "Every suggestion of this advice is sent, applied or cannot be applied" in texts(at.caption)


@pytest.fixture
def unreachable():
    """A URL on a port this test holds: a port found free and closed again could be another server's by now."""
    with unreachable_url() as url:
        yield url


def test_a_failing_claude_call_says_why_and_changes_nothing(runs_store, monkeypatch, unreachable):
    secret = "sk-test-do-not-show-4f9a2c"
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", unreachable)
    monkeypatch.setenv("TILLER_LLM_TIMEOUT", "2")
    seed_overfitting_run(runs_store)
    before = live_file(runs_store, RUN).read_bytes()
    at = run_page(RUN)
    assert "Answered by Claude" in texts(at.caption)
    assert at.toggle(key=f"ask-offline-{RUN}").value is False
    ask_on_page(at, "anything?")
    assert not at.exception
    assert "The advisor could not answer: could not reach the Anthropic API" in texts(at.error)
    assert "nothing was changed" in texts(at.error)
    assert runs_store.advice(RUN).empty
    assert live_file(runs_store, RUN).read_bytes() == before
    assert secret not in page_text(at) and "sk-test" not in page_text(at)
    # The offline switch answers without the network.
    at.toggle(key=f"ask-offline-{RUN}").set_value(True).run()
    assert "Offline rules is on" in texts(at.caption)
    ask_on_page(at)
    assert not at.error and len(runs_store.advice(RUN)) == 1
    assert secret not in page_text(at)


def test_advisor_text_never_becomes_html(runs_store):
    seed_overfitting_run(runs_store)

    class Hostile:
        name = "hostile"

        def advise(self, ctx):
            return Advice(analysis='<img src=x onerror="alert(1)"> ![pixel](https://example.com/p.png?d=1)',
                          advisor="hostile", suggestions=[])

    ask(runs_store, RUN, advisor=Hostile())
    at = run_page(RUN)
    assert not at.exception
    assert all(not m.proto.allow_html for m in at.markdown)
    analysis = next(m.value for m in at.markdown if "onerror" in m.value)
    assert "![pixel]" not in analysis and "\\[image: pixel\\]" in analysis


def test_an_ended_run_can_be_asked_about_but_not_changed(runs_store):
    seed_overfitting_run(runs_store, status="finished")
    at = ask_on_page(run_page(RUN))
    assert not at.exception
    [record] = [AdviceRecord.from_row(r) for r in runs_store.advice(RUN).to_dict("records")]
    # Every suggestion is listed, read-only: no box to tick, no button to send.
    assert handled(at)["#"].tolist() == [s.number for s in record.suggestions]
    assert not [e for e in at.data_editor if e.key.startswith(f"advice-{record.id}-")]
    assert not [b for b in at.button if b.label == "Apply selected at next epoch"]
    assert "Applying is off; asking still works" in texts(at.caption)


def test_the_newest_advice_shows_first_and_earlier_advice_folds_away(runs_store):
    seed_overfitting_run(runs_store)
    at = ask_on_page(run_page(RUN))
    ask(runs_store, RUN, asked_by="autopilot", offline=True)  # e.g. the autopilot, meanwhile
    st.cache_data.clear()  # rather than wait out the two-second cache
    at.run()
    assert not at.exception
    assert "asked from the autopilot" in texts(at.markdown)
    [earlier] = [e for e in at.expander if e.label == "Earlier advice (1)"]
    assert earlier.dataframe[0].value["asked from"].tolist() == ["the dashboard"]


# --------------------------------------------------------------------- revert


def test_revert_sends_the_previous_versions_values_as_user(runs_store):
    seed_overfitting_run(runs_store, lr_change_at=3)
    at = run_page(RUN)
    assert at.selectbox(key=f"revert-pick-{RUN}").value == 2
    revert = button(at, "Revert to v1")
    preview = next(d.value for d in at.dataframe if "back to" in d.value.columns)
    assert preview.to_dict("records") == [{"key": "learning_rate", "now": "0.0001", "back to": "0.001"}]
    revert.click().run()
    assert not at.exception
    live = written(runs_store)
    assert live["learning_rate"] == 0.001
    assert live["_change"] == {"source": "user", "reason": "revert of v2: back to v1", "id": "revert:v2"}
    assert "Sent the revert of v2" in texts(at.success)


def test_revert_is_off_for_an_ended_run(runs_store):
    seed_overfitting_run(runs_store, lr_change_at=3, status="stopped")
    at = run_page(RUN)
    popover = next(p for p in at.get("popover") if p.proto.popover.label == "Revert to v1…")
    assert popover.proto.popover.disabled
    assert f"stopped, so nothing reads changes now; `tiller resume {RUN}`" in texts(at.caption)


# -------------------------------------------------------------------- reports


def test_a_stored_report_is_listed_with_a_download_button(runs_store):
    from streamlit.runtime.memory_media_file_storage import _calculate_file_id

    seed_overfitting_run(runs_store, lr_change_at=3)
    path = runs_store.runs_dir / RUN / "reports" / "v002.md"
    markdown = "# Training adjustment report\n\n**Source**: user\n\n<b>not bold</b>"
    runs_store.record_report(RUN, report_id=f"{RUN}_v002", version=2, epoch=3, path=str(path), markdown=markdown)
    at = run_page(RUN)
    assert not at.exception
    [expander] = [e for e in at.expander if e.label.startswith("v2 · in force from epoch 3 · written ")]
    assert "# Training adjustment report" in texts(expander.markdown)
    assert not any(m.proto.allow_html for m in expander.markdown)
    [download] = [d for d in at.get("download_button") if d.proto.label == "Download .md"]
    # The served file is the report, named after the run and the report's own file.
    assert _calculate_file_id(markdown.encode(), "text/markdown", f"{RUN}_v002.md") in download.proto.url
    assert download.proto.ignore_rerun  # downloading does not redraw the page


def test_no_reports_yet_says_where_they_will_be(runs_store):
    seed_overfitting_run(runs_store)
    at = run_page(RUN)
    assert "They appear here and in" in texts(at.caption)


# ------------------------------------------------------------------ autopilot


def test_autopilot_off_button_writes_autopilot_false(runs_store):
    seed_overfitting_run(runs_store, config={"autopilot": True, "autopilot_every": 2,
                                             "autopilot_max_changes": 3, "autopilot_max_lr_factor": 4.0})
    at = run_page(RUN)
    assert "asks the advisor (Claude if the trainer has `ANTHROPIC_API_KEY`, else the offline rules) every 2 " \
           "epochs, at most 3 changes in the run, lr ×/÷4 per step" in "\n".join(m.value for m in at.markdown)
    warnings = LogRecords()
    logging.getLogger("streamlit").addHandler(warnings)
    try:
        button(at, "Turn autopilot off").click().run()
    finally:
        logging.getLogger("streamlit").removeHandler(warnings)
    assert not at.exception
    assert "Autopilot off requested" in texts(at.toast)
    assert not [m for m in warnings.messages if "callback that displays" in m]  # the fragment shows it
    live = written(runs_store)
    assert live["autopilot"] is False
    assert live["_change"]["source"] == "user" and "autopilot turned off" in live["_change"]["reason"]
    assert button(at, "Turn autopilot off").disabled
    assert "Off requested" in "\n".join(m.value for m in at.markdown)


def test_autopilot_is_off_by_default_in_a_folded_form_section(runs_store):
    seed_overfitting_run(runs_store)
    at = run_page(RUN)
    [section] = [e for e in at.expander if e.label == "Autopilot"]
    assert not section.proto.expanded
    assert "Off by default" in texts(section.caption)
    assert at.checkbox(key=f"steer-{RUN}-v1-autopilot").value is False
    assert not [b for b in at.button if b.label == "Turn autopilot off"]


# --------------------------------------------------------------- pure helpers


def suggestion(number, parameter, current, suggested, problem="", notes=()):
    return CheckedSuggestion(number=number, parameter=parameter, current_value=current, suggested_value=suggested,
                             reason="because", problem=problem, notes=list(notes))


def record_of(*suggestions, advice_id="adv_20260101_000000_abcd"):
    return AdviceRecord(id=advice_id, run_id=RUN, epoch=6, advisor="offline rules", asked_by="user",
                        question="", analysis="", suggestions=list(suggestions), time=0.0)


def versions_of(*rows):
    """Config versions from (version, epoch, change id, diff) rows, as ``Store.config_versions`` has them."""
    return pd.DataFrame([{"version": v, "epoch": e, "change_id": c, "diff": d} for v, e, c, d in rows],
                        columns=["version", "epoch", "change_id", "diff"])


def test_suggestion_rows_say_what_became_of_each_suggestion():
    record = record_of(
        suggestion(1, "learning_rate", 0.001, 0.0003),
        suggestion(2, "model_name", "mlp", "resnet18", problem="model_name: fixed for the life of the run"),
        suggestion(3, "dropout_rate", 0.2, 0.3),
        suggestion(4, "weight_decay", 0.0, 0.0001),
        suggestion(5, "batch_size", 32, 64, notes=["the advisor gave the current value as 16; it is 32"]),
        suggestion(6, "num_epochs", 20, 30),
        suggestion(7, "gradient_clipping", False, True),
    )
    config = {"learning_rate": 0.0003, "model_name": "mlp", "dropout_rate": 0.2, "weight_decay": 0.0001,
              "batch_size": 32, "num_epochs": 25, "gradient_clipping": True}
    versions = versions_of(
        (1, 1, "", {}),
        # #7 was sent, then #1 before the boundary: the file's note (and the version) names #1 only.
        (2, 7, f"{record.id}#1", {"learning_rate": [0.001, 0.0003], "gradient_clipping": [False, True]}),
        (3, 8, "", {"weight_decay": [0.0, 0.0001]}),  # set by hand to what #4 suggests
        (4, 8, "", {"num_epochs": [20, 25]}),
    )
    rows = views.suggestion_rows(record, config, versions, {"dropout_rate": 0.3}, epochs_done=8)
    status = {r.number: (r.status, r.selectable, r.sent) for r in rows}
    assert status[1] == status[7] == ("✅ applied as v2, in force from epoch 7", False, True)
    assert status[2] == ("⛔ refused: model_name: fixed for the life of the run", False, False)
    assert status[3] == ("⏳ sent, pending: applies once epoch 9 finishes", False, True)
    assert status[4] == ("already the run's value: nothing to send", False, False)
    assert status[5] == ("valid · note: the advisor gave the current value as 16; it is 32", True, False)
    assert status[6] == ("valid · the run has 25 now", True, False)
    # The editor offers the two that can be sent; the others are listed apart, read-only.
    assert views.suggestions_table(rows)["#"].tolist() == [5, 6]
    done = [r for r in rows if not r.selectable]
    assert views.status_table(done)[["sent", "#"]].values.tolist() == [["✓", 1], ["", 2], ["✓", 3], ["", 4],
                                                                        ["✓", 7]]


def test_a_suggestion_waiting_under_another_change_note_reads_sent():
    """Sending #2 after #1 rewrites the file's note to #2; #1's value still waits there, so it reads sent."""
    record = record_of(suggestion(1, "learning_rate", 0.001, 0.0003), suggestion(2, "dropout_rate", 0.2, 0.3))
    rows = views.suggestion_rows(record, {"learning_rate": 0.001, "dropout_rate": 0.2}, versions_of(),
                                 {"learning_rate": 0.0003, "dropout_rate": 0.3}, epochs_done=3)
    assert [(r.status, r.selectable) for r in rows] == [("⏳ sent, pending: applies once epoch 4 finishes", False)] * 2
    # A different value waiting (typed in the Steer form) is not this suggestion: it can still be sent.
    [row] = views.suggestion_rows(record_of(suggestion(1, "learning_rate", 0.001, 0.0003)),
                                  {"learning_rate": 0.001}, versions_of(), {"learning_rate": 0.01})
    assert row.selectable


@pytest.mark.parametrize("status, epochs, text", [
    ("running", 4, "⏳ sent, pending: applies once epoch 5 finishes"),
    ("paused", None, "⏳ sent, pending: applies at the next epoch boundary"),
    ("stopped", 4, "⏳ sent, not applied yet: the run was stopped; `tiller resume` applies it"),
    ("crashed", 4, "⏳ sent, not applied yet: the run crashed; `tiller resume` applies it"),
    ("finished", 4, "✖ sent, never applied: the run finished first"),
])
def test_a_sent_suggestion_says_when_it_applies(status, epochs, text):
    record = record_of(suggestion(1, "learning_rate", 0.001, 0.0003))
    [row] = views.suggestion_rows(record, {"learning_rate": 0.001}, versions_of(), {"learning_rate": 0.0003},
                                  run_status=status, epochs_done=epochs)
    assert (row.status, row.selectable, row.sent) == (text, False, True)


@pytest.mark.parametrize("status", ["stopped", "crashed", "failed"])
def test_a_sent_suggestion_of_an_ended_own_loop_run_never_applies(status):
    # tiller resume refuses a run of the user's own loop: the page must not promise it.
    record = record_of(suggestion(1, "learning_rate", 0.001, 0.0003))
    [row] = views.suggestion_rows(record, {"learning_rate": 0.001}, versions_of(), {"learning_rate": 0.0003},
                                  run_status=status, epochs_done=4, resumable=False)
    assert row.status.startswith("✖ sent, never applied") and "tiller resume" not in row.status


def test_an_applied_suggestion_that_was_reverted_can_be_sent_again():
    record = record_of(suggestion(1, "learning_rate", 0.001, 0.0003))
    versions = versions_of((1, 1, "", {}), (2, 7, f"{record.id}#1", {"learning_rate": [0.001, 0.0003]}),
                           (3, 9, "revert:v2", {"learning_rate": [0.0003, 0.001]}))
    [row] = views.suggestion_rows(record, {"learning_rate": 0.001}, versions)
    assert row.selectable and row.status.startswith("applied as v2, changed since")


def test_the_same_value_of_another_type_is_not_in_force():
    record = record_of(suggestion(1, "use_augmentation", False, 1))
    [row] = views.suggestion_rows(record, {"use_augmentation": True}, versions_of())
    assert row.selectable  # 1 is not True: the checks will judge it


def test_ticked_takes_only_rows_that_can_be_applied():
    record = record_of(suggestion(1, "learning_rate", 0.001, 0.0003),
                       suggestion(2, "model_name", "mlp", "x", problem="fixed"),
                       suggestion(3, "dropout_rate", 0.2, 0.3))
    rows = views.suggestion_rows(record, {"learning_rate": 0.001, "dropout_rate": 0.2}, versions_of())
    table = views.suggestions_table(rows)
    assert table["#"].tolist() == [1, 3]
    assert views.ticked(rows, table.assign(apply=[True, False])) == [1]
    assert views.ticked(rows, table) == []
    # A tick on a number that cannot be applied (a stale table) is never taken.
    stale = pd.DataFrame({"#": [2, 3], "apply": [True, True]})
    assert views.ticked(rows, stale) == [3]


def test_numbers_of_reads_only_its_own_advice():
    assert views.numbers_of("adv_a#1,3", "adv_a") == {1, 3}
    assert views.numbers_of("adv_a#1,3", "adv_b") == set()
    assert views.numbers_of("revert:v2", "adv_a") == set()
    assert views.numbers_of("", "adv_a") == set()


def test_sent_text_names_the_change_id_and_the_values():
    record = record_of(suggestion(1, "learning_rate", 0.001, 0.0003), suggestion(2, "dropout_rate", 0.2, 0.3))
    text = views.sent_text(record, [2, 1], {"learning_rate": 0.0003, "dropout_rate": 0.3})
    assert text == f"learning_rate 0.001 → 0.0003, dropout_rate 0.2 → 0.3 as change {record.id}#1,2 (source llm)"


def test_advisor_caption_names_the_advisor_and_never_a_key(monkeypatch):
    assert views.advisor_caption(False, "claude-x", False) == \
        "Answered by the offline rule-based advisor (no ANTHROPIC_API_KEY set)."
    assert "Claude (claude-x)" in views.advisor_caption(True, "claude-x", False)
    assert "Offline rules is on" in views.advisor_caption(True, "claude-x", True)


def test_safe_markdown_turns_images_into_text_and_lowers_headings():
    assert views.safe_markdown("see ![a](http://x/p.png) and [b](http://y)") == \
        "see \\[image: a\\] and [b](http://y)"
    text = "# Report\n## Changes\n###### deep\n#hashtag\n```json\n# not a heading ![x](y)\n```\n### after"
    assert views.safe_markdown(text) == \
        "### Report\n\n#### Changes\n\n###### deep\n\n\\#hashtag\n\n```json\n# not a heading ![x](y)\n```\n\n##### after"


def test_autopilot_text():
    config = {"autopilot": True, "autopilot_every": 1, "autopilot_max_changes": 10, "autopilot_max_lr_factor": 10.0,
              "autopilot_advisor": "rules"}
    assert views.autopilot_text(config) == ("**Autopilot on**: asks the offline rules every epoch, at most 10 "
                                            "changes in the run, lr ×/÷10 per step.")
    progress = {"steps": 1, "changes_made": 2, "in_flight": True}
    assert views.autopilot_text(config, progress).endswith(
        "So far: 1 step, 2 changes. A step is waiting for the advisor.")


def test_earlier_advice_table_says_what_became_of_each():
    record = record_of(suggestion(1, "learning_rate", 0.001, 0.0003),
                       suggestion(2, "model_name", "mlp", "x", problem="fixed"))
    table = views.earlier_advice_table([record], versions_of((2, 7, f"{record.id}#1", {})))
    assert table["suggestions"][0] == '#1 learning_rate → 0.0003 (applied as v2); #2 model_name → "x" (refused)'
    assert table["asked from"][0] == "the dashboard"


def test_revert_choices_and_labels():
    versions = pd.DataFrame([
        {"version": 1, "epoch": 1, "source": "cli", "diff": {}},
        {"version": 2, "epoch": 3, "source": "llm", "diff": {"learning_rate": [0.001, 0.0003]}},
    ])
    assert views.revert_choices(versions) == [2]
    assert views.revert_choices(versions.head(1)) == []
    assert views.version_label(versions, 2) == "v2 · from epoch 3 · llm: learning_rate 0.001 → 0.0003"
    table = views.revert_table({"learning_rate": 0.001}, {"learning_rate": 0.0003})
    assert table.to_dict("records") == [{"key": "learning_rate", "now": "0.0003", "back to": "0.001"}]


def test_report_filename_comes_from_the_path():
    assert views.report_filename({"path": "/runs/r/reports/v003.md", "version": 3}, "r") == "r_v003.md"
    assert views.report_filename({"path": "", "version": 4}, "r") == "r_v004.md"
