"""What the run page may ask of a run, decided without Streamlit.

The page writes requests through ``tiller.trainer.steering.live_config`` (the one steering
channel); these helpers decide what to send, whether it would be accepted, and
what became of it once sent.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass
from typing import Any, Collection, Mapping

import pandas as pd

from tiller.dashboard.display import is_live
from tiller.trainer.steering.config import ConfigError, TrainConfig, validate_config
from tiller.trainer.steering.live_config import LiveFile
from tiller.trainer.steering.review import review_edit


def decode_json_fields(submitted: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The form's values with JSON text fields (``class_weights``) decoded; problems if they fail."""
    decoded, problems = dict(submitted), []
    for key, field in TrainConfig.model_fields.items():
        if key in submitted and typing.get_origin(field.annotation) is dict:
            try:
                decoded[key] = json.loads(submitted[key] or "{}")
            except json.JSONDecodeError as exc:
                problems.append(f"{key}: not valid JSON ({exc.msg} at character {exc.pos}); "
                                'write it like {"class name": 2.0}')
    return decoded, problems


def changed_values(submitted: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """The submitted keys whose values differ from the config in force.

    Sending only these leaves every other key of the live file alone, so an
    edit made meanwhile from elsewhere (the CLI, an editor) is not undone.
    """
    return {key: value for key, value in submitted.items() if value != config.get(key)}


def change_problems(config: Mapping[str, Any], updates: Mapping[str, Any], epochs_done: int,
                    hot_keys: Collection[str] | None = None) -> list[str]:
    """Why the trainer would reject ``updates`` at its next epoch boundary, if it would.

    Runs the trainer's own review, so the form refuses exactly what the
    trainer would, in the same words. ``hot_keys``: the run's own list of the
    hot keys its loop reads (the run record's ``hot_keys``); ``None``, every one.
    """
    try:
        review_edit(LiveFile(values=dict(updates)), validate_config(config), epochs_done, hot_keys=hot_keys)
    except ConfigError as exc:
        return exc.problems
    return []


def allowed_controls(status: str, requested: str) -> dict[str, bool]:
    """Which of pause / resume (``run``) / stop make sense now.

    ``requested`` is the control the live file asks for: the trainer honours it
    at its next step, so a pause already asked for can be cancelled with resume
    before the status shows ``paused``.
    """
    live = is_live(status)
    return {
        "pause": live and status == "running" and requested == "run",
        "run": live and requested == "pause",
        "stop": live and requested != "stop",
    }


# ------------------------------------------------------ a change sent from the form


@dataclass(frozen=True)
class SentChange:
    """A change the form wrote to the live config file, remembered to follow it to the run."""

    updates: dict[str, Any]  # key -> value asked for
    before: dict[str, Any]  # key -> value in force when sent
    version: int  # the config version in force when sent
    time: float  # unix time of sending


@dataclass(frozen=True)
class SentOutcome:
    """Where a sent change stands: ``pending``, ``applied`` (as ``version`` from ``epoch``, at
    ``time``), ``refused`` (``message`` says why), ``ended`` (the run ended first) or
    ``replaced`` (the live file no longer asks for it)."""

    state: str
    version: int | None = None
    epoch: int | None = None
    time: float | None = None
    message: str = ""


def sent_outcome(sent: SentChange, versions: pd.DataFrame, pending: Mapping[str, Any] | None,
                 events: pd.DataFrame, status: str) -> SentOutcome:
    """What became of ``sent``, from the run's config versions, its pending edit
    (``tiller.trainer.steering.live_config.pending_edit``), its events and its status.

    Applied means a later version holds every value sent (it may hold more: edits that
    arrived from elsewhere before the same boundary are recorded together).
    """
    for row in versions[versions["version"] > sent.version].sort_values("version").to_dict("records"):
        if all(key in row["config"] and row["config"][key] == value for key, value in sent.updates.items()):
            return SentOutcome("applied", version=int(row["version"]), epoch=int(row["epoch"]), time=row["time"])
    asked = (pending or {}).get("changes") or {}
    if is_live(status) and all(key in asked and asked[key][1] == value for key, value in sent.updates.items()):
        return SentOutcome("pending")
    # The trainer reports a refused edit (or its own failure) as an error event.
    errors = events[(events["level"] == "error") & (events["time"] >= sent.time)].sort_values("time")
    if not errors.empty:
        return SentOutcome("refused", message=str(errors.iloc[0]["message"]))
    if not is_live(status):
        return SentOutcome("ended")
    return SentOutcome("replaced")
