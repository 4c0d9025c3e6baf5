"""A real trainer process meets live config files built to break it, and a save cut by an epoch boundary."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_live_steering import ROOT, epochs_logged, lr_by_epoch, start_and_finish_epoch_1, wait_for
from tiller.trainer.steering.live_config import parse_live_file, request_control

WAIT_S = 30  # an epoch lasts about a second; anything that needs more has gone wrong


def tiller(runs_dir: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tiller", *argv, "--runs-dir", str(runs_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def errors(store, run_id) -> list[str]:
    return store.events(run_id).query("level == 'error'").sort_values("time")["message"].tolist()


def save_text(text: str):
    def save(path: Path) -> None:  # as an editor that saves atomically would
        staged = path.with_name("staged.tmp")
        staged.write_text(text, encoding="utf-8")
        os.replace(staged, path)
    return save


def save_folder(path: Path) -> None:
    while True:  # a boundary may write the file back between the two steps
        path.unlink(missing_ok=True)
        try:
            path.mkdir()
            return
        except FileExistsError:
            continue


def save_pipe(path: Path) -> None:
    staged = path.with_name("staged.tmp")
    os.mkfifo(staged)
    os.replace(staged, path)


def save_link_to_dev_zero(path: Path) -> None:
    staged = path.with_name("staged.tmp")
    staged.symlink_to("/dev/zero")
    os.replace(staged, path)


HOSTILE_SAVES = [
    (save_text('{"learning_rate": ' + "1" * 5000 + "}"), "a number of 5,000 digits"),
    (save_text('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}"), "nested more than 20 levels deep at line 1, column 26"),
    (save_text('{"learning_rate": NaN}'), "NaN at line 1, column 19: JSON has no NaN"),
    (save_text('{"\\ud800": 1}'), "a key holds a lone surrogate escape"),
    (save_folder, "config.json is a folder, not a config file"),
    (save_pipe, "config.json is a named pipe, not a config file"),
    (save_link_to_dev_zero, "config.json (a symlink to /dev/zero) is a device, not a config file"),
]


def test_hostile_files_saved_into_a_live_run_are_refused_kept_and_stop_still_works(tmp_path):
    proc, store, run_id, config_path = start_and_finish_epoch_1(tmp_path / "runs", "num_epochs=500",
                                                                "learning_rate=0.001")
    for n, (save, what) in enumerate(HOSTILE_SAVES, start=1):
        save(config_path)
        message = wait_for(lambda: errors(store, run_id)[n - 1:], f"the rejection of {what}", proc, WAIT_S)[0]
        assert what in message and "Training goes on with the last good config" in message
        assert "kept as config.rejected-" in message
        wait_for(lambda: config_path.is_file() and not config_path.is_symlink()
                 and parse_live_file(config_path.read_text()).values["learning_rate"] == 0.001,
                 "the live file is restored", proc, WAIT_S)
    kept = sorted(config_path.parent.glob("config.rejected-*.json"))
    assert len(kept) == len(HOSTILE_SAVES)
    assert sum(p.is_dir() for p in kept) == 1 and sum(p.is_fifo() for p in kept) == 1  # kept as they were
    assert sum(p.is_symlink() for p in kept) == 1

    at = epochs_logged(store, run_id)
    wait_for(lambda: epochs_logged(store, run_id) >= at + 1, "training goes on", proc, WAIT_S)
    request_control(config_path, "stop")
    assert proc.wait(timeout=WAIT_S) == 0, proc.stdout.read()
    assert store.run(run_id)["status"] == "stopped"
    assert len(store.config_versions(run_id)) == 1
    assert all(lr == pytest.approx(0.001) for lr in lr_by_epoch(store, run_id).values())


def test_pause_resume_and_stop_from_the_cli_get_through_a_bad_file_standing(tmp_path):
    runs_dir = tmp_path / "runs"
    proc, store, run_id, config_path = start_and_finish_epoch_1(runs_dir, "num_epochs=500")
    assert tiller(runs_dir, "pause", run_id).returncode == 0
    wait_for(lambda: store.run(run_id)["status"] == "paused", "the pause", proc, WAIT_S)

    # A paused run reaches no boundary: the bad file stands, and the watcher reads it on every save.
    config_path.write_text('{"learning_rate": ' + "1" * 5000 + ', "control": "pause"}')
    time.sleep(1.5)
    resumed = tiller(runs_dir, "resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert "a number of 5,000 digits" in resumed.stderr and "it is kept as config.rejected-" in resumed.stderr
    wait_for(lambda: store.run(run_id)["status"] == "running", "the resume", proc, WAIT_S)
    at = epochs_logged(store, run_id)
    wait_for(lambda: epochs_logged(store, run_id) >= at + 1, "training goes on", proc, WAIT_S)

    # Paused again, so that no epoch boundary sets the folder aside before the CLI meets it.
    assert tiller(runs_dir, "pause", run_id).returncode == 0
    wait_for(lambda: store.run(run_id)["status"] == "paused", "the second pause", proc, WAIT_S)
    save_folder(config_path)
    stopped = tiller(runs_dir, "stop", run_id)
    assert stopped.returncode == 0 and "is a folder, not a config file" in stopped.stderr, stopped.stderr
    assert proc.wait(timeout=WAIT_S) == 0, proc.stdout.read()
    assert store.run(run_id)["status"] == "stopped"

    # `tiller resume` of the stopped run, with a bad file standing: it trains on.
    config_path.write_text('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    stopped_at = epochs_logged(store, run_id)
    resume = subprocess.Popen([sys.executable, "-m", "tiller", "resume", run_id, "--runs-dir", str(runs_dir)],
                              cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: epochs_logged(store, run_id) > stopped_at, "the resumed run trains", resume, WAIT_S * 2)
    request_control(config_path, "stop")
    assert resume.wait(timeout=WAIT_S) == 0, resume.stdout.read()
    assert store.run(run_id)["status"] == "stopped"
    assert len(list(config_path.parent.glob("config.rejected-*.json"))) == 3  # the number, the folder, the nesting


def test_an_in_place_save_cut_by_an_epoch_boundary_is_applied_not_lost(tmp_path):
    proc, store, run_id, config_path = start_and_finish_epoch_1(tmp_path / "runs", "num_epochs=500",
                                                                "learning_rate=0.001")
    edit = json.dumps({"learning_rate": 0.05, "_change": {"source": "user", "reason": "slow editor"}}, indent=2)
    with open(config_path, "r+", encoding="utf-8") as handle:  # the same inode, as many editors save
        handle.truncate(0)
        handle.write(edit[:25])
        handle.flush()
        wait_for(lambda: errors(store, run_id), "the half file is rejected", proc, WAIT_S)
        at = epochs_logged(store, run_id)
        wait_for(lambda: epochs_logged(store, run_id) >= at + 1, "another epoch boundary", proc, WAIT_S)
        handle.write(edit[25:])
    assert "not valid JSON" in errors(store, run_id)[0]

    wait_for(lambda: len(store.config_versions(run_id)) == 2, "the completed edit is applied", proc, WAIT_S)
    applied = store.config_versions(run_id).iloc[1]
    assert applied["diff"] == {"learning_rate": [0.001, 0.05]}
    assert (applied["source"], applied["reason"]) == ("user", "slow editor")
    infos = " ".join(store.events(run_id).query("level == 'info'")["message"])
    assert "was written to after it was read (a save still going on); it is the live config file again" in infos
    assert not list(config_path.parent.glob("config.rejected-*.json"))
    took_effect = int(applied["epoch"])
    wait_for(lambda: epochs_logged(store, run_id) >= took_effect, "an epoch at the new lr", proc, WAIT_S)
    request_control(config_path, "stop")
    assert proc.wait(timeout=WAIT_S) == 0, proc.stdout.read()
    assert lr_by_epoch(store, run_id)[took_effect] == pytest.approx(0.05)
