"""One owner per run: the process that writes a run holds a lock on it.

Whoever opens a run for writing (``Store.start_run``, ``Store.reopen_run``, so the
built-in trainer, ``tiller resume``, ``tiller.run`` and rank 0 of a torchrun job)
takes an exclusive ``flock`` on ``runs/<run_id>/.owner.lock`` and keeps the file
open for as long as it writes the run. A second process cannot take it while the
first lives: the kernel drops the lock only when the holder closes it or dies (even
by SIGKILL), and a process stopped with SIGSTOP or Ctrl-Z still holds it. The
heartbeat cannot tell a stopped trainer from a dead one; the lock can.

The file's content names the holder (pid, host, since when, its command) so a
refusal can say who holds the run. It is never deleted: a process that unlinked it
could let a second one lock a fresh file while a third still holds the old one.

Limits: ``flock`` is advisory (only processes that ask for it are kept out), and on
NFS it depends on the server's lock manager. Where locks are not available at all
(Windows has no ``fcntl``; an NFS mount without locking answers ENOLCK) a run is
opened without one, ``locked`` says so, and liveness falls back on the heartbeat.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import weakref

from tiller.store.liveness import THIS_HOST, process_gone, process_state

try:
    import fcntl
except ImportError:  # Windows: no flock; runs open without a lock (see the module's docstring)
    fcntl = None

LOCK_FILENAME = ".owner.lock"
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # the file is text anyone could write: print it inert


@dataclass(frozen=True)
class Holder:
    """Who holds a run, as its lock file says."""

    pid: int | None
    host: str
    since: float | None
    command: str

    def describe(self) -> str:
        """``pid 1234 on host box since 2026-01-02 10:11:12 (tiller resume abc)``."""
        since = f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.since))}" if self.since else ""
        command = f" ({self.command})" if self.command else ""
        return f"pid {self.pid} on host {self.host}{since}{command}"

    def what_to_do(self, run_id: str) -> str:
        """How to go on, by what the holder is doing now (on this machine we can look)."""
        if self.host != THIS_HOST:
            return (f"It runs on another machine: stop it there (tiller stop {run_id}) or end that process, "
                    f"then try again.")
        if self.pid and process_gone(self.pid, self.host):  # a child it forked without exec keeps its files open
            return (f"Process {self.pid} has ended, but a process it started (a data-loader worker?) still holds "
                    f"the lock; try again once that one has ended too (`fuser {LOCK_FILENAME}` in the run's "
                    f"folder names it).")
        state = process_state(self.pid) if self.pid else None
        if state == "T":  # stopped by SIGSTOP or Ctrl-Z: alive, and would train on after SIGCONT
            return (f"That process is stopped (SIGSTOP or Ctrl-Z), not dead: `kill -CONT {self.pid}` lets it go "
                    f"on; to give up on it instead, end it (`kill -KILL {self.pid}`), then tiller resume {run_id}.")
        return (f"That process is still training the run: watch it in the dashboard, or stop it with "
                f"tiller stop {run_id} and resume it once it has ended.")


class RunOwned(RuntimeError):
    """Another live process holds the run; the message says which and what to do."""

    def __init__(self, run_id: str, holder: Holder | None):
        self.run_id, self.holder = run_id, holder
        if holder is None:  # locked an instant ago, its details not written yet
            who, then = "another process (it is writing its details just now)", "Try again in a moment."
        else:
            who, then = holder.describe(), holder.what_to_do(run_id)
        super().__init__(f"run {run_id} is held by {who}: one process at a time writes a run. {then}")


class Ownership:
    """The lock one process holds on a run while it writes it; ``release`` lets go (idempotent)."""

    def __init__(self, run_id: str, fd: int | None, why_unlocked: str = ""):
        self.run_id = run_id
        self._fd = fd  # open, and locked, until released
        self.why_unlocked = why_unlocked  # why there is no lock, when there is none
        if fd is not None:
            _HELD.add(self)

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # nobody holds it now: no stale name left in the file
        except OSError:
            pass  # closing below drops the lock all the same
        os.close(fd)

    def __enter__(self) -> "Ownership":
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


# A child forked without exec (a DataLoader worker, multiprocessing's fork) shares the lock's
# open file: it would keep the run locked after its parent died. It closes its copy at once;
# the lock stays with the parent (closing one of several descriptors does not release it).
_HELD: "weakref.WeakSet[Ownership]" = weakref.WeakSet()


def _forget_in_child() -> None:
    for ownership in list(_HELD):
        fd, ownership._fd = ownership._fd, None
        if fd is not None:
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_in_child)


def take_ownership(run_dir: Path, run_id: str) -> Ownership:
    """Lock ``run_dir`` for this process, or raise ``RunOwned`` naming the live holder.

    A folder that cannot be written raises ``OSError``, as writing the run would.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILENAME
    try:
        fd, writable = os.open(path, os.O_RDWR | os.O_CREAT, 0o644), True
    except PermissionError:  # made by another user (or a read-only folder): flock needs no write access
        fd, writable = os.open(path, os.O_RDONLY), False
    if fcntl is None:
        os.close(fd)
        return Ownership(run_id, None, "this system has no flock (Windows)")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunOwned(run_id, read_holder(run_dir)) from None
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # a file system without locks (some NFS)
            return Ownership(run_id, None, f"the runs folder's file system takes no locks ({exc.strerror})")
        raise
    if writable:
        _write_holder(fd)  # else a refusal names no holder, but still refuses
    return Ownership(run_id, fd)


def read_holder(run_dir: Path) -> Holder | None:
    """The holder the lock file names; ``None`` when it names nobody (or cannot be read)."""
    try:
        raw = json.loads((run_dir / LOCK_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    pid, since = raw.get("pid"), raw.get("since")
    return Holder(pid=pid if isinstance(pid, int) else None, host=_inert(raw.get("host", "?")),
                  since=float(since) if isinstance(since, (int, float)) else None,
                  command=_inert(raw.get("command", ""))[:200])


def _write_holder(fd: int) -> None:
    holder = {"pid": os.getpid(), "host": THIS_HOST, "since": time.time(), "command": _this_command()}
    data = json.dumps(holder, ensure_ascii=False).encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _this_command() -> str:
    """``tiller resume abc`` or ``python train.py``: enough to recognise the process in ``ps``."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program == "__main__.py":  # python -m tiller
        program = "tiller"
    return " ".join([program, *sys.argv[1:]])[:200]


def _inert(value) -> str:
    return _CONTROL_CHARACTERS.sub("?", str(value))
