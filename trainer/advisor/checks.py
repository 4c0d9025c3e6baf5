"""Checking an advisor's suggestions with the trainer's own schema.

Each suggestion is tried alone against the run's current config: an unknown
key, a fixed key, a hot key the run's own training loop does not read, the
autopilot's own limits, a wrong type or a value out of bounds is refused with
the reason, in the words the trainer would use.
"""

from __future__ import annotations

from typing import Any, Collection, Iterable, Mapping

from tiller.trainer.advisor.types import CheckedSuggestion, Suggestion
from tiller.trainer.steering.config import (
    ConfigError, TrainConfig, autopilot_keys, hot_keys, steerable_keys, unknown_key_message, unsteered_key_message,
    validate_config,
)
from tiller.trainer.steering.live_config import LiveFile
from tiller.trainer.steering.review import review_edit


def check_suggestions(
    suggestions: Iterable[Suggestion], config: Mapping[str, Any], epochs_done: int,
    run_hot_keys: Collection[str] | None = None,
) -> list[CheckedSuggestion]:
    """Each suggestion with its problem (empty if valid); ``run_hot_keys``: the hot keys
    the run's loop reads (``Store.run_hot_keys``), ``None`` for every one."""
    checked, seen = [], set()
    for number, suggestion in enumerate(suggestions, start=1):
        problem = _problem(suggestion, config, epochs_done, seen, run_hot_keys)
        seen.add(suggestion.parameter)
        notes = []
        actual = config.get(suggestion.parameter)
        if suggestion.parameter in config and suggestion.current_value != actual:
            notes.append(f"the advisor gave the current value as {suggestion.current_value!r}; it is {actual!r}")
        checked.append(CheckedSuggestion(
            number=number, parameter=suggestion.parameter, current_value=actual,
            suggested_value=suggestion.suggested_value, reason=suggestion.reason, problem=problem, notes=notes,
        ))
    return checked


def _problem(suggestion: Suggestion, config: Mapping[str, Any], epochs_done: int, seen: set[str],
             run_hot_keys: Collection[str] | None) -> str:
    key, value = suggestion.parameter, suggestion.suggested_value
    if key not in TrainConfig.model_fields:
        return unknown_key_message(key)
    if key in autopilot_keys():
        return f"{key}: the autopilot's limits are yours to set; an advisor may not change them"
    if key not in hot_keys():
        return f"{key}: fixed for the life of the run; start a new run to change it"
    steerable = steerable_keys(run_hot_keys)
    if key not in steerable:
        return unsteered_key_message(key, config.get(key), steerable)
    if key in seen:
        return f"{key}: suggested twice; only the first suggestion for it counts"
    try:
        change = review_edit(LiveFile(values={key: value}), validate_config(config), epochs_done,
                             hot_keys=run_hot_keys)
    except ConfigError as exc:
        return "; ".join(exc.problems)
    if change is None:  # valid, and equal to what the run has
        return f"{key}: already {config.get(key)!r}"
    return ""


def combined_problems(config: Mapping[str, Any], updates: Mapping[str, Any], epochs_done: int,
                      run_hot_keys: Collection[str] | None = None) -> list[str]:
    """Why ``updates`` together would be refused (a pair of keys can clash though each is fine)."""
    try:
        review_edit(LiveFile(values=dict(updates)), validate_config(config), epochs_done, hot_keys=run_hot_keys)
    except ConfigError as exc:
        return exc.problems
    return []
