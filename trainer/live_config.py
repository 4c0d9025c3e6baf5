"""The live config file, ``runs/<run_id>/config.json``: the one steering channel.

The file holds the run's config keys plus two reserved keys:

- ``"control"``: ``"run"``, ``"pause"`` or ``"stop"``, honoured at the next step;
- ``"_change"``: optional ``{"source", "reason", "id"}`` written by a tool (the
  dashboard, the CLI, the advisor) so the config version records who asked and
  why. A hand edit without it is recorded with source ``file``.

Every writer replaces the file atomically (temp file + ``os.replace``) so the
trainer never reads half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from store import SOURCES
from store.paths import run_dir_for
from trainer.config import CONTROLS, ConfigError

CONFIG_FILENAME = "config.json"
STATE_FILENAME = "state.json"  # written by the trainer after each epoch: what is in force
CONTROL_KEY = "control"
CHANGE_KEY = "_change"


def live_config_path(runs_dir: Path, run_id: str) -> Path:
    """The live config file of ``run_id`` in the runs folder ``runs_dir``; refuses ids that would leave it."""
    return run_dir_for(Path(runs_dir), run_id) / CONFIG_FILENAME


@dataclass(frozen=True)
class ChangeNote:
    source: str = "file"
    reason: str = ""
    id: str = ""


@dataclass(frozen=True)
class LiveFile:
    values: dict[str, Any]  # config keys only
    control: str = "run"
    note: ChangeNote | None = None  # None: a hand edit, recorded with source "file"


def parse_live_file(text: str) -> LiveFile:
    """Split the file's text into config values, control and change note."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"the config must be a JSON object, not {type(data).__name__}"])
    control = data.pop(CONTROL_KEY, "run")
    if control not in CONTROLS:
        raise ConfigError([f"{CONTROL_KEY}: must be one of {', '.join(CONTROLS)} (got {control!r})"])
    return LiveFile(values=data, control=control, note=_parse_note(data.pop(CHANGE_KEY, None)))


def _parse_note(raw: Any) -> ChangeNote | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError([f"{CHANGE_KEY}: must be an object with source, reason and id"])
    source = raw.get("source", "file")
    if source not in SOURCES:
        raise ConfigError([f"{CHANGE_KEY}.source: must be one of {', '.join(SOURCES)} (got {source!r})"])
    return ChangeNote(source=source, reason=str(raw.get("reason", "")), id=str(raw.get("id", "")))


def render_live_file(config: Mapping[str, Any], control: str = "run", note: ChangeNote | None = None) -> str:
    data: dict[str, Any] = {**config, CONTROL_KEY: control}
    if note is not None:
        data[CHANGE_KEY] = asdict(note)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_live_file(path: Path, fallback: Mapping[str, Any] | None = None) -> LiveFile:
    """The file as it stands; if it is unreadable, ``fallback`` (the last good config)."""
    try:
        return parse_live_file(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ConfigError):
        if fallback is None:
            raise
        return LiveFile(values=dict(fallback))


def request_change(
    path: Path,
    updates: Mapping[str, Any],
    *,
    source: str,
    reason: str = "",
    change_id: str = "",
    fallback: Mapping[str, Any] | None = None,
) -> None:
    """Ask the run to change ``updates`` at its next epoch boundary."""
    current = read_live_file(path, fallback)
    note = ChangeNote(source=source, reason=reason, id=change_id)
    write_atomic(path, render_live_file({**current.values, **updates}, current.control, note))


def request_control(path: Path, control: str, fallback: Mapping[str, Any] | None = None) -> None:
    """Ask the run to pause, resume (``run``) or stop at its next step."""
    if control not in CONTROLS:
        raise ValueError(f"control must be one of {CONTROLS}, not {control!r}")
    current = read_live_file(path, fallback)
    write_atomic(path, render_live_file(current.values, control, current.note))


def keep_rejected(path: Path, content: bytes) -> Path:
    """Save a rejected edit beside the config so nothing the user typed is lost."""
    stamp = time.strftime("%Y%m%d_%H%M%S")
    target = path.with_name(f"{path.stem}.rejected-{stamp}{path.suffix}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.stem}.rejected-{stamp}-{n}{path.suffix}")
    target.write_bytes(content)  # byte for byte: the edit may not even be UTF-8
    return target


def pending_edit(config_path: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """What the live file asks for that the run has not applied yet (or why it cannot)."""
    try:
        live = parse_live_file(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ConfigError, UnicodeDecodeError, OSError) as exc:
        return {"error": str(exc)}
    changes = {k: [config.get(k), v] for k, v in live.values.items() if config.get(k) != v}
    if not changes and live.control == "run":
        return None
    return {"changes": changes, "control": live.control}
