"""Whether a run's trainer process is still there.

A trainer beats a heartbeat every few seconds, so a run whose heartbeat is
older than ``HEARTBEAT_TIMEOUT_S`` has lost its process wherever it ran. On
the machine the trainer ran on we need not wait that long: if its process id
is gone (or is a zombie, killed and not yet reaped), it has crashed now.
"""

from __future__ import annotations

import os
import socket

# Long enough to outlast a few missed beats (the trainer beats every 5 s, from
# its own thread, so even a stalled training step does not hold it up).
HEARTBEAT_TIMEOUT_S = 30.0

THIS_HOST = socket.gethostname()


def process_gone(pid, host) -> bool:
    """True when ``pid`` ran on this machine and no longer runs.

    False when it cannot tell (another machine, no pid): the heartbeat decides.
    A reused pid reads as alive, so the heartbeat is still the last word then.
    """
    if host != THIS_HOST or pid is None or pid != pid or int(pid) <= 0:  # pid != pid: NaN from pandas
        return False
    pid = int(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's live process
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    return process_state(pid) == "Z"


def process_state(pid: int) -> str | None:
    """The state letter ``/proc`` gives a process of this machine (``R``, ``S``, ``T`` stopped, ``Z`` zombie...).

    ``None`` when it cannot tell: no such process, or no ``/proc`` (macOS, Windows).
    """
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as handle:
            stat = handle.read()
    except (OSError, ValueError):
        return None
    return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3].decode("ascii", "replace") or None  # after "(comm) "
