"""The live config file, ``runs/<run_id>/config.json``: the one steering channel.

The file holds the run's config keys plus two reserved keys:

- ``"control"``: ``"run"``, ``"pause"`` or ``"stop"``, honoured at the next step;
- ``"_change"``: optional ``{"source", "reason", "id"}`` written by a tool (the
  dashboard, the CLI, the advisor) so the config version records who asked and
  why. A hand edit without it is recorded with source ``file``.

Every writer replaces the file atomically (temp file + ``os.replace``) so the
trainer never reads half a file. The readers here go through ``read_live_bytes``,
which never takes in more than ``MAX_LIVE_FILE_BYTES`` + 1 bytes of it.
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
# A whole config is about 2 KB of JSON. 1 MiB is hundreds of times that, so no
# hand edit ever comes near it, while a file past it is a mistake (a log pasted
# in, the wrong file saved over it) that must not make the trainer, the watcher
# on every save, or the dashboard on every rerun read, decode and parse
# megabytes or gigabytes; it is refused like any other bad edit.
MAX_LIVE_FILE_BYTES = 2**20


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


class OversizedEdit(bytes):
    """The first ``MAX_LIVE_FILE_BYTES`` + 1 bytes of a live file over the limit, standing for all of it.

    It is bytes so that it goes wherever an edit's bytes go (the loop hands it
    to ``decode_edit``, ``keep_rejected`` and ``restore_file``) and is refused
    there by its length alone; it remembers the file's size for the message and
    the file's identity, so ``keep_rejected`` can move that very file aside
    rather than copy it.
    """

    path: Path
    size: int
    identity: tuple[int, int, int, int]

    def __new__(cls, head: bytes, path: Path, stat: os.stat_result) -> "OversizedEdit":
        edit = super().__new__(cls, head)
        edit.path, edit.size, edit.identity = path, max(stat.st_size, len(head)), file_identity(stat)
        return edit


def file_identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    """Which file, and which save of it: a replace changes the inode, a rewrite in place size or mtime."""
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def read_live_bytes(path: Path) -> bytes:
    """The file's bytes, or an ``OversizedEdit`` if it holds more than ``MAX_LIVE_FILE_BYTES``.

    Reads at most the limit plus one byte, however big the file is (or grows
    while it is read), so a huge file costs no more memory than a full one.
    """
    with open(path, "rb") as handle:
        head = handle.read(MAX_LIVE_FILE_BYTES + 1)
        if len(head) <= MAX_LIVE_FILE_BYTES:
            return head
        return OversizedEdit(head, path, os.fstat(handle.fileno()))


def human_size(size: int) -> str:
    """``512 bytes``, ``2.0 KiB``, ``50.0 MiB``: a size a reader takes in at a glance."""
    if size < 1024:
        return f"{size} bytes"
    value, units = size / 1024, ["KiB", "MiB", "GiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f} {units[0]}"


def refuse_oversized(raw: bytes) -> None:
    """``ConfigError`` saying how big the file is against the limit, if it is over it."""
    if len(raw) <= MAX_LIVE_FILE_BYTES:
        return
    where, size = (str(raw.path), raw.size) if isinstance(raw, OversizedEdit) else ("the file", len(raw))
    raise ConfigError([
        f"{where} is {human_size(size)} ({size:,} bytes), over the limit of a live config file, "
        f"{human_size(MAX_LIVE_FILE_BYTES)} ({MAX_LIVE_FILE_BYTES:,} bytes); a whole config is about 2 KB"
    ])


def decode_live_file(raw: bytes) -> LiveFile:
    """The file's bytes as config values, control and change note; ``ConfigError`` says why not."""
    refuse_oversized(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"the file is not UTF-8 text (bad byte at offset {exc.start})"]) from None
    return parse_live_file(text)


def read_live_file(path: Path, fallback: Mapping[str, Any] | None = None) -> LiveFile:
    """The file as it stands; if it is unreadable, ``fallback`` (the last good config)."""
    try:
        return decode_live_file(read_live_bytes(path))
    except (OSError, ConfigError):
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
    _rewrite(path, fallback, updates=updates, note=ChangeNote(source=source, reason=reason, id=change_id))


def rewrite_values(path: Path, updates: Mapping[str, Any], fallback: Mapping[str, Any]) -> None:
    """Put ``updates`` into the file as values already in force: its control and change note stay as they are.

    For a change the trainer made itself: the file must show it, or the next edit
    saved from an older copy of the file would take it back.
    """
    _rewrite(path, fallback, updates=updates)


def request_control(path: Path, control: str, fallback: Mapping[str, Any] | None = None) -> None:
    """Ask the run to pause, resume (``run``) or stop at its next step."""
    if control not in CONTROLS:
        raise ValueError(f"control must be one of {CONTROLS}, not {control!r}")
    _rewrite(path, fallback, control=control)


def _rewrite(path: Path, fallback: Mapping[str, Any] | None, *, updates: Mapping[str, Any] | None = None,
             control: str | None = None, note: ChangeNote | None = None) -> None:
    """The file as it stands (or ``fallback``), with ``updates``, ``control`` and ``note`` put in; the rest kept."""
    current = read_live_file(path, fallback)
    write_atomic(path, render_live_file({**current.values, **(updates or {})}, control or current.control,
                                        note or current.note))


def keep_rejected(path: Path, content: bytes) -> Path:
    """Save a rejected edit beside the config so nothing the user typed is lost.

    An ``OversizedEdit`` is kept by renaming the file itself, so gigabytes are
    never copied; the config path is then missing until the caller writes the
    config in force there again.
    """
    target = rejected_path(path)
    if isinstance(content, OversizedEdit) and move_aside(path, content, target):
        return target
    # Byte for byte: the edit may not even be UTF-8. For an oversized file that a
    # newer save replaced before it could be moved, its first bytes are all there is.
    target.write_bytes(content)
    return target


def rejected_path(path: Path) -> Path:
    """A new name beside ``path`` for a rejected edit, never one already taken."""
    stamp = time.strftime("%Y%m%d_%H%M%S")
    target = path.with_name(f"{path.stem}.rejected-{stamp}{path.suffix}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.stem}.rejected-{stamp}-{n}{path.suffix}")
    return target


def move_aside(path: Path, edit: OversizedEdit, target: Path) -> bool:
    """Rename ``path`` to ``target`` (same folder: nothing is copied) if it is still the file ``edit`` measured.

    A newer save there is the next boundary's edit, so it stays where it is.
    """
    try:
        if file_identity(path.stat()) != edit.identity:
            return False
    except FileNotFoundError:
        return False
    os.replace(path, target)
    return True


def pending_edit(config_path: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """What the live file asks for that the run has not applied yet (or why it cannot)."""
    try:
        live = decode_live_file(read_live_bytes(config_path))
    except FileNotFoundError:
        return None
    except (ConfigError, OSError) as exc:
        return {"error": str(exc)}
    changes = {k: [config.get(k), v] for k, v in live.values.items() if config.get(k) != v}
    if not changes and live.control == "run":
        return None
    return {"changes": changes, "control": live.control}
