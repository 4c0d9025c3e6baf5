"""Schema migrations, applied in order when a database is opened.

Each migration runs once; ``PRAGMA user_version`` records how many have run.
Append new migrations to ``MIGRATIONS``; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite_utils


def _create_core_tables(db: sqlite_utils.Database) -> None:
    db["runs"].create(
        {
            "id": str,
            "name": str,
            "status": str,  # running / paused / finished / failed / stopped
            "model": str,
            "dataset": str,
            "run_dir": str,
            "created": float,  # unix seconds, UTC
            "updated": float,
            "heartbeat": float,
            "pid": int,
            "host": str,
            "error": str,  # traceback of a failed run
        },
        pk="id",
    )
    db["metrics"].create(
        {"run_id": str, "epoch": int, "split": str, "name": str, "value": float, "time": float},
        pk=("run_id", "epoch", "split", "name"),
        foreign_keys=[("run_id", "runs", "id")],
    )
    # The primary key already serves (run_id, epoch...) lookups; this one serves
    # "one metric of one run" and "best value of a metric across runs".
    db["metrics"].create_index(["run_id", "split", "name", "epoch"], index_name="metrics_by_name")
    db["config_versions"].create(
        {
            "run_id": str,
            "version": int,
            "epoch": int,  # first epoch trained with this config
            "config": str,  # full config, JSON
            "diff": str,  # {key: [old, new]} against the previous version, JSON
            "source": str,  # user / file / llm / cli
            "reason": str,
            "time": float,
        },
        pk=("run_id", "version"),
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["events"].create(
        {
            "id": int,
            "run_id": str,
            "time": float,
            "epoch": int,
            "level": str,  # info / warning / error
            "message": str,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["events"].create_index(["run_id", "id"], index_name="events_by_run")
    db["checkpoints"].create(
        {
            "run_id": str,
            "kind": str,  # last / best
            "epoch": int,
            "path": str,
            "metric": str,
            "value": float,
            "time": float,
        },
        pk=("run_id", "kind"),
        foreign_keys=[("run_id", "runs", "id")],
    )


def _create_prediction_tables(db: sqlite_utils.Database) -> None:
    # What the evaluation panels are computed from. The validation samples are
    # the same every epoch, so their labels and ids are stored once per run and
    # each epoch adds only its class probabilities (float16, row-major).
    db["val_samples"].create(
        {
            "run_id": str,
            "task": str,  # multiclass / binary
            "class_names": str,  # JSON list, index = label
            "labels": bytes,  # int32, one per sample
            "sample_ids": str,  # JSON list: file path or "<source>#<index>"
            "count": int,
        },
        pk="run_id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["predictions"].create(
        {"run_id": str, "epoch": int, "probs": bytes, "rows": int, "cols": int, "time": float},
        pk=("run_id", "epoch"),
        foreign_keys=[("run_id", "runs", "id")],
    )


def _add_train_class_counts(db: sqlite_utils.Database) -> None:
    # The evaluation panels compare class counts in training and validation.
    db["val_samples"].add_column("train_counts", str)  # JSON list, one count per class


def _create_advice_tables(db: sqlite_utils.Database) -> None:
    # Which request a config version answered (an advice's suggestions, a revert).
    db["config_versions"].add_column("change_id", str)
    # What an advisor (Claude or the offline rules) said about a run, kept whether
    # or not anything was applied, so every suggestion can be traced.
    db["advice"].create(
        {
            "id": str,  # adv_<YYYYmmdd_HHMMSS>_<hex>
            "run_id": str,
            "epoch": int,  # epochs done when it was asked
            "time": float,
            "advisor": str,  # the model name, or "offline rules"
            "asked_by": str,  # user / cli / autopilot
            "question": str,
            "analysis": str,  # Markdown
            "suggestions": str,  # JSON list: number, parameter, current/suggested value, reason, problem
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["advice"].create_index(["run_id", "time"], index_name="advice_by_run")
    # One Markdown report per applied config change, as seed 003 wrote them.
    db["reports"].create(
        {"id": str, "run_id": str, "version": int, "epoch": int, "time": float, "markdown": str, "path": str},
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["reports"].create_index(["run_id", "version"], index_name="reports_by_run")


def _cluster_metrics_by_series(db: sqlite_utils.Database) -> None:
    # Store each (run, split, name) series contiguously, in epoch order: one
    # metric of one run is then a single range of one b-tree, reading everything
    # needs no sort, and a commit dirties two b-trees instead of three (the
    # rowid table, its key index and the by-name index). The epoch index serves
    # "latest epoch of a run" and the epoch filter.
    db.execute(
        """
        CREATE TABLE metrics_by_series (
          run_id TEXT NOT NULL REFERENCES runs(id),
          split TEXT NOT NULL,
          name TEXT NOT NULL,
          epoch INTEGER NOT NULL,
          value REAL,
          time REAL,
          PRIMARY KEY (run_id, split, name, epoch)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        "INSERT INTO metrics_by_series (run_id, split, name, epoch, value, time)"
        " SELECT run_id, split, name, epoch, value, time FROM metrics"
    )
    db.execute("DROP TABLE metrics")
    db.execute("ALTER TABLE metrics_by_series RENAME TO metrics")
    db.execute("CREATE INDEX metrics_by_epoch ON metrics (run_id, epoch)")


def _add_run_hot_keys(db: sqlite_utils.Database) -> None:
    # A user's own training loop reads only some of the hot keys; the run records
    # which (a JSON list), so every steering path treats the others as fixed.
    # NULL: every hot key, as the built-in trainer (and every older run) reads them all.
    db["runs"].add_column("hot_keys", str)


def _add_run_trainer(db: sqlite_utils.Database) -> None:
    # Which trainer writes the run: "built-in" (tiller train, whose checkpoints tiller
    # resume continues) or "own loop" (tiller.run or the store's API in a user's script:
    # only that script can go on with it). Older runs are told apart by what each wrote:
    # an own loop declares the hot keys it reads and records its first config from the
    # "api"; a run with no config at all was only ever logged to.
    db["runs"].add_column("trainer", str)
    db.execute(
        """
        UPDATE runs SET trainer = CASE
          WHEN hot_keys IS NOT NULL THEN 'own loop'
          WHEN NOT EXISTS (SELECT 1 FROM config_versions c WHERE c.run_id = runs.id) THEN 'own loop'
          WHEN (SELECT source FROM config_versions c WHERE c.run_id = runs.id ORDER BY version LIMIT 1) = 'api'
            THEN 'own loop'
          ELSE 'built-in'
        END
        """
    )


MIGRATIONS = [
    _create_core_tables,
    _create_prediction_tables,
    _add_train_class_counts,
    _create_advice_tables,
    _cluster_metrics_by_series,
    _add_run_hot_keys,
    _add_run_trainer,
]


def migrate(db: sqlite_utils.Database) -> None:
    """Bring ``db`` up to the newest schema, one transaction per migration.

    Several processes often open a new database in the same instant (the demo's
    trainer and its dashboard): each migration takes the write lock *before* it
    reads the version, so a process that waited for another's migration sees it
    done instead of running it again ("table … already exists").
    """
    while _schema_version(db) < len(MIGRATIONS):
        with db.conn:
            db.execute("BEGIN IMMEDIATE")  # waits (busy timeout) for a migration under way elsewhere
            version = _schema_version(db)
            if version < len(MIGRATIONS):
                MIGRATIONS[version](db)
                db.execute(f"PRAGMA user_version = {version + 1}")


def _schema_version(db: sqlite_utils.Database) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]
