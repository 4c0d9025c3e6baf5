"""Notices edits of the live config file while the trainer is busy.

A watchdog observer flags every change of the file at once, and reads its
``control`` key so pause and stop reach the loop at the next step. Full
validation waits for the epoch boundary (``take_edit``), where only the last
complete content counts, however many saves came before it.
"""

from __future__ import annotations

import threading
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from tiller.trainer.steering.config import ConfigError
from tiller.trainer.steering.live_config import decode_live_file, path_identity, read_live_bytes


# Events that can change the file's content. Opening and closing without a
# write are left out: reading the file ourselves raises those, and reacting to
# them would read it again, for ever.
CONTENT_EVENTS = {EVENT_TYPE_MODIFIED, EVENT_TYPE_CREATED, EVENT_TYPE_MOVED, EVENT_TYPE_CLOSED, EVENT_TYPE_DELETED}


class ConfigWatcher(FileSystemEventHandler):
    def __init__(self, path: Path):
        self.path = path.resolve()
        self.control = "run"
        self.events_handled = 0  # content events for our file, for diagnostics and tests
        self.callback_errors = 0  # exceptions caught in the observer's callback, for diagnostics and tests
        self.last_callback_error = ""
        self._edited = threading.Event()
        self._notified = threading.Event()  # any content event since the last wait_for_notification
        self._seen_stat = path_identity(self.path)
        self._observer = Observer()

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> "ConfigWatcher":
        self._observer.schedule(self, str(self.path.parent), recursive=False)
        self._observer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

    # ------------------------------------------------------ watchdog callbacks

    def on_any_event(self, event: FileSystemEvent) -> None:
        # This runs on the observer's thread: an exception here would end that
        # thread, and with it every later pause and stop. Nothing may escape.
        try:
            if event.event_type not in CONTENT_EVENTS:
                return
            if str(self.path) in {event.src_path, getattr(event, "dest_path", "")}:
                self.events_handled += 1
                self._edited.set()
                try:
                    self.refresh_control()
                finally:
                    self._notified.set()
        except Exception as exc:  # noqa: BLE001 - see above; the epoch boundary reviews the file anyway
            self.callback_errors += 1
            self.last_callback_error = f"{type(exc).__name__}: {exc}"

    # ---------------------------------------------------------------- queries

    def refresh_control(self) -> None:
        """Adopt the file's ``control`` value, if the file is readable right now."""
        try:
            self.control = decode_live_file(read_live_bytes(self.path)).control
        except (OSError, ConfigError):
            pass  # a half-written, bad, oversized or unreadable file: keep the last control; the boundary reports it

    def wait_for_edit(self, timeout: float | None = None) -> bool:
        """Block until an edit of the file has been flagged, or ``timeout`` seconds pass.

        Returns whether an edit is flagged and not yet taken by ``take_edit``; it
        does not take it. Only change notifications set the flag, so where they
        do not arrive (network mounts) this waits out the timeout and returns
        ``False``, while ``take_edit`` still finds the edit by size and mtime.
        The training loop never waits; this is for tools that measure or test
        how fast an edit is noticed.
        """
        return self._edited.wait(timeout)

    def wait_for_notification(self, timeout: float) -> None:
        """Sleep until the file changes or ``timeout`` seconds pass, then re-read ``control``.

        A paused trainer waits here, so a resume takes effect as soon as it is
        saved; the timeout keeps it polling where notifications do not arrive.
        """
        self._notified.wait(timeout)
        self._notified.clear()
        self.refresh_control()

    def take_edit(self) -> bytes | None:
        """The file's bytes if it changed since the last call, else ``None``.

        Also compares size and mtime, so an edit is not missed on file systems
        where change notifications do not arrive (network mounts). A file over
        ``MAX_LIVE_FILE_BYTES`` comes back as an ``OversizedEdit``, its first
        bytes only, and a folder, pipe, device or unreadable file as an
        ``UnreadableFile``; ``decode_edit`` refuses both.
        """
        stat = path_identity(self.path)
        if not self._edited.is_set() and stat == self._seen_stat:
            return None
        self._edited.clear()
        self._seen_stat = stat
        try:
            return read_live_bytes(self.path)
        except FileNotFoundError:
            return None  # deleted: keep training on the last good config
