"""One owner per run: a process that writes a run holds it until it ends, even while stopped
with SIGSTOP, and a second process (a ``tiller resume`` from another shell, or two at once)
is refused with the holder named instead of training the same run alongside it."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tiller.store import Store
from tiller.store.liveness import HEARTBEAT_TIMEOUT_S
from tiller.store.ownership import RunOwned, read_holder
from tests.test_live_steering import ROOT, epochs_logged, only_run, start_trainer, wait_for
from tests.test_resume import SERIES, epochs_by_series, kill_and_see_it_crashed, pause_mid_epoch, resume_command

HOLD_RUN = """
import sys, time
from tiller.store import Store
with Store(sys.argv[1]).start_run(model="mlp", dataset="digits", run_id="held") as run:
    print("holding", flush=True)
    time.sleep(600)
"""


HOLD_RUN_WITH_A_FORKED_WORKER = """
import os, sys, time
from tiller.store import Store
with Store(sys.argv[1]).start_run(model="mlp", dataset="digits", run_id="held") as run:
    worker = os.fork()  # as a DataLoader worker is started: no exec, every open file shared
    if worker == 0:
        time.sleep(600)
        os._exit(0)
    print(worker, flush=True)
    time.sleep(600)
"""


def resumed_events(store: Store, run_id: str) -> list[str]:
    return [m for m in store.events(run_id)["message"] if m.startswith("Resumed")]


def wait_until(condition, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_run_is_refused_to_a_second_process_while_its_holder_lives_and_free_once_it_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_RUN, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        store = Store(tmp_path)
        with pytest.raises(RunOwned) as refused:
            store.reopen_run("held")
        message = str(refused.value)
        assert f"run held is held by pid {holder.pid} on host {socket.gethostname()} since " in message
        assert "one process at a time writes a run" in message and "tiller stop held" in message
        assert store.run("held")["pid"] == holder.pid  # the refused process wrote nothing
        holder.kill()  # SIGKILL: no clean-up ran, the kernel drops the lock all the same
        holder.wait()
    finally:
        holder.kill()
    with store.reopen_run("held") as run:
        assert read_holder(run.dir).pid == os.getpid()
    assert read_holder(run.dir) is None  # let go, and the file names nobody


def test_a_sigstopped_trainer_keeps_its_run_then_finishes_it_after_sigcont(tmp_path):
    runs_dir = tmp_path / "runs"
    proc = start_trainer(runs_dir, 'model_name="mlp"', "num_epochs=4")
    store = Store(runs_dir)
    try:
        run_id = wait_for(lambda: only_run(store), "the run is created", proc)
        wait_for(lambda: epochs_logged(store, run_id) >= 1, "epoch 1", proc)
        os.kill(proc.pid, signal.SIGSTOP)
        # Stopped, its heartbeat is silent: after the timeout it reads as crashed, and the
        # dashboard offers `tiller resume`. The resume must not take the run from it.
        wait_until(lambda: store.run(run_id)["status"] == "crashed", "the silent heartbeat",
                   HEARTBEAT_TIMEOUT_S + 30)
        refused = resume_command(runs_dir, run_id)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"cannot resume: run {run_id} is held by pid {proc.pid} on host {socket.gethostname()}" \
               in refused.stderr
        assert f"stopped (SIGSTOP or Ctrl-Z), not dead: `kill -CONT {proc.pid}`" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert resumed_events(store, run_id) == [] and store.run(run_id)["pid"] == proc.pid
        os.kill(proc.pid, signal.SIGCONT)
        assert proc.wait(timeout=300) == 0
    finally:
        os.kill(proc.pid, signal.SIGCONT) if proc.poll() is None else None
        proc.kill()
    record = store.run(run_id)
    assert (record["status"], record["pid"]) == ("finished", proc.pid)
    assert epochs_by_series(store, run_id) == {key: [1, 2, 3, 4] for key in SERIES}
    lr = store.metrics([run_id], names=["lr"]).sort_values("epoch")
    assert lr["time"].is_monotonic_increasing  # written in epoch order, by one process
    assert resumed_events(store, run_id) == []


def test_two_resumes_started_at_once_train_the_run_once(tmp_path):
    runs_dir = tmp_path / "runs"
    proc = start_trainer(runs_dir, 'model_name="mlp"', "num_epochs=3")
    store = Store(runs_dir)
    try:
        run_id = wait_for(lambda: only_run(store), "the run is created", proc)
        wait_for(lambda: epochs_logged(store, run_id) >= 1, "epoch 1", proc)
        pause_mid_epoch(store, run_id, proc)
        kill_and_see_it_crashed(store, run_id, proc)
    finally:
        proc.kill()

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "tiller", "resume", run_id, "--runs-dir", str(runs_dir)]
    resumes = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [(r.returncode, out, err) for r in resumes for out, err in [r.communicate(timeout=300)]]

    trained = [o for o in outputs if f"run {run_id} resumed at epoch" in o[1]]
    assert len(trained) == 1, outputs
    assert trained[0][0] == 0, outputs
    (code, out, err), = [o for o in outputs if o is not trained[0]]
    # Nearly always the lock refuses it; a resume held up until the winner had reopened (or
    # even finished) the run finds it running (nothing to do) or finished.
    assert (code == 2 and f"cannot resume: run {run_id} is held by pid" in err) \
        or (code == 0 and f"run {run_id} is already running" in out) \
        or (code == 2 and f"cannot resume: run {run_id} finished" in err), outputs
    assert "Traceback" not in err
    assert len(resumed_events(store, run_id)) == 1
    assert store.run(run_id)["status"] == "finished"
    assert epochs_by_series(store, run_id) == {key: [1, 2, 3] for key in SERIES}


def test_a_worker_forked_by_the_holder_does_not_keep_the_run_after_the_holder_dies(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_RUN_WITH_A_FORKED_WORKER, str(tmp_path)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    worker = int(holder.stdout.readline())
    try:
        store = Store(tmp_path)
        with pytest.raises(RunOwned):
            store.reopen_run("held")
        holder.kill()
        holder.wait()
        os.kill(worker, 0)  # the worker lives on, as an orphan
        with store.reopen_run("held") as run:
            assert read_holder(run.dir).pid == os.getpid()
    finally:
        holder.kill()
        os.kill(worker, signal.SIGKILL)
