"""How long the Compare page takes with 20 runs of 2,000 steps each (a script, not a test).

    /work/venv/bin/python benchmarks/compare_page.py [--runs 20] [--steps 2000]

Seeds a temporary runs folder with 20 runs x 2,000 steps of 4 metrics (as a
user's own loop logs them), a config per run that differs in three settings,
and a mid-run config change in every fourth run. Then renders the page with
AppTest, all 20 runs chosen and EMA smoothing on, and prints the seconds per
render (target: at most 1.5 s) and the points each line sends to the browser.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import streamlit as st  # noqa: E402
import streamlit.logger  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from store import Store  # noqa: E402

RENDERS = 5  # after one render that imports plotly and pandas
TARGET_S = 1.5
PAGE = REPO_ROOT / "dashboard" / "app_pages" / "compare.py"


def seed(store: Store, runs: int, steps: int) -> list[str]:
    run_ids = []
    for index in range(runs):
        run_id = f"loop_20260101_{index:06d}"
        config = {"learning_rate": 10 ** -(2 + index % 3), "batch_size": 32 * (1 + index % 2),
                  "optimizer": ["Adam", "SGD"][index % 2 == 1], "seed": 42}
        store.create_run(model="custom", dataset="own", name=f"trial {index}", run_id=run_id)
        store.add_config_version(run_id, config, source="cli", epoch=1)
        noise = np.random.default_rng(index).uniform(-1, 1, steps)  # seeded: every run of the script is alike
        for step in range(1, steps + 1):
            if index % 4 == 0 and step == steps // 2:
                config = {**config, "learning_rate": config["learning_rate"] / 10}
                store.add_config_version(run_id, config, source="user", reason="plateau", epoch=step)
            loss = (1 + index / runs) / math.sqrt(step) * (1 + 0.3 * noise[step - 1])
            store.log_metrics(run_id, step, {"train/loss": loss, "val/loss": loss * 1.1,
                                             "train/accuracy": 1 - min(loss, 1) / 2, "val/accuracy": 1 - min(loss, 1) / 1.8})
        store.update_run(run_id, status="finished")
        run_ids.append(run_id)
    return run_ids


def points(array) -> int:
    """Points in one trace array of the chart's JSON; Plotly sends numpy arrays as base64 typed arrays."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).size
    return len(array)


def time_renders(at: AppTest, *, fresh_data: bool) -> list[float]:
    seconds = []
    for _ in range(RENDERS):
        if fresh_data:
            st.cache_data.clear()  # as on a live refresh, once the 2 s TTL of the queries has passed
        started = time.perf_counter()
        at.run()
        seconds.append(time.perf_counter() - started)
        if at.exception:
            raise SystemExit(f"the page failed: {at.exception[0].message}")
    return seconds


def report(what: str, seconds: list[float]) -> None:
    median = statistics.median(seconds)
    verdict = "met" if median <= TARGET_S else "MISSED"
    print(f"{what}: median {median:.2f} s, max {max(seconds):.2f} s (target <= {TARGET_S} s: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=2_000, help="try 20000 to see the downsampling at work")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        os.environ["TILLER_RUNS_DIR"] = folder
        started = time.perf_counter()
        run_ids = seed(Store(folder), args.runs, args.steps)
        print(f"seeded {args.runs} runs x {args.steps:,} steps x 4 metrics in {time.perf_counter() - started:.1f} s")

        at = AppTest.from_file(str(PAGE), default_timeout=60).run()
        at.multiselect(key="compare_runs").set_value(run_ids)
        at.radio(key="compare_smoothing").set_value("ema")
        started = time.perf_counter()
        at.run()
        # After AppTest has applied its config: outside a server every cache clear logs a warning.
        streamlit.logger.set_log_level("error")
        print(f"first render with all {args.runs} runs, EMA on: {time.perf_counter() - started:.2f} s")
        report("render, queries cached", time_renders(at, fresh_data=False))
        report("render, queries run again (a live refresh)", time_renders(at, fresh_data=True))

        spec = json.loads(next(c for c in at.get("plotly_chart") if c.key == "compare-chart").proto.spec)
        lines = [points(trace["x"]) for trace in spec["data"] if trace["mode"] != "markers"]
        print(f"lines sent: {len(lines)} (raw + smoothed per run), points per line: "
              f"{min(lines):,} to {max(lines):,} of {args.steps:,} logged; chart JSON {len(json.dumps(spec)) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
