"""The run page's steering widgets: the hot-key form, pause/resume/stop, the pending edit,
and what became of a change sent from the form.

Every request goes through ``tiller.trainer.steering.live_config``, which replaces the run's
live config file atomically; the trainer validates and applies it, and records
a config version with ``source="user"`` and the reason typed here.

The form sits outside the refreshing fragments, so a redraw never takes what is
being typed. Its inputs are keyed by the config version they were drawn from; when
a later full draw finds a newer version, the values the user had changed are
carried over to the new inputs and the others show the new config in force.
"""

from __future__ import annotations

import json
import math
import time
import typing
from typing import Any, Collection, Mapping

import streamlit as st

from tiller.dashboard import data
from tiller.dashboard.display import (
    diff_text, ended_explanation, epochs_done, is_live, keep_toast, local_clock, md_escape, set_aside_note,
    show_kept_toast, user_timezone,
)
from tiller.dashboard.steering import (
    SentChange, SentOutcome, allowed_controls, change_problems, changed_values, decode_json_fields, sent_outcome,
)
from tiller.dashboard.tables import pending_table
from tiller.trainer.steering.config import TrainConfig, describe_keys, hot_keys, key_bounds, steerable_keys
from tiller.trainer.steering.live_config import pending_edit, request_change, request_control
from tiller.trainer.steering.schedule import SCHEDULE_KEYS

APPLIED_SHOWN_S = 120.0  # how long "applied as vN" stays under the form; the config history keeps it after

CONTROL_DONE = {
    "pause": "Pause requested: the run pauses at its next training step.",
    "run": "Resume requested: the run continues at its next training step.",
    "stop": "Stop requested: the run stops at its next training step and keeps its last checkpoint.",
}


# ---------------------------------------------------------------- controls


def requested_control(pending: Mapping[str, Any] | None) -> str:
    """The control the live file asks for (``run`` when it asks for nothing)."""
    return (pending or {}).get("control", "run")


def _send_control(run_id: str, control: str, config: Mapping[str, Any]) -> None:
    # A button callback: it runs before the rerun, so the buttons drawn next
    # already reflect the request. The buttons may be up to one refresh old, so
    # the status is checked afresh: nothing reads the file of a run that ended.
    # The buttons live in a fragment: the feedback is kept for control_buttons to show.
    status = data.fresh_run_record(run_id)["status"]
    if not is_live(status):
        keep_toast(f"control-{run_id}", f"Nothing sent: the run is {status}.")
        return
    set_aside = request_control(data.live_config_path(run_id), control, fallback=config)
    keep_toast(f"control-{run_id}", CONTROL_DONE[control] + set_aside_note(set_aside))


def control_buttons(run_id: str, status: str, config: Mapping[str, Any], pending: Mapping | None) -> None:
    show_kept_toast(f"control-{run_id}")
    allowed = allowed_controls(status, requested_control(pending))
    pause, resume, stop = st.columns(3)
    pause.button("Pause", icon=":material/pause:", disabled=not allowed["pause"], width="stretch",
                 on_click=_send_control, kwargs={"run_id": run_id, "control": "pause", "config": config},
                 help="Pause at the next training step; nothing is lost.")
    resume.button("Resume", icon=":material/play_arrow:", disabled=not allowed["run"], width="stretch",
                  on_click=_send_control, kwargs={"run_id": run_id, "control": "run", "config": config})
    # Stopping cannot be undone, so it takes a second click in a popover.
    with stop.popover("Stop…", icon=":material/stop:", disabled=not allowed["stop"], width="stretch"):
        st.write("The run stops at its next training step; the last checkpoint is kept. This cannot be undone.")
        st.button("Stop this run", type="primary", on_click=_send_control,
                  kwargs={"run_id": run_id, "control": "stop", "config": config})


# ------------------------------------------------------------ pending edit


def show_pending(run: Mapping[str, Any], config: Mapping[str, Any], pending: Mapping[str, Any] | None) -> None:
    """What the live file asks for that the run has not applied yet, and whether it will be."""
    if pending is None:
        st.caption("No pending edit: the live config file matches the config in force.")
        return
    if "error" in pending:
        st.error(
            f"The live config file cannot be read ({md_escape(pending['error'])}). The run keeps its last "
            "good config and will record the problem in its events at the next epoch boundary."
        )
        return
    control = pending["control"]
    if control == "stop" or (control == "pause" and run["status"] == "running"):
        st.warning(f"**{control.capitalize()}** requested; it takes effect at the next training step.")
    if not pending["changes"]:
        return
    requested = {key: new for key, (_, new) in pending["changes"].items()}
    problems = change_problems(config, requested, epochs_done(run), run.get("hot_keys"))
    if problems:
        # Typically a hand edit: say now what the trainer will say at the boundary.
        st.error("**Pending edit that will be rejected** at the next epoch boundary; the run will keep "
                 "its config:\n\n" + "\n".join(f"- {md_escape(p)}" for p in problems))
    else:
        st.warning("**Pending edit**, not applied yet: it applies at the next epoch boundary.")
    st.dataframe(pending_table(pending["changes"]), hide_index=True, width="stretch")


# -------------------------------------------------------------------- form


def _float_step(value: float) -> float:
    """A tenth of the value's order of magnitude: 0.001 steps by 0.0001, 0.9 by 0.01."""
    return 10.0 ** (math.floor(math.log10(abs(value))) - 1) if value else 0.01


def form_value(key: str, value: Any) -> Any:
    """A config value as the key's input holds it: JSON text for a dict, a float for a float key."""
    annotation = TrainConfig.model_fields[key].annotation
    if typing.get_origin(annotation) is dict:  # class_weights: edited as JSON text
        return json.dumps(value, ensure_ascii=False)
    if annotation is float:
        return float(value)
    return value


def hot_key_input(key: str, value: Any, info: Mapping[str, Any], widget_key: str) -> Any:
    """An input for one hot key: a checkbox, a choice, or a number bounded like the schema
    (exclusive bounds are checked on submit).

    Its value lives in the session state under ``widget_key``, set to ``value`` on first
    draw, so that ``carry_edits`` may set it before a redraw (no widget takes a ``value``
    argument as well: Streamlit would warn about the two).
    """
    st.session_state.setdefault(widget_key, form_value(key, value))
    bounds = key_bounds(key)
    low, high = bounds.get("ge", bounds.get("gt")), bounds.get("le", bounds.get("lt"))
    help_text = f"{info['description']}. Allowed: {info['bounds'] or 'any'}; default {info['default']}."
    common = {"help": help_text, "key": widget_key}
    annotation = TrainConfig.model_fields[key].annotation
    if annotation is bool:
        return st.checkbox(key, **common)
    if typing.get_origin(annotation) is typing.Literal:
        return st.selectbox(key, list(typing.get_args(annotation)), **common)
    if typing.get_origin(annotation) is dict:
        return st.text_input(key, **common)
    if annotation is int:
        return st.number_input(key, min_value=low, max_value=high, step=1, **common)
    return st.number_input(
        key, min_value=None if low is None else float(low), max_value=None if high is None else float(high),
        step=_float_step(float(value)), format="%g", **common,
    )


def input_key(run_id: str, version: int, key: str) -> str:
    # The version resets the inputs to the config in force once a change has been applied.
    return f"steer-{run_id}-v{version}-{key}"


def _drawn_key(run_id: str) -> str:
    return f"steer-drawn-{run_id}"


def carry_edits(run_id: str, version: int, config: Mapping[str, Any], keys: Collection[str]) -> None:
    """Before the form is drawn from ``version``: when it was last drawn from an older
    version, put the values the user had changed there into the new inputs.

    Without this, a change recorded between two draws (the user's own, the autopilot's)
    would swap the inputs for fresh ones and silently drop what was submitted.
    """
    drawn = st.session_state.get(_drawn_key(run_id))
    st.session_state[_drawn_key(run_id)] = (version, dict(config))
    if drawn is None or drawn[0] == version:
        return
    old_version, old_config = drawn
    for key in keys:
        old_input = input_key(run_id, old_version, key)
        if key in old_config and old_input in st.session_state:
            typed = st.session_state[old_input]
            if typed != form_value(key, old_config[key]):
                st.session_state[input_key(run_id, version, key)] = typed


# The form's sections, most used first; only the first starts open, so the form is about as
# tall as the config table beside it.
SECTIONS: list[tuple[str, tuple[str, ...], bool]] = [
    ("Training", ("learning_rate", "batch_size", "num_epochs", "optimizer", "weight_decay", "dropout_rate",
                  "beta1", "beta2", "momentum", "nesterov"), True),
    ("Learning-rate schedule", SCHEDULE_KEYS, False),
    ("Regularisation and augmentation", (
        "label_smoothing_enabled", "label_smoothing", "use_augmentation", "advanced_augmentation_enabled",
        "cutmix_prob", "mixup_alpha", "early_stopping", "early_stopping_patience"), False),
    ("Class imbalance", ("use_class_weights", "weight_strategy", "class_weights"), False),
    ("Steps, precision and layers", (
        "gradient_clipping", "gradient_clipping_value", "gradient_accumulation_enabled",
        "gradient_accumulation_steps", "mixed_precision", "loss_scaling_enabled", "loss_scale",
        "static_loss_scale", "model_ema", "model_ema_decay", "freeze_backbone", "fine_tune_at"), False),
    ("Autopilot", ("autopilot", "autopilot_every", "autopilot_max_changes", "autopilot_max_lr_factor",
                   "autopilot_advisor"), False),
]

# A line under a section's title, for sections whose keys need a word of context.
SECTION_NOTES = {
    "Autopilot": (
        "**Off by default.** When on, every `autopilot_every` epochs the trainer asks the advisor and applies "
        "only suggestions that pass the schema checks and these limits: at most `autopilot_max_changes` key "
        "changes in the whole run, and the learning rate moved by at most `autopilot_max_lr_factor` up or down "
        "per step. Each step is recorded like a manual change (source llm, with a report), and you can turn it "
        "off at any time. `auto` asks Claude only if the *trainer's* environment has ANTHROPIC_API_KEY."
    ),
}


def form_sections(run_hot_keys: Collection[str] | None = None) -> list[tuple[str, list[str], bool]]:
    """(title, keys, expanded) in order, for the keys the run may change (``steerable_keys``).

    A section none of whose keys the run steers is left out; a key no section
    names lands in "Other".
    """
    steerable = steerable_keys(run_hot_keys)
    sections = [(title, [k for k in keys if k in steerable], expanded) for title, keys, expanded in SECTIONS]
    listed = {key for _, keys, _ in sections for key in keys}
    rest = [key for key in steerable if key not in listed]
    sections += [("Other", rest, False)] if rest else []
    return [(title, keys, expanded) for title, keys, expanded in sections if keys]


def steering_form(run_id: str, config: Mapping[str, Any], version: int,
                  run_hot_keys: Collection[str] | None = None) -> None:
    """The form for the keys a live run may change; ``run_hot_keys`` is the run's own list (None: every hot key)."""
    steerable = steerable_keys(run_hot_keys)
    missing = [key for key in steerable if key not in config]
    if missing:
        # A loop that logs through the store alone may record any config, and nothing reads its live file.
        st.info(f"This run's config is not a Tiller config (it has no {md_escape(missing[0])}, for one), so "
                "there is nothing here to steer: the form changes runs started with `tiller train` or "
                "`tiller.run(...)`.")
        return
    if not steerable:
        st.info("This run's training loop reads none of the config's hot keys, so there is nothing here to steer.")
        return
    info = {row["key"]: row for row in describe_keys()}
    carry_edits(run_id, version, config, steerable)
    form_freshness(run_id)
    with st.form(f"steer-{run_id}"):
        st.markdown("Hot keys: changes apply at the **next epoch boundary**.")
        if run_hot_keys is not None:
            # Say why most keys are missing, so nobody looks for them in vain.
            st.caption(f"This run's training loop reads {len(steerable)} of Tiller's {len(hot_keys())} hot keys; "
                       "the others are fixed for it.")
        submitted = {}
        for title, keys, expanded in form_sections(run_hot_keys):
            with st.expander(title, expanded=expanded):
                if title in SECTION_NOTES:
                    st.caption(SECTION_NOTES[title])
                # Row by row, so a checkbox and a number input side by side stay aligned.
                for row in range(0, len(keys), 2):
                    for column, key in zip(st.columns(2, vertical_alignment="bottom"), keys[row:row + 2]):
                        with column:
                            submitted[key] = hot_key_input(key, config[key], info[key],
                                                           input_key(run_id, version, key))
        reason_key = f"steer-{run_id}-reason"
        if st.session_state.pop(_reason_sent_key(run_id), False):
            st.session_state[reason_key] = ""  # it went with the change it explains
        reason = st.text_input("reason", placeholder="why: recorded with the change", max_chars=500, key=reason_key)
        send = st.form_submit_button("Send changes", type="primary")
    if send:
        send_changes(run_id, version, config, submitted, reason.strip())
    sent_change_status(run_id)


def send_changes(run_id: str, version: int, config: Mapping[str, Any], submitted: Mapping[str, Any],
                 reason: str) -> None:
    submitted, problems = decode_json_fields(submitted)
    if problems:
        st.error("Not sent; the run keeps its config:\n\n" + "\n".join(f"- {md_escape(p)}" for p in problems))
        return
    updates = changed_values(submitted, config)
    if not updates:
        st.info("Nothing sent: every value equals the config in force.")
        return
    run = data.fresh_run_record(run_id)
    problems = change_problems(config, updates, epochs_done(run), run.get("hot_keys"))
    if problems:
        st.error("Not sent; the run keeps its config:\n\n" + "\n".join(f"- {md_escape(p)}" for p in problems))
        return
    if not is_live(run["status"]):
        st.error(f"Not sent: {ended_explanation(run['status'], run_id) or 'the run is not live.'}")
        return
    set_aside = request_change(data.live_config_path(run_id), updates, source="user", reason=reason, fallback=config)
    if set_aside is not None:
        keep_toast(f"sent-{run_id}", set_aside_note(set_aside).strip())
    # Followed by sent_change_status until the run has applied (or refused) it.
    st.session_state[_sent_key(run_id)] = SentChange(
        updates=dict(updates), before={key: config.get(key) for key in updates}, version=version, time=time.time())
    # Drawn again with an empty reason (a widget's value can be set only before it is drawn).
    st.session_state[_reason_sent_key(run_id)] = True
    st.rerun()


def _reason_sent_key(run_id: str) -> str:
    return f"steer-reason-sent-{run_id}"


# ------------------------------------------------------- after the form was sent


def _sent_key(run_id: str) -> str:
    return f"steer-sent-{run_id}"


@st.fragment(run_every=data.REFRESH_S)
def sent_change_status(run_id: str) -> None:
    """Under the form: the change last sent from it, pending until the run records it as a
    config version, then applied (for ``APPLIED_SHOWN_S``), or why it was not."""
    show_kept_toast(f"sent-{run_id}")
    sent: SentChange | None = st.session_state.get(_sent_key(run_id))
    run = data.run_record(run_id)
    if sent is None or run is None:
        return
    config = data.current_config(run_id) or {}
    outcome = sent_outcome(sent, data.config_versions(run_id), pending_edit(data.live_config_path(run_id), config),
                           data.events(run_id), run["status"])
    if outcome.state == "applied" and time.time() - outcome.time > APPLIED_SHOWN_S:
        del st.session_state[_sent_key(run_id)]  # the config history says it from now on
        return
    show_sent_outcome(sent, outcome, run)


def show_sent_outcome(sent: SentChange, outcome: SentOutcome, run: Mapping[str, Any]) -> None:
    change = md_escape(diff_text(changed_pairs(sent.before, sent.updates)))
    sent_at = md_escape(local_clock(sent.time, user_timezone()))
    if outcome.state == "pending":
        st.info(f"Sent {change} at {sent_at}: **pending**. It applies at the next epoch boundary, once epoch "
                f"{epochs_done(run) + 1} finishes, and then shows in the config history below.", icon="⏳")
    elif outcome.state == "applied":
        st.success(f"Applied as **v{outcome.version}** from epoch {outcome.epoch}: {change} (sent at {sent_at}).",
                   icon="✅")
    elif outcome.state == "refused":
        st.error(f"Not applied: {change} (sent at {sent_at}). {md_escape(outcome.message)}")
    elif outcome.state == "ended":
        st.warning(f"Not applied: the run {run['status']} before its next epoch boundary, so {change} "
                   f"(sent at {sent_at}) was never read.")
    else:
        st.warning(f"No longer pending: the live config file stopped asking for {change} (sent at {sent_at}): "
                   "it was edited from elsewhere. Config in force shows what it asks for now.")


@st.fragment(run_every=data.REFRESH_S)
def form_freshness(run_id: str) -> None:
    """Above the form: a version recorded since the form was drawn changed a value the form
    still shows the old value of. Nothing is lost by sending anyway (only values the user
    changed are sent); the button redraws the form from the config in force."""
    drawn = st.session_state.get(_drawn_key(run_id))
    versions = data.config_versions(run_id)
    if drawn is None or versions.empty or int(versions.iloc[-1]["version"]) == drawn[0]:
        return
    drawn_version, drawn_config = drawn
    latest = versions.iloc[-1]
    shown = {key: st.session_state[input_key(run_id, drawn_version, key)] for key in drawn_config
             if input_key(run_id, drawn_version, key) in st.session_state}
    stale = {key: [drawn_config[key], value] for key, value in latest["config"].items()
             if key in shown and value != drawn_config[key] and shown[key] != form_value(key, value)}
    if not stale:
        return
    st.warning(f"Since this form was drawn, the config changed ({md_escape(diff_text(stale))}, now "
               f"v{int(latest['version'])}). Only the values you change are sent.")
    if st.button("Show the config in force in the form", key=f"steer-update-{run_id}", icon=":material/refresh:"):
        st.rerun(scope="app")


def changed_pairs(config: Mapping[str, Any], updates: Mapping[str, Any]) -> dict[str, list[Any]]:
    return {key: [config.get(key), value] for key, value in updates.items()}
