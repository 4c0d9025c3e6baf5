"""The benchmark scripts run and report every figure (tiny workloads; nothing here is timed)."""

import subprocess
import sys

from benchmarks import logging_bench
from benchmarks.peers import measure_peers


def test_logging_bench_reports_every_figure_on_a_tiny_workload(monkeypatch):
    monkeypatch.setattr(logging_bench, "W_RUNS", 2)
    result = logging_bench.measure(quick=True, scale=())
    w = result["w"]
    assert w["points"] == 2 * 200 * 4
    for key in ("tiller_ingest_pts_s", "raw_ingest_pts_s", "tiller_sync_ingest_pts_s", "tiller_read_all_s",
                "raw_read_all_s", "tiller_read_one_ms", "raw_read_one_ms", "log_call_p99_us"):
        assert w[key] > 0, key
    assert set(result["met"]) == {"ingest_pts_s", "ingest_ratio", "read_all_s", "read_one_ms"}
    text = logging_bench.markdown(result)
    assert "| **Tiller** (`Run.log`, writer thread) |" in text and "LOGGING_BENCH.md" in text


def test_the_scale_curve_keeps_one_database_growing():
    curve = logging_bench.measure_scale([1, 2], steps=5)
    assert [point["runs"] for point in curve] == [20, 40]
    assert [point["points"] for point in curve] == [20 * 5 * 4, 40 * 5 * 4]
    assert all(point["read_all_s"] > 0 and point["db_mb"] > 0 for point in curve)


def test_peers_that_are_not_installed_are_reported_not_fatal():
    result = measure_peers(1, 3, only="mlflow,tensorboard,aim")
    assert set(result["peers"]) == {"mlflow", "tensorboard", "aim"}
    assert all(peer["status"] in {"measured", "not installed", "error"} for peer in result["peers"].values())


def test_the_one_command_lists_its_benchmarks():
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "nonsense"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "unknown benchmark(s) nonsense; choose from logging, dashboard, evaluation, training, steering" in done.stderr
