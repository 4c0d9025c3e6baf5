"""Turning an edit of the live config into a change the running loop applies.

``review_edit`` decides (parse -> validate -> frozen keys -> diff); the
appliers make an accepted change real in the running process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from store.configdiff import diff_configs
from trainer.config import ConfigError, TrainConfig, frozen_violations, validate_config
from trainer.live_config import ChangeNote, LiveFile, parse_live_file
from trainer.models import set_dropout


@dataclass(frozen=True)
class AcceptedChange:
    config: TrainConfig
    diff: dict[str, list[Any]]
    note: ChangeNote


def decode_edit(raw: bytes) -> LiveFile:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"the file is not UTF-8 text (bad byte at offset {exc.start})"]) from None
    return parse_live_file(text)


def review_edit(live: LiveFile, current: TrainConfig, epochs_done: int) -> AcceptedChange | None:
    """The change ``live`` asks for, ``None`` if it asks for nothing new, or ``ConfigError``.

    Keys missing from the file keep their current values, so a file holding
    only ``{"learning_rate": 0.01}`` is a valid edit.
    """
    problems = frozen_violations(current, live.values)
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


# ------------------------------------------------------------------ appliers
# Each hot key has one applier: (training state, new value) -> what it did.


def _param_group_setter(group_key: str) -> Callable[[Any, Any], str]:
    def apply(state, value) -> str:
        groups = [g for g in state.optimizer.param_groups if group_key in g]
        for group in groups:
            group[group_key] = value
        if not groups:
            return f"{group_key} is not used by {type(state.optimizer).__name__}; kept for later"
        return f"optimizer {group_key} = {value:g} in {len(groups)} param group(s)"

    return apply


def _set_batch_size(state, value) -> str:
    state.batch_size = value  # the loop builds each epoch's loader from it
    return f"training batches of {value} from now on"


def _set_dropout(state, value) -> str:
    return f"dropout p = {value:g} in {set_dropout(state.model, value)} place(s)"


def _set_num_epochs(state, value) -> str:
    return f"the run now ends after epoch {value}"


APPLIERS: dict[str, Callable[[Any, Any], str]] = {
    "learning_rate": _param_group_setter("lr"),
    "weight_decay": _param_group_setter("weight_decay"),
    "momentum": _param_group_setter("momentum"),
    "batch_size": _set_batch_size,
    "dropout_rate": _set_dropout,
    "num_epochs": _set_num_epochs,
}


@torch.no_grad()
def apply_change(state, change: AcceptedChange) -> list[str]:
    """Apply every changed key to the running ``state``; returns what was done."""
    done = [f"{key}: {APPLIERS[key](state, new)}" for key, (_, new) in change.diff.items()]
    state.config = change.config
    return done
