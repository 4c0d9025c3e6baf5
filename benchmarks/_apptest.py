"""What the page benchmarks share: timed AppTest renders, the points charts send, and the
result shape every benchmark module returns. A helper, not a benchmark (no ``measure``).

A result is a JSON-serialisable dict::

    {"title": "...", "workload": ["...", ...],          # what was seeded, one line each
     "figures": [{"name": "...", "value": 0.42, "unit": "s", "target": 1.0, "met": true,
                  "cpu_s": 0.40}, ...],                  # cpu_s: render timings only
     "notes": ["...", ...],                              # context without a target
     "met": true}                                        # every figure met

Every target is an upper bound: a figure is met when its value is at most the target.
Render timings also carry the process's CPU seconds (all threads): on a machine shared
with other work the wall time swings with the load, the CPU time much less, so it is
the better figure to compare two versions of a page by.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import streamlit as st
import streamlit.logger
from streamlit.testing.v1 import AppTest

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGES = REPO_ROOT / "dashboard" / "app_pages"
RENDERS, QUICK_RENDERS = 7, 3  # timed renders per median
APPTEST_TIMEOUT_S = 120  # a cold page on a loaded two-core machine can be slow; never a false failure


def say(message: str) -> None:
    """Progress for the person waiting: stderr, so stdout stays the report."""
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ figures


def figure(name: str, value: float, target: float, unit: str, cpu_s: float | None = None) -> dict[str, Any]:
    entry = {"name": name, "value": round(float(value), 3), "unit": unit, "target": target,
             "met": bool(value <= target)}
    if cpu_s is not None:
        entry["cpu_s"] = round(float(cpu_s), 3)
    return entry


def result(title: str, workload: list[str], figures: list[dict], notes: list[str] | None = None) -> dict[str, Any]:
    return {"title": title, "workload": workload, "figures": figures, "notes": notes or [],
            "met": all(f["met"] for f in figures)}


def _value_text(value: float, unit: str) -> str:
    return f"{value:,.0f}" if unit == "points" else f"{value:.2f} {unit}"


def markdown(result: dict[str, Any]) -> str:
    """``### title``, the workload, a table of the figures against their targets, the notes."""
    lines = [f"### {result['title']}", ""]
    lines += [f"- {item}" for item in result["workload"]]
    lines += ["", "| figure | measured | CPU time | target | met |", "|---|---:|---:|---:|:---:|"]
    for f in result["figures"]:
        cpu = f"{f['cpu_s']:.2f} s" if "cpu_s" in f else ""
        lines.append(f"| {f['name']} | {_value_text(f['value'], f['unit'])} | {cpu} | "
                     f"≤ {_value_text(f['target'], f['unit'])} | {'yes' if f['met'] else '**no**'} |")
    if result["notes"]:
        lines += [""] + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ renders


def warm_up() -> None:
    """Import what the pages import, and draw a first element, before any clock starts: the
    figures are the pages' own work, not Python loading plotly or scikit-learn once per
    process, nor Streamlit's once-per-process check for being run outside a server (it
    inspects the call stack: half a second)."""
    import plotly.graph_objects  # noqa: F401
    import sklearn.metrics  # noqa: F401

    # Outside a server, each cached function warns when defined and each cache clear when called.
    streamlit.logger.set_log_level("error")
    import tiller.dashboard.advisor_panel  # noqa: F401
    import tiller.dashboard.charts  # noqa: F401
    import tiller.dashboard.eval_side_by_side  # noqa: F401
    import tiller.dashboard.probe_panels  # noqa: F401
    import tiller.dashboard.steering_widgets  # noqa: F401
    import tiller.dashboard.tables  # noqa: F401

    timed_run(AppTest.from_string("import streamlit as st\nst.write('warm')"))


@contextmanager
def runs_folder(folder: str | os.PathLike) -> Iterator[None]:
    """The dashboard reads ``folder`` (``TILLER_RUNS_DIR``) inside the block, with empty caches;
    the caller's environment and caches are put back clean afterwards."""
    before = os.environ.get("TILLER_RUNS_DIR")
    os.environ["TILLER_RUNS_DIR"] = str(folder)
    clear_all_caches()
    try:
        yield
    finally:
        clear_all_caches()  # also drops the cached Store, so its connection to a temporary folder closes
        if before is None:
            os.environ.pop("TILLER_RUNS_DIR", None)
        else:
            os.environ["TILLER_RUNS_DIR"] = before


def clear_all_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


def page(name: str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=APPTEST_TIMEOUT_S)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at


def timed_run(at: AppTest) -> float:
    """Seconds one render of the page takes; a page that raises stops the benchmark."""
    return timed_cpu_run(at)[0]


def timed_cpu_run(at: AppTest) -> tuple[float, float]:
    """Wall and process CPU seconds of one render of the page."""
    started, cpu_started = time.perf_counter(), time.process_time()
    at.run()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    if at.exception:
        raise RuntimeError(f"the page failed: {at.exception[0].message}")
    # Outside a server, every cache clear logs a warning; AppTest resets the level on each run.
    streamlit.logger.set_log_level("error")
    return seconds, cpu_seconds


def median_run(at: AppTest, renders: int, before_each: Callable[[], None] = lambda: None) -> tuple[float, float]:
    """Median wall and median CPU seconds of ``renders`` renders."""
    timings = []
    for _ in range(renders):
        before_each()
        timings.append(timed_cpu_run(at))
    return statistics.median(t[0] for t in timings), statistics.median(t[1] for t in timings)


def render_figures(label: str, at: AppTest, target_s: float, renders: int) -> list[dict[str, Any]]:
    """Medians of: the first render (nothing cached but the database connection), the render
    with every query cached, and the render after the expiring caches are dropped, as a live
    refresh after 2 s does."""
    from tiller.dashboard import data

    first = median_run(at, renders, before_each=st.cache_data.clear)
    cached = median_run(at, renders)
    refresh = median_run(at, renders, before_each=data.forget_live_data)
    say(f"  {label}: first {first[0]:.2f} s, cached {cached[0]:.2f} s, live refresh {refresh[0]:.2f} s "
        f"(CPU {first[1]:.2f} / {cached[1]:.2f} / {refresh[1]:.2f} s)")
    return [figure(f"{label}: first render, nothing cached (median)", first[0], target_s, "s", cpu_s=first[1]),
            figure(f"{label}: render, queries cached (median)", cached[0], target_s, "s", cpu_s=cached[1]),
            figure(f"{label}: live refresh, queries run again (median)", refresh[0], target_s, "s", cpu_s=refresh[1])]


# ------------------------------------------------------------------- charts


def array_points(array: Any) -> int:
    """Values in one array of a chart's JSON; Plotly sends numpy arrays as base64 typed arrays."""
    if isinstance(array, dict) and "bdata" in array:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).size
    return len(array) if isinstance(array, (list, tuple)) else 0


def trace_points(trace: dict[str, Any]) -> int:
    """The longest data array of one trace: x or y, or a parallel-coordinates axis."""
    arrays = [trace.get("x", []), trace.get("y", [])] + [d["values"] for d in trace.get("dimensions", [])]
    return max(array_points(a) for a in arrays)


def chart_specs(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def max_points_per_trace(at: AppTest) -> int:
    return max((trace_points(t) for spec in chart_specs(at) for t in spec["data"]), default=0)


def chart_megabytes(at: AppTest) -> float:
    return sum(len(chart.proto.spec) for chart in at.get("plotly_chart")) / 1e6
