"""Data-parallel runs: 2 real processes on gloo, started with ``tiller train --nproc 2`` (torchrun).

Steered mid-run through the CLI like any run; each rank's own report of
what it had in force (``ranks.jsonl``) proves they applied the same change at
the same epoch and hold the same weights. A rank killed mid-run fails the run
with a clear event instead of hanging.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tiller.store import Store
from tests.test_live_steering import epochs_logged, only_run, start_train_command, wait_for
from tiller.trainer.engine.checkpoint import checkpoint_path, load_checkpoint
from tiller.trainer.data.loaders import ShardedWeightedSampler, slice_bounds, train_loader, val_loader
from tiller.trainer.engine.distributed import World, weights_fingerprint
from tiller.trainer.engine.state import build_state
from tiller.trainer.steering.config import validate_config

ROOT = Path(__file__).resolve().parent.parent
JOB_TIMEOUT_S = 240


def start_job(runs_dir: Path, *overrides: str) -> subprocess.Popen:
    # A session of its own: the test can end the whole job if it hangs.
    return start_train_command(runs_dir, overrides, "--nproc", "2", start_new_session=True)


def tiller(runs_dir: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tiller", *argv, "--runs-dir", str(runs_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def finish(proc: subprocess.Popen, timeout: float = JOB_TIMEOUT_S) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the job did not end within {timeout} s (hung?):\n{proc.communicate()[0]}")
    return out


def rank_reports(runs_dir: Path, run_id: str) -> dict[int, list[dict]]:
    path = runs_dir / run_id / "ranks.jsonl"
    if not path.exists():
        return {}
    return {line["epoch"]: line["ranks"] for line in map(json.loads, path.read_text().splitlines())}


def test_two_ranks_apply_a_mid_run_change_at_the_same_epoch_and_keep_identical_weights(tmp_path):
    runs_dir = tmp_path / "runs"
    proc = start_job(runs_dir, "num_epochs=300", "batch_size=16", "learning_rate=0.002")
    store = Store(runs_dir)
    run_id = wait_for(lambda: only_run(store), "the run is created", proc, timeout=JOB_TIMEOUT_S)
    wait_for(lambda: epochs_logged(store, run_id) >= 2, "epoch 2", proc, timeout=JOB_TIMEOUT_S)

    # Pause both processes, change the lr and the batch size, go on: as a user would.
    assert tiller(runs_dir, "pause", run_id).returncode == 0
    wait_for(lambda: store.run(run_id)["status"] == "paused", "the job pauses", proc)
    paused_at = epochs_logged(store, run_id)
    sent = tiller(runs_dir, "set", run_id, "learning_rate=0.0005", "batch_size=40", f"num_epochs={paused_at + 3}",
                  "--reason", "smaller steps, bigger batches")
    assert sent.returncode == 0, sent.stderr
    time.sleep(0.5)  # paused: the edit waits for the next epoch boundary
    assert len(store.config_versions(run_id)) == 1
    assert tiller(runs_dir, "resume", run_id).returncode == 0
    out = finish(proc)
    assert proc.returncode == 0, out

    record = store.run(run_id)
    assert record["status"] == "finished", out
    versions = store.config_versions(run_id)
    assert list(versions["version"]) == [1, 2]
    change = versions.iloc[1]
    assert change["source"] == "cli" and change["reason"] == "smaller steps, bigger batches"
    applied_at = int(change["epoch"])
    # The paused epoch (paused_at + 1) ends with the config it began with; the edit applies after it.
    assert applied_at == paused_at + 2

    reports = rank_reports(runs_dir, run_id)
    assert sorted(reports) == list(range(1, paused_at + 4))
    for epoch, ranks in reports.items():
        assert [r["rank"] for r in ranks] == [0, 1]
        assert ranks[0]["pid"] != ranks[1]["pid"]  # two real processes
        assert len({r["weights"] for r in ranks}) == 1, f"epoch {epoch}: the ranks' weights differ"
        before = epoch < applied_at
        for r in ranks:
            assert r["learning_rate"] == (0.002 if before else 0.0005), (epoch, r)
            assert r["last_lr"] == pytest.approx(0.002 if before else 0.0005), (epoch, r)
            assert r["batch_size"] == (16 if before else 40), (epoch, r)
            assert r["largest_batch"] == (16 if before else 40), (epoch, r)
        # Each rank trained half of the 1,437 training samples (DistributedSampler pads to 1,438).
        assert ranks[0]["batches"] == ranks[1]["batches"] == -(-719 // (16 if before else 40))

    # What rank 0 checkpointed is the model both ranks hold.
    last = load_checkpoint(checkpoint_path(runs_dir / run_id, "last"))
    assert weights_fingerprint(last["model"]) == reports[max(reports)][0]["weights"]

    events = store.events(run_id)["message"].tolist()
    applied = [m for m in events if m.startswith("Config v2 from cli applied at epoch")]
    assert applied and "applied by all 2 processes" in applied[0]
    assert any("2 processes (gloo)" in m for m in events)
    lr = dict(zip(*store.metrics([run_id], names=["lr"])[["epoch", "value"]].T.values))
    assert lr[applied_at - 1] == pytest.approx(0.002) and lr[applied_at] == pytest.approx(0.0005)


def test_a_rank_that_dies_fails_the_run_with_a_clear_event_not_a_hang(tmp_path):
    runs_dir = tmp_path / "runs"
    proc = start_job(runs_dir, "num_epochs=300", "batch_size=16")
    store = Store(runs_dir)
    run_id = wait_for(lambda: only_run(store), "the run is created", proc, timeout=JOB_TIMEOUT_S)
    reports = wait_for(lambda: rank_reports(runs_dir, run_id), "the first rank reports", proc, timeout=JOB_TIMEOUT_S)
    rank1 = reports[1][1]["pid"]

    os.kill(rank1, signal.SIGKILL)
    out = finish(proc, timeout=90)

    assert proc.returncode != 0
    record = store.run(run_id)
    assert record["status"] == "failed", out
    errors = store.events(run_id).query("level == 'error'")["message"].tolist()
    assert any("another process of this 2-process job died" in m or "torchrun ended this process" in m
               for m in errors), errors
    assert f"tiller resume {run_id}" in out or "torchrun ended this process" in out, out


# ----------------------------------------------------------------- in-process parts


def test_a_single_process_world_changes_nothing():
    world = World.single()
    assert world.broadcast({"a": 1}) == {"a": 1}
    assert world.gather(3) == [3]
    assert world.sum(1.5, 2) == [1.5, 2]
    assert world.control("pause") == "pause"
    assert world.all_finite(1.0) and not world.all_finite(float("nan"))


def test_validation_slices_cover_the_split_in_order():
    for n in (0, 1, 5, 360, 361):
        for size in (1, 2, 3, 8):
            slices = [slice_bounds(n, rank, size) for rank in range(size)]
            covered = [i for start, stop in slices for i in range(start, stop)]
            assert covered == list(range(n))


def test_ranks_train_disjoint_shards_of_one_epoch_order():
    state = build_state(validate_config({"batch_size": 64}))

    def indices(loader):
        return list(loader.sampler)

    shards = [indices(train_loader(state.data, 64, 42, epoch=3, shard=(rank, 2))) for rank in range(2)]
    assert not set(shards[0]) & set(shards[1]) or len(state.data.train) % 2  # padding repeats at most one
    assert set(shards[0]) | set(shards[1]) == set(range(len(state.data.train)))
    assert indices(train_loader(state.data, 64, 42, epoch=4, shard=(0, 2))) != shards[0]  # seeded per epoch

    weights = torch.ones(10)
    dealt = [ShardedWeightedSampler(weights, 10, torch.Generator().manual_seed(1), rank, 2).indices for rank in range(2)]
    whole = torch.multinomial(weights, 10, replacement=True, generator=torch.Generator().manual_seed(1)).tolist()
    assert dealt[0] == whole[0::2] and dealt[1] == whole[1::2]
    assert len(val_loader(state.data, 64, shard=(1, 2)).dataset) == len(state.data.val) // 2
