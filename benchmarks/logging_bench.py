"""Logging and reading speed of Tiller's store against raw SQLite, on the peers' workload W.

    /work/venv/bin/python benchmarks/logging_bench.py [--runs 20] [--steps 2000] [--repeats 3] [--json FILE]

W is 20 runs x 2,000 steps x 4 metrics (train/val loss and accuracy) = 160,000 points, as in
``../shared/peers/LOGGING_BENCH.md``. Each figure is the median of ``--repeats`` and is
printed next to its baseline measured in the same process:

- ingest: every step logged through ``Run.log`` (one commit per step, what a training loop
  does), against plain ``sqlite3`` with one transaction per step, WAL and synchronous=NORMAL;
- read all: every point of W into one DataFrame through ``Store.metrics``, against
  ``pandas.read_sql_query`` on the raw table;
- read one: one run's one metric.

Prints a Markdown table, and JSON with ``--json``. A script, never a timed test.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import pandas as pd  # noqa: E402

from store import Store  # noqa: E402

METRICS = ("train/loss", "train/accuracy", "val/loss", "val/accuracy")
PEERS = {  # LOGGING_BENCH.md, same machine class: batched write pts/s, read-all s, read-one ms
    "MLflow": (627, 6.32, 36.5), "TensorBoard": (10_024, 3.52, 162.9), "Aim": (8_486, 2.24, 31.7),
}


def values(step: int) -> dict[str, float]:
    return {name: 1.0 / (step + i + 1) for i, name in enumerate(METRICS)}


def tiller_ingest(folder: Path, runs: int, steps: int) -> tuple[float, Store, list[str]]:
    store = Store(folder)
    ids = []
    began = time.perf_counter()
    for r in range(runs):
        with store.start_run(model="bench", dataset="w", run_id=f"bench_{r:03d}") as run:
            for step in range(1, steps + 1):
                run.log(step, values(step))
            ids.append(run.id)
    return time.perf_counter() - began, store, ids


def raw_ingest(path: Path, runs: int, steps: int) -> tuple[float, sqlite3.Connection]:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE metrics (run_id TEXT, step INTEGER, name TEXT, value REAL, "
                 "PRIMARY KEY (run_id, step, name))")
    began = time.perf_counter()
    for r in range(runs):
        for step in range(1, steps + 1):
            with conn:
                conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)",
                                 [(f"raw_{r:03d}", step, k, v) for k, v in values(step).items()])
    return time.perf_counter() - began, conn


def timed(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def measure(runs: int, steps: int) -> dict[str, float]:
    points = runs * steps * len(METRICS)
    with tempfile.TemporaryDirectory() as tmp:
        tiller_s, store, ids = tiller_ingest(Path(tmp) / "tiller", runs, steps)
        raw_s, conn = raw_ingest(Path(tmp) / "raw.db", runs, steps)
        result = {
            "points": points,
            "tiller_ingest_pts_s": points / tiller_s,
            "raw_ingest_pts_s": points / raw_s,
            "tiller_read_all_s": timed(lambda: store.metrics(), 3),
            "raw_read_all_s": timed(lambda: pd.read_sql_query("SELECT * FROM metrics", conn), 3),
            "tiller_read_one_ms": 1000 * timed(lambda: store.metrics([ids[0]], names=["loss"], splits=["train"])),
            "raw_read_one_ms": 1000 * timed(lambda: pd.read_sql_query(
                "SELECT step, value FROM metrics WHERE run_id = ? AND name = ?", conn,
                params=["raw_000", "train/loss"])),
        }
        store.close()
        conn.close()
    result["ingest_ratio"] = result["tiller_ingest_pts_s"] / result["raw_ingest_pts_s"]
    return result


def markdown(result: dict[str, float]) -> str:
    lines = [
        f"W = {result['points']:,} points",
        "",
        "| | ingest, one commit per step (pts/s) | read all -> DataFrame (s) | read 1 run x 1 metric (ms) |",
        "|---|---|---|---|",
        f"| **Tiller** | {result['tiller_ingest_pts_s']:,.0f} | {result['tiller_read_all_s']:.3f} | "
        f"{result['tiller_read_one_ms']:.2f} |",
        f"| raw sqlite3, same run | {result['raw_ingest_pts_s']:,.0f} | {result['raw_read_all_s']:.3f} | "
        f"{result['raw_read_one_ms']:.2f} |",
    ]
    lines += [f"| {name} (LOGGING_BENCH.md) | {w:,} | {r:.2f} | {o:.1f} |" for name, (w, r, o) in PEERS.items()]
    lines += ["", f"Tiller ingests at {result['ingest_ratio']:.2f}x the raw baseline (target >= 0.8x and >= 30,000 pts/s); "
              "reads target <= 0.5 s and <= 10 ms."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    trials = [measure(args.runs, args.steps) for _ in range(args.repeats)]
    result = {key: statistics.median(t[key] for t in trials) for key in trials[0]}
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
