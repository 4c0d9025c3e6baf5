"""The peers (MLflow, TensorBoard, Aim) measured here on workload W, when they are installed.

    python benchmarks/peers.py [--runs 20] [--steps 2000] [--repeats 1] [--only mlflow,tensorboard,aim] [--json FILE]

W is the workload of ``logging_bench.py`` and ``../shared/peers/LOGGING_BENCH.md``: 20 runs x
2,000 steps x 4 metrics (train/val loss and accuracy) = 160,000 points. For each peer that is
importable, with the figures of LOGGING_BENCH.md's headline:

- ingest: one batched call per step where the peer has one (MLflow ``MlflowClient.log_batch``,
  Aim ``Run.track(dict)``; TensorBoard has none, so ``add_scalar`` per metric per step), timed
  from the first run's creation until every writer is closed, so the data is durable; the
  one-off store creation (MLflow's schema migrations, ``aim init``) is not timed;
- read all: every point of W into one pandas DataFrame through the peer's public read API,
  opening the store as a fresh reader would (median of 3); Aim's runs are first indexed, as
  ``aim up`` does, timed apart (``index_s``), since its ``Repo`` sees no run before that;
- read one: one run's ``train/loss`` into a DataFrame (median of 5).

A peer that is absent is recorded as "not installed"; one that raises records its error text.
Each repeat writes a new store in a temporary folder; figures are medians over ``--repeats``.
Run it in an environment holding the peers (never Tiller's dev venv): MLflow ingests at 200 to
630 pts/s on this machine class, so full W takes 5 to 13 minutes there; ``--runs``/``--steps``
shrink the workload (``--only mlflow`` with fewer runs, say).
A script, never a timed test; ``logging_bench.py`` may import ``measure_peers`` and ``markdown_rows``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workload import METRICS, values  # noqa: E402

READ_ONE_METRIC = "train/loss"
READ_ALL_REPEATS = 3
READ_ONE_REPEATS = 5
NOISY_LOGGERS = ("mlflow", "alembic", "aim", "tensorboard", "tensorboardX", "absl")


# ---------------------------------------------------------------------------------------------
# MLflow, SQLite backend. Each ingest/read function takes the store folder; ingest returns the
# ids that the reads use.


def _mlflow_client(folder: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")


def mlflow_setup(folder: Path) -> str:
    """Create the SQLite tracking store and one experiment (untimed: MLflow runs its schema
    migrations on first use). Artifacts go into the folder, never ./mlruns."""
    client = _mlflow_client(folder)
    return client.create_experiment("W", artifact_location=(folder / "artifacts").as_uri())


def mlflow_ingest(folder: Path, runs: int, steps: int) -> list[str]:
    """``MlflowClient.log_batch`` once per step with the step's 4 metrics: MLflow's batched call
    (``mlflow.log_metrics`` is the fluent wrapper around the same call). Each run is created with
    ``create_run`` and ended with ``set_terminated``; every call commits to SQLite before it
    returns, so the data is durable when the loop ends."""
    from mlflow.entities import Metric

    client = _mlflow_client(folder)
    experiment_id = client.get_experiment_by_name("W").experiment_id
    ids = []
    for r in range(runs):
        run_id = client.create_run(experiment_id, run_name=f"bench_{r:03d}").info.run_id
        for step in range(1, steps + 1):
            now = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in values(step).items()])
        client.set_terminated(run_id)
        ids.append(run_id)
    return ids


def mlflow_read_all(folder: Path, ids: list[str]):
    """``MlflowClient.search_runs`` over the experiment (every page), then
    ``get_metric_history`` for every metric key of every run: MLflow's public way to get whole
    series (``search_runs`` alone only carries each metric's latest value)."""
    import pandas as pd

    client = _mlflow_client(folder)
    experiment_id = client.get_experiment_by_name("W").experiment_id
    rows: list[tuple[str, str, int, float, int]] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        for run in page:
            for key in run.data.metrics:
                rows += [(run.info.run_id, m.key, m.step, m.value, m.timestamp)
                         for m in client.get_metric_history(run.info.run_id, key)]
        token = page.token
        if not token:
            break
    return pd.DataFrame(rows, columns=["run_id", "name", "step", "value", "timestamp"])


def mlflow_read_one(folder: Path, ids: list[str]):
    """``MlflowClient.get_metric_history(run_id, key)``: one run's one metric."""
    import pandas as pd

    history = _mlflow_client(folder).get_metric_history(ids[0], READ_ONE_METRIC)
    return pd.DataFrame([(m.step, m.value, m.timestamp) for m in history], columns=["step", "value", "timestamp"])


# ---------------------------------------------------------------------------------------------
# TensorBoard event files: written with tensorboardX, read with tensorboard's EventAccumulator.


def tensorboard_ingest(folder: Path, runs: int, steps: int) -> list[str]:
    """tensorboardX ``SummaryWriter.add_scalar`` once per metric per step: event files have no
    batched call (``add_scalars`` writes each tag to its own sub-writer and event file, so it is
    not one). One log directory per run; ``close()`` flushes the event file, so the data is
    durable when the loop ends."""
    from tensorboardX import SummaryWriter

    ids = []
    for r in range(runs):
        logdir = folder / f"bench_{r:03d}"
        writer = SummaryWriter(logdir=str(logdir))
        for step in range(1, steps + 1):
            for name, value in values(step).items():
                writer.add_scalar(name, value, step)
        writer.close()
        ids.append(str(logdir))
    return ids


def _tensorboard_scalars(logdir: str):
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    return accumulator


def tensorboard_read_all(folder: Path, ids: list[str]):
    """``tensorboard.backend.event_processing.event_accumulator.EventAccumulator`` per run
    directory with ``size_guidance={SCALARS: 0}`` (keep every point: the default samples 10,000
    per tag), then ``Scalars(tag)`` for every scalar tag: tensorboard's public reader of event
    files, which needs no TensorFlow."""
    import pandas as pd

    rows: list[tuple[str, str, int, float, float]] = []
    for logdir in sorted(p for p in folder.iterdir() if p.is_dir()):
        accumulator = _tensorboard_scalars(str(logdir))
        for tag in accumulator.Tags()["scalars"]:
            rows += [(logdir.name, tag, e.step, e.value, e.wall_time) for e in accumulator.Scalars(tag)]
    return pd.DataFrame(rows, columns=["run_id", "name", "step", "value", "wall_time"])


def tensorboard_read_one(folder: Path, ids: list[str]):
    """``EventAccumulator(run_dir, size_guidance={SCALARS: 0}).Reload()`` then
    ``Scalars('train/loss')``: the reader has to parse the run's whole event file, every tag."""
    import pandas as pd

    events = _tensorboard_scalars(ids[0]).Scalars(READ_ONE_METRIC)
    return pd.DataFrame([(e.step, e.value, e.wall_time) for e in events], columns=["step", "value", "wall_time"])


# ---------------------------------------------------------------------------------------------
# Aim.


def aim_setup(folder: Path) -> None:
    """``Repo(path, init=True)``, what ``aim init`` does (untimed)."""
    from aim import Repo

    Repo(str(folder), init=True).close()


def aim_ingest(folder: Path, runs: int, steps: int) -> list[str]:
    """``Run.track(dict, step=...)`` once per step: Aim's batched call (track_dict). Runs are
    opened without system-resource tracking and terminal-log capture (a background thread and a
    stdout hook that would time something else); ``close()`` finalises the run, so the data is
    durable when the loop ends."""
    from aim import Run

    ids = []
    for r in range(runs):
        run = Run(repo=str(folder), experiment="W", system_tracking_interval=None,
                  log_system_params=False, capture_terminal_logs=False)
        if getattr(run, "hash", None) is None:  # aim's Run.__init__ swallows its own errors
            raise RuntimeError("aim.Run could not be created")
        run.name = f"bench_{r:03d}"
        for step in range(1, steps + 1):
            run.track(values(step), step=step)
        ids.append(run.hash)
        run.close()
    return ids


def aim_index(folder: Path, ids: list[str]) -> None:
    """``RepoIndexManager.index(run_hash)`` for every run, what ``aim up`` (in the background)
    and ``aim storage reindex`` do: Aim 3.29's ``Repo`` reads only its index, so closed runs
    stay invisible to ``query_metrics`` until they are indexed. Timed apart from ingest."""
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager

    repo = Repo.from_path(str(folder))
    manager = RepoIndexManager.get_index_manager(repo)
    try:
        for run_hash in ids:
            manager.index(run_hash)
    finally:  # its file watchers were never started; drop it with its folder
        manager.stop()
        RepoIndexManager.index_manager_pool.pop(repo.path, None)


def _aim_repo(folder: Path):
    from aim import Repo

    return Repo(str(folder))


def aim_read_all(folder: Path, ids: list[str]):
    """``Repo(path).query_metrics('').dataframe()``: Aim's public query of every metric series,
    progress bar off; one row per point, with run hash, name and context columns."""
    from aim.sdk.types import QueryReportMode

    repo = _aim_repo(folder)
    try:
        return repo.query_metrics("", report_mode=QueryReportMode.DISABLED).dataframe()
    finally:
        repo.close()


def aim_read_one(folder: Path, ids: list[str]):
    """``Repo(path).get_run(hash).get_metric('train/loss', Context({})).dataframe()``: a run
    looked up by hash, then one metric series, without querying every run."""
    from aim.storage.context import Context

    repo = _aim_repo(folder)
    try:
        return repo.get_run(ids[0]).get_metric(READ_ONE_METRIC, Context({})).dataframe()
    finally:
        repo.close()


# ---------------------------------------------------------------------------------------------
# The peers, and the measuring that is common to them.


@dataclass(frozen=True)
class Peer:
    name: str  # as in LOGGING_BENCH.md
    modules: tuple[str, ...]  # all must be importable
    ingest: Callable[[Path, int, int], list[str]]
    read_all: Callable[[Path, list[str]], Any]
    read_one: Callable[[Path, list[str]], Any]
    ingest_api: str
    read_all_api: str
    read_one_api: str
    setup: Callable[[Path], Any] | None = None  # creates the empty store, untimed
    index: Callable[[Path, list[str]], Any] | None = None  # makes written runs readable, timed apart
    index_api: str = ""


PEERS: dict[str, Peer] = {
    "mlflow": Peer(
        name="MLflow (SQLite backend)", modules=("mlflow", "pandas"),
        setup=mlflow_setup, ingest=mlflow_ingest, read_all=mlflow_read_all, read_one=mlflow_read_one,
        ingest_api="MlflowClient.log_batch, 1 call per step",
        read_all_api="MlflowClient.search_runs + get_metric_history",
        read_one_api="MlflowClient.get_metric_history",
    ),
    "tensorboard": Peer(
        name="TensorBoard event files", modules=("tensorboardX", "tensorboard", "pandas"),
        ingest=tensorboard_ingest, read_all=tensorboard_read_all, read_one=tensorboard_read_one,
        ingest_api="tensorboardX SummaryWriter.add_scalar, 1 call per metric per step (no batched API)",
        read_all_api="EventAccumulator (size_guidance scalars=0)",
        read_one_api="EventAccumulator (size_guidance scalars=0) + Scalars(tag)",
    ),
    "aim": Peer(
        name="Aim", modules=("aim", "pandas"),
        setup=aim_setup, ingest=aim_ingest, index=aim_index, read_all=aim_read_all, read_one=aim_read_one,
        ingest_api="Run.track(dict, step=...) (track_dict), 1 call per step",
        index_api="RepoIndexManager.index(run_hash) per run, as aim up / aim storage reindex",
        read_all_api="Repo.query_metrics('').dataframe()",
        read_one_api="Repo.get_run(hash).get_metric(name, Context({})).dataframe()",
    ),
}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _version(module: str) -> str:
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return getattr(__import__(module), "__version__", "?")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The peers' loggers at ERROR and their warnings ignored for the block, restored after
    it. MLflow's INFO logs (its schema migrations) and its telemetry are turned off through
    ``MLFLOW_LOGGING_LEVEL`` and ``MLFLOW_DISABLE_TELEMETRY``, unless already set: MLflow reads
    them when it is imported, so they stay set."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow sets its logger's level on import
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times), out


def _error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= 500 else text[:497] + "..."


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _trial(peer: Peer, runs: int, steps: int) -> dict[str, Any]:
    """One fresh store: ingest W, then read it back. A figure that raises records its error."""
    points = runs * steps * len(METRICS)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tiller_peer_", ignore_cleanup_errors=True) as tmp:
        folder = Path(tmp)
        step = "setup"
        try:  # the peer's exceptions, whatever they are, are recorded, not raised
            if peer.setup is not None:
                peer.setup(folder)
            step = "ingest"
            ingest_s, ids = _timed(lambda: peer.ingest(folder, runs, steps), 1)
            out["ingest_pts_s"] = points / ingest_s
            out["on_disk_bytes"] = _size(folder)
            if peer.index is not None:
                step = "index"
                out["index_s"], _ = _timed(lambda: peer.index(folder, ids), 1)
        except Exception as exc:
            out["errors"] = {step: _error(exc)}
            return out
        for figure, unit, fn, repeats, expected in (("read_all", "s", peer.read_all, READ_ALL_REPEATS, points),
                                                    ("read_one", "ms", peer.read_one, READ_ONE_REPEATS, steps)):
            try:
                seconds, frame = _timed(lambda: fn(folder, ids), repeats)
                rows = 0 if frame is None else len(frame)  # Aim returns None for no series
                if rows != expected:  # a fast read of nothing is no figure
                    raise RuntimeError(f"read {rows:,} rows, expected {expected:,}")
                out[f"{figure}_{unit}"] = seconds * (1000 if unit == "ms" else 1)
                out[f"{figure}_rows"] = rows
            except Exception as exc:
                out.setdefault("errors", {})[figure] = _error(exc)
    return out


def measure_peer(key: str, runs: int, steps: int, repeats: int = 1) -> dict[str, Any]:
    """One peer's figures (JSON-serialisable): status "measured", "not installed" or "error"."""
    peer = PEERS[key]
    result: dict[str, Any] = {
        "name": peer.name, "ingest_api": peer.ingest_api, "read_all_api": peer.read_all_api,
        "read_one_api": peer.read_one_api,
    }
    if peer.index is not None:
        result["index_api"] = peer.index_api
    missing = [m for m in peer.modules if not installed(m)]
    if missing:
        result.update(status="not installed", missing=missing)
        return result
    with quiet():
        try:
            result["versions"] = {m: _version(m) for m in peer.modules if m != "pandas"}
        except Exception as exc:
            result.update(status="error", errors={"import": _error(exc)})
            return result
        result["version"] = " / ".join(f"{m} {v}" for m, v in result["versions"].items())
        trials = [_trial(peer, runs, steps) for _ in range(max(1, repeats))]
    for figure in ("ingest_pts_s", "index_s", "read_all_s", "read_one_ms", "on_disk_bytes", "read_all_rows", "read_one_rows"):
        got = [t[figure] for t in trials if figure in t]
        if got:  # counts stay whole numbers
            result[figure] = (statistics.median if figure.endswith("_s") or figure.endswith("_ms")
                              else statistics.median_low)(got)
    errors = {f"{figure} (repeat {i + 1})" if len(trials) > 1 else figure: text
              for i, t in enumerate(trials) for figure, text in t.get("errors", {}).items()}
    if errors:
        result["errors"] = errors
    result["status"] = "error" if errors else "measured"
    return result


def _keys(only: Iterable[str] | str | None) -> list[str]:
    if only is None:
        return list(PEERS)
    if isinstance(only, str):
        only = only.split(",")
    keys = [k.strip().lower() for k in only if k.strip()]
    unknown = [k for k in keys if k not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(PEERS)}")
    return keys


def measure_peers(runs: int, steps: int, repeats: int = 1, only: Iterable[str] | str | None = None) -> dict[str, Any]:
    """Every peer (or those in ``only``: keys mlflow, tensorboard, aim) on ``runs`` x ``steps``
    x 4 metrics. JSON-serialisable: ``{"workload": {...}, "peers": {key: figures}}``, each
    peer's figures named ``ingest_pts_s``, ``read_all_s``, ``read_one_ms`` with the API used
    for each (``*_api``), its ``version``, ``status`` and any ``errors``."""
    return {
        "workload": {"runs": runs, "steps": steps, "metrics": list(METRICS), "points": runs * steps * len(METRICS),
                     "repeats": repeats},
        "peers": {key: measure_peer(key, runs, steps, repeats) for key in _keys(only)},
    }


def markdown_rows(result: dict[str, Any], missing: bool = True) -> list[str]:
    """Rows ``| name (measured here, version) | ingest pts/s | read all s | read one ms |``, the
    columns of ``logging_bench.markdown()``; a figure that failed reads "error". Peers that are
    not installed get a row saying so, unless ``missing`` is False."""
    rows = []
    for peer in result["peers"].values():
        if peer["status"] == "not installed":
            if missing:
                rows.append(f"| {peer['name']} (not installed here) | n/a | n/a | n/a |")
            continue
        cells = [f"{peer['ingest_pts_s']:,.0f}" if "ingest_pts_s" in peer else "error",
                 f"{peer['read_all_s']:.2f}" if "read_all_s" in peer else "error",
                 f"{peer['read_one_ms']:.1f}" if "read_one_ms" in peer else "error"]
        rows.append(f"| {peer['name']} (measured here, {peer.get('version', '?')}) | {' | '.join(cells)} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", help=f"comma-separated, of: {','.join(PEERS)} (default: all)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    try:
        keys = _keys(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    result = measure_peers(args.runs, args.steps, args.repeats, keys)
    print(f"W = {result['workload']['points']:,} points ({args.runs} runs x {args.steps} steps x {len(METRICS)} metrics)")
    print()
    print("| | ingest, 1 call per step (per metric for TensorBoard) (pts/s) | read all -> DataFrame (s) | read 1 run x 1 metric (ms) |")
    print("|---|---|---|---|")
    print("\n".join(markdown_rows(result)))
    print()
    for peer in result["peers"].values():
        if peer["status"] == "not installed":
            print(f"- {peer['name']}: not installed (needs {', '.join(peer['missing'])})")
        else:
            print(f"- {peer['name']}: ingest {peer['ingest_api']}; read all {peer['read_all_api']}; "
                  f"read one {peer['read_one_api']}")
            if "index_s" in peer:
                print(f"  - before the reads, {peer['index_api']}: {peer['index_s']:.2f} s (not in ingest)")
            for figure, text in peer.get("errors", {}).items():
                print(f"  - {figure} failed: {text}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
