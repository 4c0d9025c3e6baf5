"""Where run data lives, and run ids that are safe to use as folder names."""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

DB_FILENAME = "tiller.db"
RUNS_DIR_ENV = "TILLER_RUNS_DIR"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def resolve_runs_dir(runs_dir: str | os.PathLike | None = None) -> Path:
    """The runs folder: the argument, else ``$TILLER_RUNS_DIR``, else ``./runs``."""
    chosen = runs_dir or os.environ.get(RUNS_DIR_ENV) or "runs"
    return Path(chosen).expanduser().resolve()


def safe_component(text: str, fallback: str = "run") -> str:
    """``text`` reduced to characters that are safe in a single path component."""
    cleaned = _UNSAFE.sub("-", text).strip(".-_")
    return cleaned[:80] or fallback


def make_run_id(model: str, when: datetime | None = None) -> str:
    """``<model>_<YYYYmmdd_HHMMSS>``, the seeds' session naming, made safe for paths."""
    stamp = (when or datetime.now()).strftime("%Y%m%d_%H%M%S")
    return f"{safe_component(model, 'model')}_{stamp}"


def run_dir_for(runs_dir: Path, run_id: str) -> Path:
    """The folder of ``run_id``; refuses ids that would leave ``runs_dir``."""
    if run_id != safe_component(run_id):
        raise ValueError(f"not a valid run id: {run_id!r}")
    return runs_dir / run_id
