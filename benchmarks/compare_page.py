"""How long the Compare page takes with 20 runs of 2,000 steps each (a script, not a test).

    /work/venv/bin/python benchmarks/compare_page.py [--quick] [--runs 20] [--steps 2000] [--json FILE]

Seeds a temporary runs folder with 20 runs x 2,000 steps of 4 metrics (as a user's own
loop logs them), a config per run that differs in three settings, and a mid-run config
change in every fourth run. Then renders the page with AppTest, all 20 runs chosen and EMA
smoothing on: medians of the first render (nothing cached), the render with the queries
cached, and the live refresh (the expiring caches dropped). Target (issue 6): at most 1.5 s per render, and at most
a few thousand points per chart trace. Prints a Markdown table; progress goes to stderr.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repository root

from benchmarks import _apptest as bench  # noqa: E402
from benchmarks.seeding import seed_step_runs  # noqa: E402
from benchmarks.standalone import run_standalone  # noqa: E402
from tiller.store import Store  # noqa: E402

TARGET_S = 1.5
MAX_POINTS_PER_TRACE = 5_000  # "a few thousand": what a browser still draws smoothly
FULL = {"runs": 20, "steps": 2_000}
QUICK = {"runs": 20, "steps": 500}


def page_figures(runs: int, steps: int, renders: int) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    """Workload lines, figures and notes of the Compare page on a freshly seeded folder."""
    with tempfile.TemporaryDirectory() as folder, bench.runs_folder(folder):
        started = time.perf_counter()
        run_ids = seed_step_runs(Store(folder), runs, steps)
        seeded_s = time.perf_counter() - started
        bench.say(f"  compare page: seeded {runs} runs x {steps:,} steps in {seeded_s:.1f} s")
        at = bench.page("compare.py")
        at.run()  # the page as it opens (the two newest runs), then the comparison the figures time
        at.multiselect(key="compare_runs").set_value(run_ids)
        at.radio(key="compare_smoothing").set_value("ema")
        figures = bench.render_figures("Compare page", at, TARGET_S, renders)
        figures.append(bench.figure("Compare page: most points in one chart trace", bench.max_points_per_trace(at),
                                    MAX_POINTS_PER_TRACE, "points"))
        workload = [f"Compare page: {runs} runs x {steps:,} steps x 4 metrics, all chosen, EMA smoothing on"]
        notes = [f"Compare page: {bench.chart_megabytes(at):.1f} MB of chart JSON per render"]
    return workload, figures, notes


def measure(quick: bool = False, **workload: int) -> dict[str, Any]:
    """The Compare page's figures; ``quick`` uses 500 steps per run instead of 2,000."""
    size = {**(QUICK if quick else FULL), **workload}
    renders = bench.QUICK_RENDERS if quick else bench.RENDERS
    bench.warm_up()
    lines, figures, notes = page_figures(size["runs"], size["steps"], renders)
    return bench.result("Compare page", lines, figures, notes)


def markdown(result: dict[str, Any]) -> str:
    return bench.markdown(result)


def main() -> None:
    run_standalone(__doc__, measure, markdown, quick_help="500 steps per run, fewer renders",
                   sizes={"runs": "runs to compare", "steps": "steps per run; try 20000 to see the downsampling at work"})


if __name__ == "__main__":
    main()
