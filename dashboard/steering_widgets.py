"""The run page's steering widgets: the hot-key form, pause/resume/stop, the pending edit.

Every request goes through ``trainer.live_config``, which replaces the run's
live config file atomically; the trainer validates and applies it, and records
a config version with ``source="user"`` and the reason typed here.
"""

from __future__ import annotations

import json
import math
import typing
from typing import Any, Collection, Mapping

import streamlit as st

from dashboard import data
from dashboard.display import diff_text, ended_explanation, epochs_done, is_live, md_escape
from dashboard.steering import allowed_controls, change_problems, changed_values, decode_json_fields
from dashboard.tables import pending_table
from trainer.config import TrainConfig, describe_keys, hot_keys, key_bounds, steerable_keys
from trainer.live_config import request_change, request_control
from trainer.schedule import SCHEDULE_KEYS

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
    status = data.fresh_run_record(run_id)["status"]
    if not is_live(status):
        st.toast(f"Nothing sent: the run is {status}.")
        return
    request_control(data.live_config_path(run_id), control, fallback=config)
    st.toast(CONTROL_DONE[control])


def control_buttons(run_id: str, status: str, config: Mapping[str, Any], pending: Mapping | None) -> None:
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


def hot_key_input(key: str, value: Any, info: Mapping[str, Any], disabled: bool, widget_key: str) -> Any:
    """An input for one hot key: a checkbox, a choice, or a number bounded like the schema
    (exclusive bounds are checked on submit)."""
    bounds = key_bounds(key)
    low, high = bounds.get("ge", bounds.get("gt")), bounds.get("le", bounds.get("lt"))
    help_text = f"{info['description']}. Allowed: {info['bounds'] or 'any'}; default {info['default']}."
    common = {"help": help_text, "disabled": disabled, "key": widget_key}
    annotation = TrainConfig.model_fields[key].annotation
    if annotation is bool:
        return st.checkbox(key, value=bool(value), **common)
    if typing.get_origin(annotation) is typing.Literal:
        options = list(typing.get_args(annotation))
        return st.selectbox(key, options, index=options.index(value), **common)
    if typing.get_origin(annotation) is dict:  # class_weights: edited as JSON text
        return st.text_input(key, value=json.dumps(value, ensure_ascii=False), **common)
    if annotation is int:
        return st.number_input(key, min_value=low, max_value=high, value=int(value), step=1, **common)
    return st.number_input(
        key, min_value=None if low is None else float(low), max_value=None if high is None else float(high),
        value=float(value), step=_float_step(float(value)), format="%g", **common,
    )


# The form's sections, most used first; the later ones start folded.
SECTIONS: list[tuple[str, tuple[str, ...], bool]] = [
    ("Training", ("learning_rate", "batch_size", "num_epochs", "optimizer", "weight_decay", "dropout_rate",
                  "beta1", "beta2", "momentum", "nesterov"), True),
    ("Learning-rate schedule", SCHEDULE_KEYS, True),
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


def steering_form(run_id: str, status: str, config: Mapping[str, Any], version: int,
                  run_hot_keys: Collection[str] | None = None) -> None:
    """The form for the keys the run may change; ``run_hot_keys`` is the run's own list (None: every hot key)."""
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
    ended = ended_explanation(status, run_id)
    if ended:
        st.info(ended)
    info = {row["key"]: row for row in describe_keys()}
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
                            # The version in the widget key resets the inputs to the new
                            # config in force once a change has been applied.
                            submitted[key] = hot_key_input(key, config[key], info[key], bool(ended),
                                                           f"steer-{run_id}-v{version}-{key}")
        reason = st.text_input("reason", placeholder="why: recorded with the change", max_chars=500,
                               disabled=bool(ended), key=f"steer-{run_id}-reason")
        send = st.form_submit_button("Send changes", type="primary", disabled=bool(ended))
    if send:
        send_changes(run_id, config, submitted, reason.strip())


def send_changes(run_id: str, config: Mapping[str, Any], submitted: Mapping[str, Any], reason: str) -> None:
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
    request_change(data.live_config_path(run_id), updates, source="user", reason=reason, fallback=config)
    # The trainer takes edits just before an epoch starts, so one sent now waits
    # for the epoch in progress to finish.
    st.success(
        f"Sent {md_escape(diff_text(changed_pairs(config, updates)))}. It applies at the next epoch "
        f"boundary, once epoch {epochs_done(run) + 1} finishes, and then shows in the config history below."
    )


def changed_pairs(config: Mapping[str, Any], updates: Mapping[str, Any]) -> dict[str, list[Any]]:
    return {key: [config.get(key), value] for key, value in updates.items()}
