"""Where run data lives, and run ids that are safe to use as folder names."""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

DB_FILENAME = "tiller.db"
RUNS_DIR_ENV = "TILLER_RUNS_DIR"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
RUN_ID_MAX = 80  # characters in a run id: a folder name that stays readable in a terminal and under any OS limit
_STAMP_FORMAT = "%Y%m%d_%H%M%S"
# The model part of a generated id leaves room for "_<stamp>" and the "_<n>" that
# ``Store.create_run`` appends to a second run of the same model in the same second.
MODEL_PART_MAX = RUN_ID_MAX - len("_20250913_104848") - len("_999")


def resolve_runs_dir(runs_dir: str | os.PathLike | None = None) -> Path:
    """The runs folder: the argument, else ``$TILLER_RUNS_DIR``, else ``./runs``."""
    chosen = runs_dir or os.environ.get(RUNS_DIR_ENV) or "runs"
    return Path(chosen).expanduser().resolve()


def safe_component(text: str, fallback: str = "run", limit: int = RUN_ID_MAX) -> str:
    """``text`` reduced to characters that are safe in a single path component, at most ``limit`` long."""
    cleaned = _UNSAFE.sub("-", text).strip(".-_")
    return cleaned[:limit].rstrip(".-_") or fallback  # a cut may end on a separator: drop it too


def make_run_id(model: str, when: datetime | None = None) -> str:
    """``<model>_<YYYYmmdd_HHMMSS>``, the seeds' session naming, made safe for paths.

    A long model name keeps its first ``MODEL_PART_MAX`` characters and the whole
    time stamp, so the id stays readable, sorts by time and fits ``RUN_ID_MAX``.
    """
    stamp = (when or datetime.now()).strftime(_STAMP_FORMAT)
    return f"{safe_component(model, 'model', MODEL_PART_MAX)}_{stamp}"


def run_dir_for(runs_dir: Path, run_id: str) -> Path:
    """The folder of ``run_id``; refuses ids that would leave ``runs_dir``."""
    if run_id != safe_component(run_id):
        raise ValueError(f"not a valid run id: {run_id!r} (run ids are at most {RUN_ID_MAX} characters "
                         "of letters, digits, '.', '-' and '_')")
    return runs_dir / run_id
