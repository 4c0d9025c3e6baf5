"""Tiller's store: one SQLite file (``runs/tiller.db``) holding runs, per-epoch
metrics, config versions, events and checkpoints.

    from tiller.store import Store
    store = Store("runs")
    with store.start_run(model="mlp", dataset="digits") as run:
        run.log(1, {"train/loss": 0.4, "val/accuracy": 0.91})
    store.metrics([run.id])          # pandas DataFrame
"""

from tiller.store.db import StoreCorrupt, StoreReplaced, StoreWriteError, corruption_in
from tiller.store.paths import resolve_runs_dir, safe_component
from tiller.store.run import Run
from tiller.store.store import HEARTBEAT_TIMEOUT_S, LIVE_STATUSES, SOURCES, STATUSES, RunNotFound, Store

__all__ = ["Store", "Run", "RunNotFound", "resolve_runs_dir", "safe_component", "STATUSES", "LIVE_STATUSES", "SOURCES",
           "HEARTBEAT_TIMEOUT_S", "StoreWriteError", "StoreReplaced", "StoreCorrupt", "corruption_in"]
