"""How long the dashboard's live pages take to render, and how many points their charts send
(issue 6; a script, not a test: the project allows no timed assertions).

    /work/venv/bin/python benchmarks/dashboard_bench.py [--quick] [--json FILE]

Each page is rendered headless with AppTest, against temporary runs folders seeded through
the public Store API (``seeding.py``):

- Runs page: a long-used folder of 1,000 runs, 999 of about 20 epochs (8 metrics each, as
  the trainer logs; a few still live or crashed) and one live run. Target: at most 1 s.
- Run page: that live run, 300 epochs into training with a fresh heartbeat, its config
  changes, reports, events, advice and per-epoch predictions, in that same folder.
  Target: at most 0.5 s per refresh.
- Compare page: 20 runs x 2,000 steps, all chosen, EMA on (``compare_page.py``).
  Target: at most 1.5 s.
- Run page of a user's own loop that logged 20,000 steps: only the points its charts send.

Per page, each the median of several renders: the first render (nothing cached but the
database connection), the render with every query cached, and the render after the expiring
caches are dropped (what a live refresh reads every 2 s); and the most points any chart
trace sends (target: a few thousand, 5,000). AppTest
reruns the whole page, where a browser's live refresh reruns only the page's fragments,
so the refresh figures are upper bounds. ``--quick`` seeds less (4 epochs per run on the
Runs page, 100 epochs on Run, 500 steps on Compare, a 5,000-step loop) and renders fewer times.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repository root

from streamlit.testing.v1 import AppTest  # noqa: E402

from benchmarks import _apptest as bench  # noqa: E402
from benchmarks import compare_page  # noqa: E402
from benchmarks.seeding import seed_live_run, seed_many_runs, seed_step_runs  # noqa: E402
from benchmarks.standalone import run_standalone  # noqa: E402
from tiller.store import Store  # noqa: E402

RUNS_PAGE_TARGET_S = 1.0
RUN_PAGE_TARGET_S = 0.5
MAX_POINTS_PER_TRACE = compare_page.MAX_POINTS_PER_TRACE
FULL = {"runs": 1_000, "runs_epochs": 20, "live_epochs": 300, "loop_steps": 20_000}
QUICK = {"runs": 1_000, "runs_epochs": 4, "live_epochs": 100, "loop_steps": 5_000}


def seed_folder(store: Store, runs: int, epochs: int, live_epochs: int) -> str:
    """A long-used runs folder: ``runs - 1`` runs of about ``epochs`` epochs, then one live run
    ``live_epochs`` epochs in (the newest). Returns the live run's id."""
    started = time.perf_counter()
    seed_many_runs(store, runs - 1, epochs)
    run_id = seed_live_run(store, live_epochs)
    bench.say(f"  seeded {runs:,} runs in {time.perf_counter() - started:.1f} s")
    store.beat(run_id)  # fresh, whatever the seeding took: the pages must see it running
    return run_id


def shown_status(at: AppTest) -> str:
    """The status badge of a Run page (``st.badge`` draws Markdown: ``:green-badge[🟢 running]``)."""
    badge = re.search(r"-badge\[(.*?)\]", " ".join(str(m.value) for m in at.markdown))
    return badge.group(1) if badge else "not shown"


def runs_and_run_page_figures(runs: int, epochs: int, live_epochs: int,
                              renders: int) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    """The Runs page and the live run's Run page, in one folder as a user has them."""
    with tempfile.TemporaryDirectory() as folder, bench.runs_folder(folder):
        store = Store(folder)
        run_id = seed_folder(store, runs, epochs, live_epochs)
        runs_page = bench.page("runs.py")
        figures = bench.render_figures("Runs page", runs_page, RUNS_PAGE_TARGET_S, renders)
        rows = sum(len(frame.value) for frame in runs_page.dataframe)
        run_page = bench.page("run.py", {"run": run_id})
        figures += bench.render_figures("Run page", run_page, RUN_PAGE_TARGET_S, renders)
        figures.append(bench.figure("Run page: most points in one chart trace", bench.max_points_per_trace(run_page),
                                    MAX_POINTS_PER_TRACE, "points"))
        status = shown_status(run_page)
        versions = len(store.config_versions(run_id))
        notes = [f"Runs page: {rows:,} table rows sent per render",
                 f"Run page: the run showed as {status}; "
                 f"{bench.chart_megabytes(run_page):.2f} MB of chart JSON per render"]
    workload = [f"Runs page: {runs:,} runs, {runs - 1:,} of about {epochs} epochs x 8 metrics (2% running, "
                "2% crashed, the rest ended) and the live run below",
                f"Run page: that live run, {live_epochs} epochs in with a fresh heartbeat; per epoch 8 metrics, "
                f"2,000 x 10 predictions and checkpoints; {versions} config versions with reports, events, advice, "
                "state.json"]
    return workload, figures, notes


def long_loop_figures(steps: int) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    """The Run page of a user's own loop that logged ``steps`` steps: the points its charts send."""
    with tempfile.TemporaryDirectory() as folder, bench.runs_folder(folder):
        started = time.perf_counter()
        [run_id] = seed_step_runs(Store(folder), 1, steps)
        bench.say(f"  seeded a loop of {steps:,} steps in {time.perf_counter() - started:.1f} s")
        at = bench.page("run.py", {"run": run_id})
        seconds = bench.timed_run(at)
        figures = [bench.figure(f"Run page of a {steps:,}-step loop: most points in one chart trace",
                                bench.max_points_per_trace(at), MAX_POINTS_PER_TRACE, "points")]
    workload = [f"Run page of a user's own loop: {steps:,} steps x 4 metrics, finished"]
    return workload, figures, [f"Run page of the {steps:,}-step loop: first render {seconds:.2f} s"]


def measure(quick: bool = False) -> dict[str, Any]:
    """Figures of the Runs, Compare and Run pages; ``quick`` seeds less and renders fewer times."""
    size, compared = (QUICK, compare_page.QUICK) if quick else (FULL, compare_page.FULL)
    renders = bench.QUICK_RENDERS if quick else bench.RENDERS
    bench.warm_up()
    workload, figures, notes = [], [], []
    for lines, page_figures, page_notes in (
        runs_and_run_page_figures(size["runs"], size["runs_epochs"], size["live_epochs"], renders),
        compare_page.page_figures(compared["runs"], compared["steps"], renders),
        long_loop_figures(size["loop_steps"]),
    ):
        workload += lines
        figures += page_figures
        notes += page_notes
    return bench.result("Dashboard pages (AppTest)", workload, figures, notes)


def markdown(result: dict[str, Any]) -> str:
    return bench.markdown(result)


def main() -> None:
    run_standalone(__doc__, measure, markdown, quick_help="smaller workloads and fewer renders (well under a minute)")


if __name__ == "__main__":
    main()
