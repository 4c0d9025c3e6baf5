"""What the run page may ask of a run, decided without Streamlit.

The page writes requests through ``trainer.live_config`` (the one steering
channel); these helpers decide what to send and whether it would be accepted.
"""

from __future__ import annotations

import json
import typing
from typing import Any, Collection, Mapping

from dashboard.display import is_live
from trainer.config import ConfigError, TrainConfig, validate_config
from trainer.live_config import LiveFile
from trainer.review import review_edit


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
