"""The run page's advisor: ask, read the advice, apply suggestions; the autopilot's status;
the adjustment reports; reverting a config version.

The question box is drawn by the page itself, outside the refreshing fragments,
so live updates never touch what is being typed. The advice panel refreshes
(each suggestion's status follows the run), and its editor is keyed, so ticks
survive the redraws. What the advisor says is read back from the store, so a
reload or a second browser shows the same advice. Every change goes through the live config file
(``tiller.trainer.advisor.apply_advice`` / ``revert_version``), like the steering form.
Advisor text is Markdown rendered without HTML, and the API key is never shown.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import pandas as pd
import streamlit as st

from tiller.dashboard import advice_views as views
from tiller.dashboard import data
from tiller.dashboard.display import (
    diff_text, ended_explanation, epochs_done, is_live, keep_toast, local_clock, local_time, md_escape,
    set_aside_note, show_kept_toast, user_timezone,
)
from tiller.store.store import OWN_LOOP
from tiller.trainer.advisor import AdviceRecord, AdvisorError, apply_advice, ask, revert_version
from tiller.trainer.advisor import llm
from tiller.trainer.steering.live_config import pending_edit, request_change

EARLIER_SHOWN = 50
REPORTS_SHOWN = 20
MESSAGE_KEEP_S = 60.0  # how long a message stays in a part of the page that redraws itself
ROW_HEIGHT = 78  # three lines: a reason is a sentence or two, and wraps
# Fixed widths (px, they fill the advice box at 1280 px), the same in both suggestion tables:
# the read-only one above and the editor below then line up as one table.
COLUMN_WIDTHS = {"apply": 86, "sent": 86, "#": 44, "parameter": 150, "current": 90, "suggested": 90,
                 "reason": 400, "status": 228}


def _records(run_id: str) -> list[AdviceRecord]:
    return [AdviceRecord.from_row(row) for row in data.advice(run_id).to_dict("records")]


def _waiting_values(run_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The values the live config file asks for that the run has not applied yet."""
    # An unreadable file waits for nothing here; the run page's pending-edit panel says why.
    pending = pending_edit(data.live_config_path(run_id), config) or {}
    return {key: new for key, (_, new) in (pending.get("changes") or {}).items()}


def _flash(key: str, kind: str | None = None, text: str = "", *, keep_s: float = 0.0) -> None:
    """Keep a message (``kind`` given: success, error…), or show the one kept.

    It shows once, or, with ``keep_s``, on every draw for that long: a fragment that
    redraws every few seconds would otherwise wipe it before it is read.
    """
    if kind is not None:
        st.session_state[key] = (kind, text, time.time())
        return
    kept = st.session_state.get(key)
    if not kept:
        return
    if not keep_s or time.time() - kept[2] > keep_s:
        del st.session_state[key]
    if not keep_s or time.time() - kept[2] <= keep_s:
        getattr(st, kept[0])(kept[1])


# ------------------------------------------------------------------ asking


def advisor_section(run_id: str) -> None:
    """The whole advisor section of the run page (call it outside any fragment)."""
    st.subheader("Advisor", anchor=False)
    autopilot_status(run_id)
    ask_form(run_id)
    records = _records(run_id)
    if not records:
        st.caption("No advice for this run yet. The advisor reads the config, every epoch's metrics, earlier "
                   "changes and the latest per-class results, and suggests changes you can apply.")
        return
    advice_panel(run_id, records[0].id)
    if len(records) > 1:
        earlier_advice(run_id, records[1:EARLIER_SHOWN + 1])


def ask_form(run_id: str) -> None:
    key_set = llm.has_key()
    # Without a key there is no choice to make, so no switch (and no gap where it would be).
    if key_set:
        question_column, toggle_column, button_column = st.columns([6, 2, 2], vertical_alignment="bottom")
    else:
        (question_column, button_column), toggle_column = st.columns([8, 2], vertical_alignment="bottom"), None
    question = question_column.text_input(
        "Question (optional)", key=f"ask-question-{run_id}", max_chars=2000,
        placeholder="e.g. why is the validation loss rising?",
    )
    offline = False
    if key_set:
        offline = toggle_column.toggle("Offline rules", key=f"ask-offline-{run_id}",
                                       help="Ask the rule-based advisor on this machine instead of Claude.")
    asked = button_column.button("Ask for suggestions", type="primary", width="stretch", key=f"ask-{run_id}")
    st.caption(views.advisor_caption(key_set, llm.model_name(), offline))
    if asked:
        ask_now(run_id, question, offline=offline or not key_set)


def ask_now(run_id: str, question: str, *, offline: bool) -> None:
    who = "the offline rules" if offline else f"Claude ({llm.model_name()})"
    try:
        with st.spinner(f"Asking {who}…"):
            record = ask(data.store(), run_id, question, offline=offline, asked_by="user")
    except AdvisorError as exc:
        st.error(f"The advisor could not answer: {md_escape(exc)}")
        return
    except Exception as exc:  # an unexpected failure still gets a message, not a traceback
        st.error(f"The advisor failed unexpectedly ({md_escape(type(exc).__name__)}: {md_escape(exc)}); "
                 "nothing was changed.")
        return
    data.forget_advice()
    count = len(record.suggestions)
    st.toast(f"{md_escape(record.advisor)} answered with {count} suggestion{'s' if count != 1 else ''}.")


# ---------------------------------------------------------------- the advice


@st.fragment(run_every=data.REFRESH_S)
def advice_panel(run_id: str, advice_id: str) -> None:
    """The advice drawn by the page, kept current: each suggestion's status follows the run
    (sent, applied), and newer advice (the autopilot, another browser) is announced rather
    than swapped in under the user's ticks. A keyed editor keeps its ticks across redraws."""
    records = _records(run_id)
    newest = records[0] if records else None
    if newest is not None and newest.id != advice_id:
        asked_from = views.ASKED_FROM.get(newest.asked_by, newest.asked_by)
        notice, button = st.columns([5, 1], vertical_alignment="center")
        notice.info(f"Newer advice from {md_escape(newest.advisor)} (asked from {md_escape(asked_from)} after "
                    f"epoch {newest.epoch}).")
        if button.button("Show it", key=f"show-newer-{run_id}", width="stretch"):
            st.rerun(scope="app")
    record = next((r for r in records if r.id == advice_id), None)
    if record is not None:
        show_advice(run_id, record)


def show_advice(run_id: str, record: AdviceRecord) -> None:
    tz = user_timezone()
    run = data.run_record(run_id) or {}
    config = data.current_config(run_id) or {}
    versions = data.config_versions(run_id)
    with st.container(border=True):
        st.markdown(views.advice_heading(record, tz))
        if record.question:
            st.markdown(f"**Question**: {md_escape(record.question)}")
        st.markdown(views.safe_markdown(record.analysis) or "*(no analysis given)*")
        if not record.suggestions:
            st.caption("No suggestions: the advisor sees nothing to change now.")
            return
        rows = views.suggestion_rows(record, config, versions, _waiting_values(run_id, config),
                                     run_status=run.get("status", ""), epochs_done=epochs_done(run) if run else None,
                                     resumable=run.get("trainer") != OWN_LOOP)
        ended = ended_explanation(run.get("status", ""), run_id)
        # An ended run takes no change: every suggestion is listed read-only, none has a box to tick.
        read_only = rows if ended else [r for r in rows if not r.selectable]
        open_rows = [] if ended else [r for r in rows if r.selectable]
        status_table(views.status_table(read_only))
        if ended:
            st.caption(f"{ended} Applying is off; asking still works, as advice on an ended run is still "
                       "worth reading.")
        elif open_rows:
            apply_form(run_id, record, open_rows)
        else:
            st.caption("Every suggestion of this advice is sent, applied or cannot be applied; ask again for "
                       "new advice once the run has trained on.")
        _flash(f"apply-message-{record.id}", keep_s=MESSAGE_KEEP_S)


def _column_config(first: str, column: Mapping[str, Any]) -> dict[str, Any]:
    """The suggestion tables' columns: ``first`` (apply, or sent) as ``column``, then the same widths in both."""
    return {
        first: column,
        "#": st.column_config.NumberColumn("#", width=COLUMN_WIDTHS["#"]),
        **{name: st.column_config.TextColumn(name, width=COLUMN_WIDTHS[name])
           for name in ("parameter", "current", "suggested", "reason", "status")},
    }


def status_table(table: pd.DataFrame) -> None:
    """Suggestions that cannot be ticked, read-only: sent (waiting or applied), refused, in force.
    Above the editor, so the table of what can still be sent stays where the ticking happens."""
    if table.empty:
        return
    st.dataframe(table, hide_index=True, width="stretch", row_height=ROW_HEIGHT,
                 column_config=_column_config("sent", st.column_config.TextColumn(
                     "sent", width=COLUMN_WIDTHS["sent"], alignment="center",
                     help="✓: sent to the run; its status says if it applied.")))


def apply_form(run_id: str, record: AdviceRecord, rows: list[views.SuggestionRow]) -> None:
    """The suggestions that can be sent, each with a box to tick, and the button that sends them."""
    generation = st.session_state.get(f"apply-generation-{record.id}", 0)
    # The rows in the key: ticks are kept by row position, so when a suggestion leaves or
    # rejoins this table (sent, or sent again elsewhere) the editor starts afresh rather
    # than carry a tick onto a neighbour.
    numbers = "_".join(str(r.number) for r in rows)
    edited = st.data_editor(
        views.suggestions_table(rows), key=f"advice-{record.id}-{generation}-{numbers}", hide_index=True,
        width="stretch", disabled=views.SUGGESTION_COLUMNS[1:], row_height=ROW_HEIGHT,
        column_config=_column_config("apply", st.column_config.CheckboxColumn(
            "apply", width=COLUMN_WIDTHS["apply"], help="Tick the suggestions to send to the run.")),
    )
    chosen = views.ticked(rows, edited)
    clicked = st.button("Apply selected at next epoch", type="primary", key=f"apply-{record.id}", disabled=not chosen)
    if not chosen:
        st.caption("Tick the suggestions to apply. They go to the run's live config file with source llm "
                   "and take effect at the next epoch boundary.")
    if clicked and chosen:
        apply_now(run_id, record, chosen)


def apply_now(run_id: str, record: AdviceRecord, numbers: list[int]) -> None:
    try:
        updates = apply_advice(data.store(), record, numbers)
    except AdvisorError as exc:
        st.error(f"Nothing applied: {md_escape(exc)}")
        return
    run = data.fresh_run_record(run_id)  # the epoch now, for the message
    # Worded to stay true while it shows: the status column above follows the change.
    _flash(f"apply-message-{record.id}", "success",
           f"Sent {md_escape(views.sent_text(record, numbers, updates))}. It applies at the next epoch boundary "
           f"(once epoch {epochs_done(run) + 1} finishes); its status above says when, and its report then "
           "appears under Adjustment reports.")
    # A fresh editor: the sent rows move to the table above, and no tick is left behind.
    st.session_state[f"apply-generation-{record.id}"] = st.session_state.get(f"apply-generation-{record.id}", 0) + 1
    st.rerun()


def earlier_advice(run_id: str, records: list[AdviceRecord]) -> None:
    tz = user_timezone()
    with st.expander(f"Earlier advice ({len(records)})"):
        table = views.earlier_advice_table(records, data.config_versions(run_id), tz)
        st.dataframe(table, hide_index=True, width="stretch",
                     column_config={"suggestions": st.column_config.TextColumn(width="large")})
        by_id = {r.id: r for r in records}
        chosen = st.selectbox("Read an earlier analysis", [None, *by_id], key=f"earlier-{run_id}",
                              format_func=lambda i: "—" if i is None else
                              f"{local_time(by_id[i].time, tz)} · {by_id[i].advisor} · epoch {by_id[i].epoch}")
        if chosen is not None:
            record = by_id[chosen]
            st.markdown(views.advice_heading(record, tz))
            if record.question:
                st.markdown(f"**Question**: {md_escape(record.question)}")
            st.markdown(views.safe_markdown(record.analysis))


# ----------------------------------------------------------------- autopilot


def _turn_autopilot_off(run_id: str, config: Mapping[str, Any]) -> None:
    # The button lives in autopilot_status's fragment: the feedback is kept for it to show.
    status = data.fresh_run_record(run_id)["status"]
    if not is_live(status):
        keep_toast(f"autopilot-{run_id}", f"Nothing sent: the run is {status}.")
        return
    set_aside = request_change(data.live_config_path(run_id), {"autopilot": False}, source="user",
                               reason="autopilot turned off from the dashboard", fallback=config)
    keep_toast(f"autopilot-{run_id}", "Autopilot off requested: it stops at the next epoch boundary."
               + set_aside_note(set_aside))


@st.fragment(run_every=data.REFRESH_S)
def autopilot_status(run_id: str) -> None:
    show_kept_toast(f"autopilot-{run_id}")
    run, config = data.run_record(run_id), data.current_config(run_id)
    if run is None or not config:
        return
    if not config.get("autopilot"):
        if is_live(run["status"]) and "autopilot" in config:
            st.caption("Autopilot is off (the default); the Steer form's Autopilot section turns it on.")
        return
    state = data.in_force(run_id) or {}
    progress = state.get("autopilot") if isinstance(state.get("autopilot"), dict) else None
    text = views.autopilot_text(config, progress)
    live = is_live(run["status"])
    pending = pending_edit(data.live_config_path(run_id), config) or {}
    off_requested = (pending.get("changes") or {}).get("autopilot", [None, True])[1] is False
    with st.container(border=True):
        line, button = st.columns([5, 1], vertical_alignment="center")
        if not live:
            line.markdown(text.replace("**Autopilot on**", "**Autopilot was on**"))
        elif off_requested:
            line.markdown(text + " **Off requested**: it stops at the next epoch boundary.")
        else:
            line.markdown(text)
        if live:
            button.button("Turn autopilot off", key=f"autopilot-off-{run_id}", disabled=off_requested,
                          width="stretch", on_click=_turn_autopilot_off,
                          kwargs={"run_id": run_id, "config": config})
        if progress and progress.get("last"):
            st.caption(f"Last step: {md_escape(progress['last'])}")


# ------------------------------------------------------------------- reports


@st.fragment(run_every=data.REFRESH_S)
def reports_section(run_id: str) -> None:
    tz = user_timezone()
    st.subheader("Adjustment reports", anchor=False)
    reports = data.reports(run_id)
    folder = data.live_config_path(run_id).parent / "reports"
    if reports.empty:
        st.caption(f"The trainer writes a report each time it applies a config change: what changed and why, "
                   f"the advisor's analysis when the change came from advice, the metrics, the config before and "
                   f"after. They appear here and in {md_escape(folder)}.")
        return
    st.caption(f"One per applied config change, newest first; also in {md_escape(folder)}.")
    for report in reports.head(REPORTS_SHOWN).to_dict("records"):
        with st.expander(views.report_label(report, tz)):
            st.download_button("Download .md", data=report["markdown"], file_name=views.report_filename(report, run_id),
                               mime="text/markdown", key=f"report-download-{report['id']}", on_click="ignore",
                               icon=":material/download:")
            st.markdown(views.safe_markdown(report["markdown"]))
    if len(reports) > REPORTS_SHOWN:
        st.caption(f"{len(reports) - REPORTS_SHOWN} older reports are in {md_escape(folder)}.")


# -------------------------------------------------------------------- revert


def _revert(run_id: str, version: int) -> None:
    key = f"revert-message-{run_id}"
    try:
        updates = revert_version(data.store(), run_id, version, source="user")
    except AdvisorError as exc:
        _flash(key, "error", f"Nothing sent: {md_escape(exc)}")
        return
    config = data.store().current_config(run_id)
    pairs = {k: [config.get(k), v] for k, v in updates.items()}
    _flash(key, "success", f"Sent the revert of v{version} ({md_escape(diff_text(pairs))}) at "
                           f"{local_clock(time.time(), user_timezone())}. It applies at the next epoch boundary.")


def revert_controls(run_id: str, run: Mapping[str, Any], versions: pd.DataFrame) -> None:
    """Pick a config version and go back to the one before it (call inside the history fragment)."""
    choices = views.revert_choices(versions)
    if not choices:
        st.caption("Once the run has a second config version, any version can be reverted from here."
                   if is_live(run["status"]) else "The run kept its first config: nothing to revert.")
        return
    pick, action = st.columns([4, 2], vertical_alignment="bottom")
    version = pick.selectbox("Revert a change", choices, key=f"revert-pick-{run_id}",
                             format_func=lambda v: views.version_label(versions, v),
                             help="Sends the config of the version before it, for the keys that differ now.")
    if version not in choices:  # a stale choice from another run
        version = choices[0]
    ended = ended_explanation(run["status"], run_id)
    updates, problem = data.revert_preview(run_id, version)
    with action.popover(f"Revert to v{version - 1}…", icon=":material/undo:", width="stretch",
                        disabled=bool(ended) or not updates):
        st.markdown(f"This sends the keys of **v{version - 1}** that differ from the config now, as a change "
                    f"from **user** (change id revert:v{version}); it applies at the next epoch boundary.")
        st.dataframe(views.revert_table(updates, data.current_config(run_id) or {}), hide_index=True,
                     width="stretch")
        st.button(f"Revert to v{version - 1}", type="primary", key=f"revert-confirm-{run_id}",
                  on_click=_revert, kwargs={"run_id": run_id, "version": version})
    if ended:
        st.caption(ended)
    elif problem:
        st.caption(f"Nothing to send: {md_escape(problem)}.")
    _flash(f"revert-message-{run_id}", keep_s=MESSAGE_KEEP_S)
