"""Small helpers every page uses: status badges, local times, labels, diffs, the empty state."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import streamlit as st

from tiller.dashboard import data
from tiller.store import LIVE_STATUSES
from tiller.store.store import OWN_LOOP
from tiller.trainer.steering.live_config import SetAside
from tiller.trainer.steering.safe_text import markdown_inline

STATUS_ICONS = {
    "running": "🟢",
    "paused": "⏸️",
    "finished": "✅",
    "failed": "❌",
    "stopped": "⏹️",
    "crashed": "💥",
}

# Why a run cannot be steered now, shown instead of an enabled form.
_RESUME = "`tiller resume {run_id}` in a terminal continues it from its last checkpoint."
ENDED_EXPLANATIONS = {
    "finished": "This run finished; its config can no longer change. Start a new run to train again.",
    "failed": "This run failed (see the events below), so nothing reads changes now. Once its cause is fixed, "
              + _RESUME,
    "stopped": "This run was stopped, so nothing reads changes now; " + _RESUME,
    "crashed": "The trainer of this run is gone (its process ended, or no heartbeat came for 30 s), so nothing "
               "reads changes now; " + _RESUME,
}
# A run of the user's own loop (tiller.run): only their script has its model and data.
_RERUN = "it ran in a training loop of your own, which `tiller resume` cannot continue: run your script again."
OWN_LOOP_ENDED_EXPLANATIONS = {
    **ENDED_EXPLANATIONS,
    "failed": "This run failed (see the events below), so nothing reads changes now; " + _RERUN,
    "stopped": "This run was stopped, so nothing reads changes now; " + _RERUN,
    "crashed": "The trainer of this run is gone (its process ended, or no heartbeat came for 30 s), so nothing "
               "reads changes now; " + _RERUN,
}


def ended_explanation(status: str, run_id: str) -> str | None:
    """Why the run cannot be steered, and how to go on; ``None`` for a live run."""
    record = data.run_record(run_id) or {}
    explanations = OWN_LOOP_ENDED_EXPLANATIONS if record.get("trainer") == OWN_LOOP else ENDED_EXPLANATIONS
    text = explanations.get(status)
    return None if text is None else text.format(run_id=run_id)


def md_escape(text: Any) -> str:
    """Names, reasons and messages typed by users, placed in the page's Markdown: shown as typed
    (no link, image, HTML, :color[...] or list can form; see ``tiller.trainer.steering.safe_text``)."""
    return markdown_inline(text)


def status_label(status: str) -> str:
    return f"{STATUS_ICONS.get(status, '❔')} {status}"


def is_live(status: str) -> bool:
    return status in LIVE_STATUSES


def user_timezone() -> str | None:
    """The browser's IANA time zone, when the browser told Streamlit."""
    try:
        return st.context.timezone
    except Exception:  # no browser session (bare script run)
        return None


def local_time(seconds: float | None, tz_name: str | None = None) -> str:
    """``seconds`` (unix time) in the user's zone, else the server's local zone."""
    moment = _local_moment(seconds, tz_name)
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def local_clock(seconds: float | None, tz_name: str | None = None) -> str:
    """The time of day of ``seconds`` in the user's zone (``14:03:09``): for moments of the last hours."""
    moment = _local_moment(seconds, tz_name)
    return "" if moment is None else moment.strftime("%H:%M:%S")


def _local_moment(seconds: float | None, tz_name: str | None) -> datetime | None:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return None
    zone = _known_zone(tz_name)
    return datetime.fromtimestamp(seconds, zone) if zone else datetime.fromtimestamp(seconds).astimezone()


def _known_zone(tz_name: str | None) -> ZoneInfo | None:
    """The zone named ``tz_name``, if this machine knows it; else ``None`` (the server's zone is used)."""
    try:
        return ZoneInfo(tz_name) if tz_name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def duration_text(seconds: float) -> str:
    """``42`` -> ``42 s``, ``370`` -> ``6 min``, ``5400`` -> ``1 h 30 min``: a length of time,
    rounded to read at a glance."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def value_text(value: Any) -> str:
    """A config value as JSON text (``0.001``, ``"mlp"``, ``null``): the form users type it in."""
    return json.dumps(value, ensure_ascii=False)


def diff_text(diff: Mapping[str, list[Any]]) -> str:
    """``{"learning_rate": [0.001, 0.01]}`` -> ``learning_rate 0.001 → 0.01``."""
    return ", ".join(f"{key} {value_text(old)} → {value_text(new)}" for key, (old, new) in diff.items())


def epochs_done(run: Mapping[str, Any]) -> int:
    return 0 if pd.isna(run.get("epoch")) else int(run["epoch"])


def progress_text(run: Mapping[str, Any]) -> str:
    total = "?" if pd.isna(run.get("num_epochs")) else int(run["num_epochs"])
    return f"{epochs_done(run)}/{total}"


RECENT_EPOCHS = 3  # the pace of the last few epochs: steadier than one, still current after a change


def progress_line(run: Mapping[str, Any], metrics: pd.DataFrame) -> str:
    """``Epoch 5/40 · 9.8 s per epoch · 1,450 samples/s · about 6 min left``: the run's progress and
    pace from its last epochs (``metrics`` in the store's long form); the time left only while it runs."""
    parts = [f"Epoch {progress_text(run)}"]
    seconds, rate = _recent_mean(metrics, "epoch_seconds"), _recent_mean(metrics, "samples_per_sec")
    if seconds is not None:
        parts.append(f"{seconds:.1f} s per epoch")
    if rate is not None:
        parts.append(f"{rate:,.0f} samples/s")
    total = run.get("num_epochs")
    if run.get("status") == "running" and seconds is not None and not pd.isna(total):
        left = max(0, int(total) - epochs_done(run))
        parts.append(f"about {duration_text(left * seconds)} left" if left else "finishing")
    elif run.get("status") == "paused":
        parts.append("paused")
    return " · ".join(parts)


def _recent_mean(metrics: pd.DataFrame, name: str) -> float | None:
    values = metrics[(metrics["split"] == "") & (metrics["name"] == name)].sort_values("epoch")["value"]
    values = values[values.map(math.isfinite)].tail(RECENT_EPOCHS)
    return float(values.mean()) if not values.empty else None


def run_labels(runs: pd.DataFrame) -> dict[str, str]:
    """A readable, unique label per run id: its name, plus the id when names repeat."""
    names = runs["name"].fillna(runs["id"])
    repeated = set(names[names.duplicated(keep=False)])
    return {
        run_id: f"{name} ({run_id})" if name in repeated and name != run_id else name
        for run_id, name in zip(runs["id"], names)
    }


def start_commands(folder: str) -> str:
    """Markdown bullets: commands that start a run writing to ``folder``.

    Each names the folder: a run started without ``--runs-dir`` writes to ``./runs`` of
    wherever it starts, which is this dashboard's folder only by chance.
    """
    return (f"- `tiller train --runs-dir {folder} --set model_name=mlp` trains a small model on scikit-learn's "
            f"built-in digits (`--config CONFIG.json` or more `--set key=value` for your own), or\n"
            f"- `tiller demo --runs-dir {folder} --port 8502` trains the demo's two runs and serves a dashboard "
            f"of its own on port 8502 (this one shows them too).\n")


def empty_state(folder: str) -> str:
    """What to do while ``folder`` holds no run."""
    return (f"**No runs yet in this folder.** Start one from a terminal:\n\n{start_commands(folder)}\n"
            f"New runs appear here within a couple of seconds; `TILLER_RUNS_DIR={folder}` works instead of "
            f"`--runs-dir`.")


def zone_note(tz_name: str | None) -> str:
    """Which zone the times are in: the browser's, named as it names it (``Asia/Shanghai``), or,
    when the browser gave none that is known here, the server's, as ``local_time`` falls back."""
    if _known_zone(tz_name):
        return f"times in {tz_name}, your browser's time zone"
    return f"times in the server's time zone, {datetime.now().astimezone().tzname()}"


# A button's callback inside a fragment must not draw (Streamlit warns that the element lands
# at the top of the app): it keeps its toast, and the fragment shows it as it redraws.
def keep_toast(key: str, text: str) -> None:
    """From a callback: keep ``text`` for ``show_kept_toast(key)``."""
    st.session_state[f"toast-{key}"] = text


def set_aside_note(set_aside: SetAside | None) -> str:
    """A sentence to add to a request's feedback when it replaced a bad edit standing in the live file."""
    return "" if set_aside is None else " Note: " + md_escape(set_aside.describe()) + "."


def show_kept_toast(key: str) -> None:
    """In the fragment, as it redraws: the toast a callback kept under ``key``, once."""
    text = st.session_state.pop(f"toast-{key}", None)
    if text:
        st.toast(text)


@st.fragment(run_every=data.REFRESH_S)
def wait_for_first_run() -> None:
    """The empty state; reloads the page as soon as a run exists."""
    if not data.runs().empty:
        st.rerun(scope="app")
    st.info(empty_state(data.runs_dir()))
