"""Advice and reports: what an advisor said about a run, and the report of each
applied config change. Mixed into ``Store``; these are its only SQL on them."""

from __future__ import annotations

import json
import time
from typing import Any, Iterable

import pandas as pd


class AdviceQueries:
    """``Store`` methods for the ``advice`` and ``reports`` tables."""

    # ----------------------------------------------------------------- advice

    def record_advice(
        self,
        run_id: str,
        *,
        advice_id: str,
        epoch: int,
        advisor: str,
        asked_by: str,
        question: str,
        analysis: str,
        suggestions: Iterable[dict[str, Any]],
    ) -> None:
        """Keep one advisor reply; ``suggestions`` are plain dicts (JSON-safe values)."""
        with self._write():
            self.db["advice"].insert(
                {
                    "id": advice_id,
                    "run_id": run_id,
                    "epoch": int(epoch),
                    "time": time.time(),
                    "advisor": advisor,
                    "asked_by": asked_by,
                    "question": question,
                    "analysis": analysis,
                    "suggestions": json.dumps(list(suggestions), ensure_ascii=False),
                }
            )

    def advice(self, run_id: str, limit: int | None = None) -> pd.DataFrame:
        """The run's advice, newest first; ``suggestions`` parsed to lists."""
        sql = "SELECT * FROM advice WHERE run_id = ? ORDER BY time DESC, id DESC"
        params: list[Any] = [run_id]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        df = self._query(sql, params)
        df["suggestions"] = df["suggestions"].map(json.loads)
        return df

    def advice_item(self, advice_id: str) -> dict[str, Any] | None:
        """One advice by id, or ``None``."""
        with self._lock:
            rows = list(self.db.query("SELECT * FROM advice WHERE id = ?", [advice_id]))
        if not rows:
            return None
        row = dict(rows[0])
        row["suggestions"] = json.loads(row["suggestions"])
        return row

    # ---------------------------------------------------------------- reports

    def record_report(self, run_id: str, *, report_id: str, version: int, epoch: int, markdown: str,
                      path: str) -> None:
        with self._write():
            self.db["reports"].upsert(
                {"id": report_id, "run_id": run_id, "version": int(version), "epoch": int(epoch),
                 "time": time.time(), "markdown": markdown, "path": path},
                pk="id",
            )

    def reports(self, run_id: str) -> pd.DataFrame:
        """The run's reports, newest first (id, version, epoch, time, markdown, path)."""
        return self._query("SELECT * FROM reports WHERE run_id = ? ORDER BY version DESC", [run_id])
