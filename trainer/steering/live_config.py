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
import math
import os
import re
import stat as stat_kind
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from tiller.store import SOURCES
from tiller.store.paths import run_dir_for
from tiller.trainer.steering.config import CONTROLS, ConfigError

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
    """Split the file's text into config values, control and change note; ``ConfigError`` says why not."""
    data = load_json(text)
    if not isinstance(data, dict):
        raise ConfigError([f"the config must be a JSON object, not {type(data).__name__}"])
    control = data.pop(CONTROL_KEY, "run")
    if control not in CONTROLS:
        raise ConfigError([f"{CONTROL_KEY}: must be one of {', '.join(CONTROLS)} (got {control!r})"])
    return LiveFile(values=data, control=control, note=_parse_note(data.pop(CHANGE_KEY, None)))


# JSON that Python's json module takes but no config holds, refused here so that
# nothing downstream (validation, the messages, the store, the terminal, the file
# written back) meets it: a number Python will not convert (over its int digit
# limit: ValueError), nesting deep enough to exhaust the recursion limit
# (RecursionError), NaN and Infinity (not JSON), a float too big to be one
# (1e999 is inf), a lone surrogate escape ("\ud800": not text, SQLite and print
# refuse it). A config nests two levels (class_weights, _change); 20 is room.
MAX_NESTING = 20
# Strings and brackets, the only tokens nesting depends on; the string pattern is
# unrolled so that it scans in linear time whatever the file holds.
_NESTING_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_SURROGATE = re.compile("[\ud800-\udfff]")


class _RefusedLiteral(Exception):
    """Raised from inside ``json.loads`` by a hook that met a literal no config value can be."""

    def __init__(self, literal: str, problem: str):
        super().__init__(problem)
        self.literal, self.problem = literal, problem


def load_json(text: str) -> Any:
    """``json.loads`` for a live file: every way it fails is a ``ConfigError`` that says what and where."""
    refuse_deep_nesting(text)
    try:
        data = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"]) from None
    except _RefusedLiteral as exc:
        raise ConfigError([f"{short(exc.literal)} at {where_literal(text, exc.literal)}: {exc.problem}"]) from None
    except (ValueError, RecursionError) as exc:  # what the checks above did not foresee is still a bad edit
        raise ConfigError([f"not valid JSON: {type(exc).__name__}: {short(str(exc), 200)}"]) from None
    refuse_surrogates(data)
    return data


def refuse_deep_nesting(text: str) -> None:
    """``ConfigError`` at the first bracket that opens a level past ``MAX_NESTING``."""
    depth = 0
    for token in _NESTING_TOKENS.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_NESTING:
                raise ConfigError([f"nested more than {MAX_NESTING} levels deep at {line_column(text, token.start())}; "
                                   "a config nests two levels at most (class_weights, _change)"])
        elif bracket in ("]", "}"):
            depth -= 1


def _parse_int(literal: str) -> int:
    limit = sys.get_int_max_str_digits()  # 0: no limit
    digits = len(literal.lstrip("-"))
    if limit and digits > limit:
        raise _RefusedLiteral(literal, f"a number of {digits:,} digits, more than the {limit:,} Python reads; "
                                       "no config value comes near that")
    return int(literal)


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _RefusedLiteral(literal, "too large for a number (it would be infinity)")
    return value


def _parse_constant(literal: str) -> float:
    raise _RefusedLiteral(literal, f"JSON has no {literal}; write a number")


def refuse_surrogates(data: Any) -> None:
    """``ConfigError`` naming the key whose name or text holds a lone surrogate (a ``\\udXXX`` escape alone)."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                inner = f"{where}.{key}" if where else str(key)
                if _SURROGATE.search(key):
                    raise ConfigError([f"a key{f' in {where}' if where else ''} holds a lone surrogate escape "
                                       "(\\ud800-\\udfff), which is not text"])
                stack.append((inner, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{n}]", item) for n, item in enumerate(value))
        elif isinstance(value, str) and _SURROGATE.search(value):
            raise ConfigError([f"{where or 'the file'}: the text holds a lone surrogate escape (\\ud800-\\udfff), "
                               "which is not text"])


def line_column(text: str, offset: int) -> str:
    """``line L, column C`` of ``offset`` in ``text``, both from 1 as editors count them."""
    line_start = text.rfind("\n", 0, offset) + 1
    return f"line {text.count(chr(10), 0, offset) + 1}, column {offset - line_start + 1}"


def where_literal(text: str, literal: str) -> str:
    """Where a number or constant the parser refused stands: its first occurrence outside a longer literal."""
    found = re.search(rf"(?<![\w.+-]){re.escape(literal)}(?![\w.])", text)
    return line_column(text, found.start()) if found else "an unknown place"


def short(text: str, keep: int = 24) -> str:
    """``text``, cut to ``keep`` characters with an ellipsis: a 5,000-digit number does not belong in a message."""
    return text if len(text) <= keep else text[:keep] + "…"


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


class FileBytes(bytes):
    """Bytes read from the live file, remembering which file and which save of it they came from.

    They go wherever an edit's bytes go (the loop hands them to ``decode_edit``,
    ``keep_rejected`` and ``rewrite_file``); the identity lets ``keep_rejected``
    move that very file aside rather than copy it, and tells a file saved again
    since from the one read.
    """

    path: Path
    identity: tuple[int, int, int, int] | None

    def __new__(cls, content: bytes, path: Path, identity: tuple[int, int, int, int] | None) -> "FileBytes":
        edit = super().__new__(cls, content)
        edit.path, edit.identity = path, identity
        return edit


class OversizedEdit(FileBytes):
    """The first ``MAX_LIVE_FILE_BYTES`` + 1 bytes of a live file over the limit, standing for all of it.

    Refused by its length alone; it remembers the file's size for the message.
    """

    size: int

    def __new__(cls, head: bytes, path: Path, stat: os.stat_result) -> "OversizedEdit":
        edit = super().__new__(cls, head, path, file_identity(stat))
        edit.size = max(stat.st_size, len(head))
        return edit


class UnreadableFile(FileBytes):
    """No bytes: the live file is a folder, a pipe, a device, or may not be read; ``problem`` says which.

    Refused like any bad edit and kept by renaming it, never opened in a way
    that could block (a named pipe without a writer) or read for ever (``/dev/zero``).
    """

    problem: str

    def __new__(cls, path: Path, identity: tuple[int, int, int, int] | None, problem: str) -> "UnreadableFile":
        edit = super().__new__(cls, b"", path, identity)
        edit.problem = problem
        return edit


def file_identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    """Which file, and which save of it: a replace changes the inode, a rewrite in place size or mtime."""
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def path_identity(path: Path) -> tuple[int, int, int, int] | None:
    """``file_identity`` of what stands at ``path`` (the link itself if it leads nowhere readable); ``None``: nothing."""
    try:
        return file_identity(os.stat(path))
    except FileNotFoundError:
        try:
            return file_identity(os.lstat(path))  # a dangling symlink is still something standing there
        except OSError:
            return None
    except OSError:  # a symlink loop: the link itself
        try:
            return file_identity(os.lstat(path))
        except OSError:
            return None


def read_live_bytes(path: Path) -> FileBytes:
    """The file's bytes; an ``OversizedEdit`` if it holds more than ``MAX_LIVE_FILE_BYTES``; an
    ``UnreadableFile`` if it is no regular file or cannot be read. Raises only ``FileNotFoundError``.

    Reads at most the limit plus one byte, however big the file is (or grows
    while it is read), so a huge file costs no more memory than a full one. A
    pipe or a device is refused by its type before it is opened, and opened
    non-blocking in case it is swapped in between, so no reader ever hangs on it.
    """
    try:
        before = os.stat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        return UnreadableFile(path, path_identity(path), f"{path} cannot be read ({exc.strerror})")
    if not stat_kind.S_ISREG(before.st_mode):
        return UnreadableFile(path, file_identity(before), not_a_file(path, before))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        return UnreadableFile(path, file_identity(before), f"{path} cannot be read ({exc.strerror}); "
                                                           "make it readable or save the config again")
    with open(fd, "rb") as handle:
        opened = os.fstat(fd)
        if not stat_kind.S_ISREG(opened.st_mode):
            return UnreadableFile(path, file_identity(opened), not_a_file(path, opened))
        try:
            head = handle.read(MAX_LIVE_FILE_BYTES + 1)
        except OSError as exc:
            return UnreadableFile(path, file_identity(opened), f"{path} cannot be read ({exc.strerror})")
        # The identity from before the read: a write during it makes the file
        # differ from what was read, so it is never taken for the save read here.
        if len(head) > MAX_LIVE_FILE_BYTES:
            return OversizedEdit(head, path, opened)
        return FileBytes(head, path, file_identity(opened))


def same_save(read: bytes, earlier: bytes) -> bool:
    """Whether ``read`` is the very save ``earlier`` was read from: the same bytes and, where known, the same file."""
    identities = [getattr(content, "identity", None) for content in (read, earlier)]
    return read == earlier and (None in identities or identities[0] == identities[1])


def not_a_file(path: Path, stat: os.stat_result) -> str:
    """Why ``path`` is refused: what kind of thing it is (and where a symlink leads), since it is no file."""
    kinds = {stat_kind.S_ISDIR: "a folder", stat_kind.S_ISFIFO: "a named pipe", stat_kind.S_ISCHR: "a device",
             stat_kind.S_ISBLK: "a device", stat_kind.S_ISSOCK: "a socket"}
    kind = next((name for test, name in kinds.items() if test(stat.st_mode)), "not a regular file")
    leads = f" (a symlink to {os.path.realpath(path)})" if os.path.islink(path) else ""
    return f"{path}{leads} is {kind}, not a config file; save the config there as a file"


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
    if isinstance(raw, UnreadableFile):
        raise ConfigError([raw.problem])
    refuse_oversized(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"the file is not UTF-8 text (bad byte at offset {exc.start})"]) from None
    return parse_live_file(text)


def read_live_file(path: Path, fallback: Mapping[str, Any] | None = None) -> LiveFile:
    """The file as it stands; if it is missing or no config, ``fallback`` (the last good config)."""
    try:
        return decode_live_file(read_live_bytes(path))
    except (OSError, ConfigError):
        if fallback is None:
            raise
        return LiveFile(values=dict(fallback))


@dataclass(frozen=True)
class SetAside:
    """A bad edit that stood in the live file when a tool wrote a request there: why it was bad, where it is kept."""

    problem: str
    kept: Path | None  # None: it was replaced by a newer save before it could be kept

    def describe(self) -> str:
        """What happened to the bad edit, for the person whose request replaced it."""
        kept = f"kept as {self.kept.name}" if self.kept else "replaced by a newer save meanwhile"
        return (f"the live config file held an edit the run cannot take ({self.problem}); it is {kept}, and the "
                "file now holds the config in force with this request")


def request_change(
    path: Path,
    updates: Mapping[str, Any],
    *,
    source: str,
    reason: str = "",
    change_id: str = "",
    fallback: Mapping[str, Any] | None = None,
) -> SetAside | None:
    """Ask the run to change ``updates`` at its next epoch boundary; a bad edit standing there is set aside."""
    return _rewrite(path, fallback, updates=updates, note=ChangeNote(source=source, reason=reason, id=change_id))


def rewrite_values(path: Path, updates: Mapping[str, Any], fallback: Mapping[str, Any]) -> SetAside | None:
    """Put ``updates`` into the file as values already in force: its control and change note stay as they are.

    For a change the trainer made itself: the file must show it, or the next edit
    saved from an older copy of the file would take it back.
    """
    return _rewrite(path, fallback, updates=updates)


def request_control(path: Path, control: str, fallback: Mapping[str, Any] | None = None) -> SetAside | None:
    """Ask the run to pause, resume (``run``) or stop at its next step; a bad edit standing there is set aside."""
    if control not in CONTROLS:
        raise ValueError(f"control must be one of {CONTROLS}, not {control!r}")
    return _rewrite(path, fallback, control=control)


def _rewrite(path: Path, fallback: Mapping[str, Any] | None, *, updates: Mapping[str, Any] | None = None,
             control: str | None = None, note: ChangeNote | None = None) -> SetAside | None:
    """The file as it stands (or ``fallback``), with ``updates``, ``control`` and ``note`` put in; the rest kept.

    A file that is no config (bad JSON, a folder, unreadable, ...) is kept as a
    rejected edit before the request replaces it, so a pause or stop always gets
    through and the bad edit is not lost; the ``SetAside`` says so.
    """
    set_aside = None
    try:
        raw = read_live_bytes(path)
        current = decode_live_file(raw)
    except FileNotFoundError:
        if fallback is None:
            raise
        current = LiveFile(values=dict(fallback))
    except ConfigError as exc:
        if fallback is None:
            raise
        current, set_aside = LiveFile(values=dict(fallback)), SetAside(str(exc), keep_rejected(path, raw))
    write_atomic(path, render_live_file({**current.values, **(updates or {})}, control or current.control,
                                        note or current.note))
    return set_aside


def keep_rejected(path: Path, content: bytes) -> Path | None:
    """Keep a rejected edit beside the config so nothing the user typed is lost; where, or ``None`` if it is gone.

    Content read by ``read_live_bytes`` is kept by renaming the file itself if
    it is still the save that was read: gigabytes are never copied, a folder or
    a pipe is kept as it is, and a save still being written in place goes on
    into the kept file rather than into a file replaced and gone
    (``Steering.follow_kept_edit`` finds it there). The config path is then
    missing until the caller writes the config in force there again.
    """
    target = rejected_path(path)
    if isinstance(content, FileBytes) and move_aside(path, content, target):
        return target
    if isinstance(content, UnreadableFile):
        return None  # replaced by a newer save before it could be moved: nothing of it was read
    # Byte for byte: the edit may not even be UTF-8. For an oversized file that a
    # newer save replaced before it could be moved, its first bytes are all there is.
    target.write_bytes(content)
    return target


def rejected_path(path: Path) -> Path:
    """A new name beside ``path`` for a rejected edit, never one already taken."""
    stamp = time.strftime("%Y%m%d_%H%M%S")
    target = path.with_name(f"{path.stem}.rejected-{stamp}{path.suffix}")
    n = 1
    while os.path.lexists(target):
        n += 1
        target = path.with_name(f"{path.stem}.rejected-{stamp}-{n}{path.suffix}")
    return target


def move_aside(path: Path, edit: FileBytes, target: Path) -> bool:
    """Rename ``path`` to ``target`` (same folder: nothing is copied) if it is still the file ``edit`` was read from.

    A newer save there is the next boundary's edit, so it stays where it is.
    """
    if edit.identity is None or path_identity(path) != edit.identity:
        return False
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return False
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
