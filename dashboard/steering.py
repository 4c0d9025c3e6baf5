"""What the run page may ask of a run, decided without Streamlit.

The page writes requests through ``trainer.live_config`` (the one steering
channel); these helpers decide what to send and whether it would be accepted.
"""

from __future__ import annotations

from typing import Any, Mapping

from dashboard.display import is_live
from trainer.config import ConfigError, TrainConfig, frozen_violations, validate_config


def changed_values(submitted: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """The submitted keys whose values differ from the config in force.

    Sending only these leaves every other key of the live file alone, so an
    edit made meanwhile from elsewhere (the CLI, an editor) is not undone.
    """
    return {key: value for key, value in submitted.items() if value != config.get(key)}


def change_problems(config: Mapping[str, Any], updates: Mapping[str, Any], epochs_done: int) -> list[str]:
    """Why the trainer would reject ``updates`` at its next epoch boundary, if it would.

    The same checks, in the same words, as ``trainer.steering.review_edit``
    (which cannot be imported here without loading torch).
    """
    # A run recorded under an older schema may hold keys the schema has since dropped;
    # they are not the user's doing, so only the keys the schema knows are checked.
    known = {key: value for key, value in config.items() if key in TrainConfig.model_fields}
    try:
        current = validate_config(known)
    except ConfigError as exc:  # the run's own config: only if the schema changed under it
        return exc.problems
    problems = frozen_violations(current, updates)
    try:
        proposed = validate_config({**known, **updates})
    except ConfigError as exc:
        return problems + exc.problems
    if proposed.num_epochs < epochs_done:
        problems.append(f"num_epochs: {proposed.num_epochs} is below the {epochs_done} epochs already trained")
    return problems


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
