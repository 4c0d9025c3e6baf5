"""``tiller train``'s progress display and ``tiller runs``'s table, in a terminal and out of one."""

import io
import os
import re
import subprocess
import sys

import pytest
from rich.console import Console

from tiller.store import Store
from tiller.trainer.cli import views as cli_views
from tiller.trainer.cli.commands import main
from tiller.trainer.engine.progress import EtaClock, LiveReporter, clock_text

TILLER = [sys.executable, "-m", "tiller"]
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
METRICS = {"train/loss": 0.5, "train/accuracy": 0.8, "val/loss": 0.6, "val/accuracy": 0.75, "lr": 0.001,
           "epoch_seconds": 10.0, "samples_per_sec": 100.0}


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain(text: str) -> str:
    return ESCAPE.sub("", text)


# ---------------------------------------------------------------- not a terminal

def test_train_into_a_pipe_prints_plain_epoch_lines(tmp_path):
    out = subprocess.run([*TILLER, "train", "--runs-dir", str(tmp_path / "runs"), "--set", "num_epochs=3"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("run mlp_")
    assert [line.split("  ")[0] for line in lines[1:]] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all(re.fullmatch(r"epoch \d/3  train loss [\d.]+ acc [\d.]+  val loss .* samples/s", line)
               for line in lines[1:])
    assert "\x1b" not in out and "\r" not in out  # no colours, no bars redrawn in place


# ----------------------------------------------------------------- live display

def live_reporter() -> tuple[LiveReporter, io.StringIO, FakeClock]:
    screen, clock = io.StringIO(), FakeClock()
    console = Console(file=screen, force_terminal=True, width=100, color_system="standard")
    return LiveReporter(console, clock=clock), screen, clock


def train_batches(reporter: LiveReporter, clock: FakeClock, batches: range, seconds_each: float = 1.0) -> None:
    for done in batches:
        reporter.batches_done(done)
        clock.now += seconds_each


def test_live_display_shows_the_epoch_its_batches_and_what_is_left():
    reporter, screen, clock = live_reporter()
    with reporter:
        reporter.say("run r1  (steer it by editing config.json)")
        reporter.epoch_started(1, 3, batches=10)
        train_batches(reporter, clock, range(0, 5))
        reporter.batches_done(5)  # 5 of 10 batches in 5 s: 5 s left in the epoch, 5 + 2 * 10 s in the run
        shown = plain(screen.getvalue())
        assert "epoch 1/3" in shown and "5/10 batches" in shown
        assert "0:05 left in epoch" in shown and "0:25 left in run" in shown
        train_batches(reporter, clock, range(5, 10))
        reporter.validating()
        clock.now += 2  # validation: the epoch took 12 s in all
        reporter.say("epoch 1/3  train loss 0.5000 ...")
        reporter.epoch_finished(1, METRICS)
        assert "validating…" in plain(screen.getvalue())
        assert "after epoch 1:  train loss 0.5000 acc 0.8000   val loss 0.6000 acc 0.7500   lr 0.001" in plain(
            screen.getvalue())
    shown = plain(screen.getvalue())
    assert "run r1  (steer it by editing config.json)\n" in shown  # the kept lines stay plain lines
    assert "epoch 1/3  train loss 0.5000 ...\n" in shown


def test_live_display_follows_a_change_of_num_epochs():
    reporter, screen, clock = live_reporter()
    with reporter:
        reporter.epoch_started(1, 3, batches=10)
        train_batches(reporter, clock, range(0, 11))
        reporter.epoch_finished(1, METRICS)  # an epoch of 11 s
        reporter.epoch_started(2, 5, batches=10)  # num_epochs 3 -> 5 at the boundary
        train_batches(reporter, clock, range(0, 5))
        reporter.batches_done(5)
    shown = plain(screen.getvalue())
    assert "epoch 2/5" in shown
    assert "0:05 left in epoch  0:38 left in run" in shown  # 5 s, then 3 epochs of 11 s


def test_a_pause_is_shown_and_left_out_of_the_estimates():
    reporter, screen, clock = live_reporter()
    with reporter:
        reporter.epoch_started(1, 2, batches=10)
        train_batches(reporter, clock, range(0, 4))
        reporter.batches_done(4)
        reporter.paused("mlp_20261124_012500")
        assert "paused — tiller resume mlp_20261124_012500" in plain(screen.getvalue())
        clock.now += 600  # ten minutes paused
        reporter.resumed()
    assert plain(screen.getvalue()).rstrip().endswith("0:06 left in epoch  0:16 left in run")


def test_eta_clock_before_anything_can_be_estimated():
    clock = FakeClock()
    eta = EtaClock(clock)
    eta.start_epoch()
    assert eta.epoch_left(0, 10) is None and eta.run_left(1, 3, 0, 10) is None
    assert [clock_text(s) for s in (None, 5, 65, 3725)] == ["-:--", "0:05", "1:05", "1:02:05"]


# ------------------------------------------------------------------- tiller runs

@pytest.fixture
def runs_dir(tmp_path):
    """One run in each status, the newest last; one with a long name."""
    store = Store(tmp_path / "runs")
    for status in ("finished", "stopped", "failed", "paused", "running"):
        run_id = store.create_run(model="mlp", dataset="digits", name=f"the {status} one", run_id=f"r_{status}")
        store.update_run(run_id, status=status)
    crashed = store.create_run(model="resnet18", dataset="digits", run_id="r_crashed",
                               name="a very long name that goes on and on, far past what a table column can hold")
    store.update_run(crashed, heartbeat=0.0)  # a running run whose process went silent long ago
    store.add_config_version(crashed, {"model_name": "resnet18", "num_epochs": 40}, source="cli", epoch=1)
    store.close()
    return tmp_path / "runs"


def test_runs_plain_table_lists_every_run_newest_first(runs_dir, capsys):
    main(["runs", "--runs-dir", str(runs_dir)])
    out = capsys.readouterr().out
    assert "\x1b" not in out
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "MODEL", "EPOCH", "BEST", "VAL", "ACC", "UPDATED"]
    ids = [row.split()[0] for row in rows]
    assert ids == ["r_crashed", "r_running", "r_paused", "r_failed", "r_stopped", "r_finished"]
    for row in rows:
        assert row.split()[0].removeprefix("r_") in row.split()  # its status
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d$", row)  # local time, to the minute


def test_runs_terminal_table_colours_statuses_and_cuts_long_names(runs_dir):
    screen = io.StringIO()
    runs = Store(runs_dir).runs()
    cli_views.print_runs(runs, Console(file=screen, force_terminal=True, width=100, color_system="standard"))
    out = screen.getvalue()
    rows = {plain(line).split()[0]: line for line in out.splitlines()[2:]}
    assert list(rows) == ["r_crashed", "r_running", "r_paused", "r_failed", "r_stopped", "r_finished"]
    assert "\x1b[32mrunning" in rows["r_running"]  # green
    assert "\x1b[33mpaused" in rows["r_paused"]  # yellow
    assert "\x1b[31mfailed" in rows["r_failed"] and "\x1b[31mcrashed" in rows["r_crashed"]  # red
    assert "\x1b[90mstopped" in rows["r_stopped"]  # grey
    assert " finished " in rows["r_finished"]  # the default colour: no escape code before it
    assert re.search(r" a very long name that goes on\b.*… ", plain(rows["r_crashed"]))  # one line, ellipsized
    assert all(len(plain(line)) <= 100 for line in out.splitlines())


def test_runs_table_in_a_narrow_terminal_keeps_ids_statuses_and_times_whole(runs_dir):
    screen = io.StringIO()
    cli_views.print_runs(Store(runs_dir).runs(), Console(file=screen, force_terminal=True, width=80))
    lines = [plain(line) for line in screen.getvalue().splitlines()]
    assert len(lines) == 2 + 6 and all(len(line) <= 80 for line in lines)
    assert "r_crashed" in lines[2] and "crashed" in lines[2] and re.search(r"\d\d:\d\d\s*$", lines[2])


def test_runs_into_head_ends_without_a_traceback(runs_dir):
    result = subprocess.run(f"{sys.executable} -m tiller runs --runs-dir {runs_dir} | head -1", shell=True,
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["ID", "NAME", "STATUS", "MODEL", "EPOCH", "BEST", "VAL", "ACC", "UPDATED"]
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


@pytest.mark.parametrize("command", [["runs"], ["show", "latest"]])
def test_a_reader_that_closed_the_pipe_ends_the_command_quietly(runs_dir, command):
    read_end, write_end = os.pipe()
    os.close(read_end)  # as head does once it has its line: every write fails at once
    try:
        result = subprocess.run([*TILLER, *command, "--runs-dir", str(runs_dir)], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 141 and result.stderr == ""
