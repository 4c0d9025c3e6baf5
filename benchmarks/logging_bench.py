"""Logging and reading speed of Tiller's store against raw SQLite, on the peers' workload W.

    python benchmarks/logging_bench.py [--quick] [--repeats 3] [--scale 10,100] [--json FILE]

W is 20 runs x 2,000 steps x 4 metrics (train/val loss and accuracy) = 160,000 points, as in
``../shared/peers/LOGGING_BENCH.md``. Every figure is printed next to its baseline, measured
in the same process (median of ``--repeats``):

- ingest: every step logged through ``Run.log``, one call per step as a training loop makes
  them, timed until the last row is committed; against plain ``sqlite3`` with one
  transaction per step, WAL and synchronous=NORMAL. Also how long each ``log`` call kept
  the training loop waiting (``Run.log`` hands rows to a writer thread), and the
  synchronous ``Store.log_metrics`` path, one commit per call;
- read all: every point of W into one DataFrame through ``Store.metrics``, against
  ``pandas.read_sql_query`` on the raw table;
- read one: one run's one metric;
- scale: ingest and read at 10x and 100x the runs of W (Tiller only).

The peers' figures come from LOGGING_BENCH.md; a peer installed here (mlflow,
tensorboard, aim) is measured again side by side by ``benchmarks/peers.py``.
A script, never a timed test.
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
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import pandas as pd  # noqa: E402

from benchmarks.workload import METRICS, W_RUNS, W_STEPS, values  # noqa: E402
from tiller.store import Store  # noqa: E402

TARGETS = {"ingest_pts_s": 30_000, "ingest_ratio": 0.8, "read_all_s": 0.5, "read_one_ms": 10.0}
PEERS = {  # LOGGING_BENCH.md, this machine class: batched write pts/s, read-all s, read-one ms
    "MLflow": (627, 6.32, 36.5), "TensorBoard": (10_024, 3.52, 162.9), "Aim": (8_486, 2.24, 31.7),
}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ Tiller

def tiller_ingest(store: Store, runs: int, steps: int, first: int = 0) -> dict[str, float]:
    """W through ``Run.log``: seconds until committed, and how long the calls themselves took."""
    waits = []
    began = time.perf_counter()
    for r in range(first, first + runs):
        with store.start_run(model="bench", dataset="w", run_id=f"bench_{r:05d}") as run:
            for step in range(1, steps + 1):
                point = values(step)
                called = time.perf_counter()
                run.log(step, point)
                waits.append(time.perf_counter() - called)
        # leaving the block flushed: every row is committed before the clock stops
    seconds = time.perf_counter() - began
    waits.sort()
    return {"seconds": seconds, "call_p50_us": 1e6 * waits[len(waits) // 2],
            "call_p99_us": 1e6 * waits[int(len(waits) * 0.99)], "call_max_us": 1e6 * waits[-1],
            "in_calls_share": sum(waits) / seconds}


def tiller_sync_ingest(store: Store, runs: int, steps: int) -> float:
    """The synchronous path: ``Store.log_metrics`` commits before it returns."""
    began = time.perf_counter()
    for r in range(runs):
        run_id = store.create_run(model="bench", dataset="w", run_id=f"sync_{r:05d}")
        for step in range(1, steps + 1):
            store.log_metrics(run_id, step, values(step))
    return time.perf_counter() - began


# -------------------------------------------------------------- raw SQLite

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


# ------------------------------------------------------------------ timing

def timed(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def read_one(store: Store, run_id: str) -> None:
    store.metrics([run_id], names=["loss"], splits=["train"])


def measure_w(runs: int, steps: int) -> dict[str, float]:
    """One trial of every W figure, each beside its baseline."""
    points = runs * steps * len(METRICS)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "tiller")
        ingest = tiller_ingest(store, runs, steps)
        sync_s = tiller_sync_ingest(Store(Path(tmp) / "sync"), runs, steps)
        raw_s, conn = raw_ingest(Path(tmp) / "raw.db", runs, steps)
        result = {
            "tiller_ingest_pts_s": points / ingest["seconds"],
            "tiller_sync_ingest_pts_s": points / sync_s,
            "raw_ingest_pts_s": points / raw_s,
            "log_call_p50_us": ingest["call_p50_us"],
            "log_call_p99_us": ingest["call_p99_us"],
            "log_call_max_us": ingest["call_max_us"],
            "tiller_read_all_s": timed(lambda: store.metrics(), 3),
            "raw_read_all_s": timed(lambda: pd.read_sql_query("SELECT * FROM metrics", conn), 3),
            "tiller_read_one_ms": 1000 * timed(lambda: read_one(store, "bench_00000")),
            "raw_read_one_ms": 1000 * timed(lambda: pd.read_sql_query(
                "SELECT step, value FROM metrics WHERE run_id = ? AND name = ?", conn,
                params=["raw_000", "train/loss"])),
        }
        store.close()
        conn.close()
    result["ingest_ratio"] = result["tiller_ingest_pts_s"] / result["raw_ingest_pts_s"]
    return result


def measure_scale(factors: list[int], steps: int) -> list[dict[str, float]]:
    """Ingest and read as the runs folder grows: ``factor`` x the runs of W in one database."""
    curve = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "scale")
        done = 0
        for factor in sorted(factors):
            runs = factor * W_RUNS
            say(f"  scale {factor}x: logging runs {done + 1}..{runs}")
            ingest = tiller_ingest(store, runs - done, steps, first=done)
            added = (runs - done) * steps * len(METRICS)
            done = runs
            curve.append({
                "factor": factor, "runs": runs, "points": runs * steps * len(METRICS),
                "ingest_pts_s": added / ingest["seconds"],
                "read_all_s": timed(lambda: store.metrics(), 1),
                "read_one_ms": 1000 * timed(lambda: read_one(store, "bench_00000")),
                "db_mb": sum(f.stat().st_size for f in (Path(tmp) / "scale").glob("tiller.db*")) / 1e6,
            })
        store.close()
    return curve


def measure_installed_peers(runs: int, steps: int) -> dict:
    try:
        from benchmarks.peers import measure_peers
    except ImportError:  # run as a script from elsewhere, or peers.py absent
        return {}
    return measure_peers(runs, steps)


def measure(quick: bool = False, repeats: int = 3, scale: tuple[int, ...] = (10, 100)) -> dict:
    runs, steps = (W_RUNS, W_STEPS // 10) if quick else (W_RUNS, W_STEPS)
    repeats = 1 if quick else repeats
    trials = []
    for trial in range(1, repeats + 1):
        say(f"logging: workload W trial {trial}/{repeats} ({runs} runs x {steps:,} steps)")
        trials.append(measure_w(runs, steps))
    w = {key: statistics.median(t[key] for t in trials) for key in trials[0]}
    w["points"] = runs * steps * len(METRICS)
    result = {"workload": {"runs": runs, "steps": steps, "metrics": len(METRICS), "repeats": repeats},
              "w": w, "scale": [], "peers": {}}
    result["met"] = {
        "ingest_pts_s": w["tiller_ingest_pts_s"] >= TARGETS["ingest_pts_s"],
        "ingest_ratio": w["ingest_ratio"] >= TARGETS["ingest_ratio"],
        "read_all_s": w["tiller_read_all_s"] <= TARGETS["read_all_s"],
        "read_one_ms": w["tiller_read_one_ms"] <= TARGETS["read_one_ms"],
    }
    if not quick and scale:
        say("logging: scale curve")
        result["scale"] = measure_scale(list(scale), steps)
    say("logging: installed peers")
    result["peers"] = measure_installed_peers(runs, steps)
    return result


# ----------------------------------------------------------------- report

def peer_rows(result: dict) -> list[str]:
    try:
        from benchmarks.peers import markdown_rows
    except ImportError:
        return []
    return markdown_rows(result["peers"], missing=False) if result.get("peers") else []


def markdown(result: dict) -> str:
    w, load = result["w"], result["workload"]
    verdict = lambda key: "met" if result["met"][key] else "**missed**"  # noqa: E731
    lines = [
        "### Logging and reading",
        "",
        f"Workload: {load['runs']} runs x {load['steps']:,} steps x {load['metrics']} metrics = {w['points']:,} points, "
        f"median of {load['repeats']}.",
        "",
        "| | ingest, one call per step (pts/s) | read all -> DataFrame (s) | read 1 run x 1 metric (ms) |",
        "|---|---|---|---|",
        f"| **Tiller** (`Run.log`, writer thread) | **{w['tiller_ingest_pts_s']:,.0f}** | **{w['tiller_read_all_s']:.3f}** | "
        f"**{w['tiller_read_one_ms']:.2f}** |",
        f"| Tiller, synchronous (`Store.log_metrics`, one commit per call) | {w['tiller_sync_ingest_pts_s']:,.0f} | | |",
        f"| raw sqlite3, one transaction per step, same run | {w['raw_ingest_pts_s']:,.0f} | {w['raw_read_all_s']:.3f} | "
        f"{w['raw_read_one_ms']:.2f} |",
        *peer_rows(result),
        *[f"| {name} (LOGGING_BENCH.md) | {pw:,} | {pr:.2f} | {po:.1f} |" for name, (pw, pr, po) in PEERS.items()],
        "",
        f"- Ingest: {w['ingest_ratio']:.2f}x the raw baseline (target >= {TARGETS['ingest_ratio']}x: "
        f"{verdict('ingest_ratio')}; >= {TARGETS['ingest_pts_s']:,} pts/s: {verdict('ingest_pts_s')}). "
        f"A `log` call kept the loop waiting {w['log_call_p50_us']:.1f} us (median), "
        f"{w['log_call_p99_us']:.1f} us (p99), {w['log_call_max_us'] / 1000:.2f} ms (max).",
        f"- Read all: target <= {TARGETS['read_all_s']} s: {verdict('read_all_s')}. "
        f"Read one: target <= {TARGETS['read_one_ms']:.0f} ms: {verdict('read_one_ms')}.",
    ]
    absent = [peer["name"] for peer in result.get("peers", {}).get("peers", {}).values()
              if peer["status"] == "not installed"]
    if absent:
        lines.append(f"- Not installed here, so not measured side by side: {', '.join(absent)} "
                     "(`benchmarks/peers.py` says what to install).")
    if result["scale"]:
        lines += ["", "| scale | runs | points | ingest (pts/s) | read all (s) | read 1 run x 1 metric (ms) | database (MB) |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {s['factor']}x | {s['runs']:,} | {s['points']:,} | {s['ingest_pts_s']:,.0f} | {s['read_all_s']:.2f} | "
                  f"{s['read_one_ms']:.2f} | {s['db_mb']:,.0f} |" for s in result["scale"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="W with 200 steps per run, one trial, no scale curve")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", default="10,100", help="multiples of W's runs for the scale curve; '' skips it")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    scale = tuple(int(f) for f in args.scale.split(",") if f.strip())
    result = measure(args.quick, args.repeats, scale)
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
