"""Deciding whether an edit of the live config can be applied:
parse -> validate -> fixed keys -> diff.

Free of torch, so the dashboard checks a request by the very rules the
trainer applies at the epoch boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection

from tiller.store.configdiff import diff_configs
from tiller.trainer.steering.config import ConfigError, TrainConfig, frozen_violations, validate_config
from tiller.trainer.steering.live_config import ChangeNote, LiveFile, decode_live_file


@dataclass(frozen=True)
class AcceptedChange:
    config: TrainConfig
    diff: dict[str, list[Any]]
    note: ChangeNote


def decode_edit(raw: bytes) -> LiveFile:
    """The edit's bytes as a ``LiveFile``; ``ConfigError`` if too big, not UTF-8 or not a config object."""
    return decode_live_file(raw)


def review_edit(live: LiveFile, current: TrainConfig, epochs_done: int,
                hot_keys: Collection[str] | None = None) -> AcceptedChange | None:
    """The change ``live`` asks for, ``None`` if it asks for nothing new, or ``ConfigError``.

    Keys missing from the file keep their current values, so a file holding
    only ``{"learning_rate": 0.01}`` is a valid edit. ``hot_keys``: the hot keys
    the run's training loop reads (``Store.run_hot_keys``); ``None``, every one.
    """
    problems = frozen_violations(current, live.values, hot_keys)
    try:
        proposed = validate_config({**current.model_dump(), **live.values})
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if proposed.num_epochs < epochs_done:
        problems.append(f"num_epochs: {proposed.num_epochs} is below the {epochs_done} epochs already trained")
    if problems:
        raise ConfigError(problems)
    diff = diff_configs(current.model_dump(), proposed.model_dump())
    if not diff:
        return None
    return AcceptedChange(config=proposed, diff=diff, note=live.note or ChangeNote(source="file"))
