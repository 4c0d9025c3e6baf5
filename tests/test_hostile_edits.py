"""Live config files built to break the readers: each is a ConfigError that says what and where,
never another exception, a hang or a dead watcher; a slow in-place save is never lost."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiller.store import Store
from tiller.trainer.steering.config import ConfigError, TrainConfig
from tiller.trainer.steering.live_config import (
    MAX_NESTING,
    decode_live_file,
    keep_rejected,
    parse_live_file,
    pending_edit,
    read_live_bytes,
    read_live_file,
    render_live_file,
    request_change,
    request_control,
    write_atomic,
)
from tiller.trainer.steering.steer import Steering
from tiller.trainer.steering.watcher import ConfigWatcher

CURRENT = TrainConfig(num_epochs=10)
GOOD = render_live_file(CURRENT.model_dump())

# What Python's json module takes (or chokes on) that no config holds, and what the message must say.
HOSTILE = {
    "a 5,000-digit integer": ('{"learning_rate":\n  ' + "1" * 5000 + "}",
                              "111111111111111111111111… at line 2, column 3: a number of 5,000 digits"),
    "deep nesting": ('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}",
                     f"nested more than {MAX_NESTING} levels deep at line 1, column 26"),
    "deep objects": ('{"class_weights": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}",
                     f"nested more than {MAX_NESTING} levels deep at line 1, column"),
    "1e999": ('{"learning_rate": 1e999}', "1e999 at line 1, column 19: too large for a number"),
    "NaN": ('{"dropout_rate": NaN}', "NaN at line 1, column 18: JSON has no NaN"),
    "-Infinity": ('{"weight_decay": -Infinity}', "-Infinity at line 1, column 18: JSON has no -Infinity"),
    "a lone surrogate key": ('{"\\ud800": 1}', "a key holds a lone surrogate escape"),
    "a lone surrogate reason": ('{"_change": {"source": "user", "reason": "x\\udfff"}}',
                                "_change.reason: the text holds a lone surrogate escape"),
}


@pytest.fixture
def path(tmp_path):
    path = tmp_path / "config.json"
    write_atomic(path, GOOD)
    return path


def within(seconds: float, action):
    """``action()``'s result, failing the test if it does not return in time (a reader blocked on a pipe)."""
    result: list = []
    worker = threading.Thread(target=lambda: result.append(action()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still blocked after {seconds} s"
    return result[0]


# ------------------------------------------------------------------ decoding

@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_file_is_a_config_error_saying_what_and_where(name):
    text, message = HOSTILE[name]
    with pytest.raises(ConfigError) as refused:
        decode_live_file(text.encode())
    assert message in str(refused.value)
    assert len(str(refused.value)) < 300  # a 5,000-digit number is not echoed whole


def test_what_a_config_holds_still_parses():
    nested = {"class_weights": {"cat": 2.0}, "_change": {"source": "user", "reason": "[[[[ {{{{ 1e999 NaN"}}
    live = parse_live_file(json.dumps({**CURRENT.model_dump(), **nested, "seed": 10**300}))
    assert live.values["seed"] == 10**300 and live.note.reason == "[[[[ {{{{ 1e999 NaN"
    assert parse_live_file('{"x": ' + "[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1) + "}").values


JSON_PIECES = st.sampled_from(['{', '}', '[', ']', '"', '\\', ':', ',', '1' * 5000, '1e999', 'NaN', '-Infinity',
                               '\\ud800', '"control"', '"stop"', '0.5', ' ', '\n', 'true', 'null', '"a"'])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), st.lists(JSON_PIECES, max_size=60).map(lambda p: "".join(p).encode())))
def test_any_bytes_are_a_live_file_or_a_config_error(raw):
    try:
        decode_live_file(raw)
    except ConfigError:
        pass


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=3000), st.sampled_from(["[", '{"k": ']))
def test_any_depth_is_a_live_file_or_a_config_error(depth, opener):
    closer = "]" if opener == "[" else "}"
    try:
        decode_live_file(('{"x": ' + opener * depth + "1" + closer * depth + "}").encode())
    except ConfigError:
        pass


# ------------------------------------------------------------- the readers

@pytest.mark.parametrize("name", HOSTILE)
def test_readers_take_a_hostile_file_as_a_bad_edit_standing(path, name):
    text, message = HOSTILE[name]
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    assert message in pending_edit(path, CURRENT.model_dump())["error"]  # the Run page and the advisor panel
    assert read_live_file(path, fallback=CURRENT.model_dump()).values == CURRENT.model_dump()
    # tiller pause, the dashboard's Pause, tiller resume's "run": sent, and the bad edit kept, not dropped
    set_aside = request_control(path, "pause", fallback=CURRENT.model_dump())
    assert message in set_aside.problem
    assert set_aside.kept.read_bytes() == text.encode("utf-8", "surrogatepass")
    assert read_live_file(path).control == "pause"


def make_folder(path):
    path.unlink()
    path.mkdir()
    (path / "inside.txt").write_text("kept with the folder")


def make_pipe(path):
    path.unlink()
    os.mkfifo(path)


def link_to_dev_zero(path):
    path.unlink()
    path.symlink_to("/dev/zero")


def link_to_itself(path):
    path.unlink()
    path.symlink_to(path.name)


NOT_FILES = {"folder": (make_folder, "is a folder, not a config file"),
             "named pipe": (make_pipe, "is a named pipe, not a config file"),
             "/dev/zero": (link_to_dev_zero, "(a symlink to /dev/zero) is a device, not a config file"),
             "symlink loop": (link_to_itself, "cannot be read (Too many levels of symbolic links)")}


@pytest.mark.parametrize("name", NOT_FILES)
def test_a_live_file_that_is_no_file_is_refused_without_blocking_and_kept_as_it_is(path, name):
    make, message = NOT_FILES[name]
    watcher = ConfigWatcher(path)
    make(path)
    assert message in within(5, lambda: pending_edit(path, CURRENT.model_dump()))["error"]
    with pytest.raises(ConfigError, match="not a config file|cannot be read"):
        decode_live_file(within(5, watcher.take_edit))
    within(5, watcher.refresh_control)
    assert watcher.control == "run"
    with pytest.raises(ConfigError):
        read_live_file(path)
    set_aside = within(5, lambda: request_control(path, "stop", fallback=CURRENT.model_dump()))
    assert message in set_aside.problem
    assert set_aside.kept.is_symlink() or set_aside.kept.is_dir() or set_aside.kept.is_fifo()  # the thing itself
    assert read_live_file(path).control == "stop"


# Root reads every file; without the capabilities that let it, it meets a mode-000 file as anyone would.
AS_ORDINARY_READER = (["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                       "--inh-caps=-dac_override,-dac_read_search"] if os.geteuid() == 0 else [])


@pytest.mark.skipif(AS_ORDINARY_READER and not shutil.which("setpriv"), reason="root, and no setpriv to drop its reach")
def test_an_unreadable_file_is_a_bad_edit_standing(path):
    path.write_text('{"learning_rate": 0.5, "control": "stop"}')
    path.chmod(0)
    script = ("import sys; from pathlib import Path; from tiller.trainer.steering.live_config import pending_edit, read_live_file, "
              "request_control; p = Path(sys.argv[1]); print(pending_edit(p, {})['error']); "
              "print(read_live_file(p, fallback={'learning_rate': 0.1}).values); "
              "s = request_control(p, 'pause', fallback={'learning_rate': 0.1}); print(s.kept.name, s.problem)")
    done = subprocess.run([*AS_ORDINARY_READER, sys.executable, "-c", script, str(path)], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    error, fallback, kept = done.stdout.splitlines()
    assert error == f"{path} cannot be read (Permission denied); make it readable or save the config again"
    assert fallback == "{'learning_rate': 0.1}"
    assert kept.startswith("config.rejected-") and "Permission denied" in kept
    assert (path.parent / kept.split()[0]).stat().st_mode & 0o777 == 0  # the very file, kept as it was
    assert json.loads(path.read_text())["control"] == "pause"


# --------------------------------------------------------------- the watcher

def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("name", ["a 5,000-digit integer", "deep nesting"])
def test_the_watcher_outlives_a_hostile_file_and_stop_still_gets_through(path, name):
    with ConfigWatcher(path) as watcher:
        path.write_text(HOSTILE[name][0])  # rewritten in place: several events, each reads the file
        assert wait_until(lambda: watcher.events_handled > 0)
        time.sleep(1)  # the bad content stands a while
        assert watcher.control == "run"
        request_control(path, "stop", fallback=CURRENT.model_dump())
        assert wait_until(lambda: watcher.control == "stop")
        assert watcher.callback_errors == 0


def test_an_exception_in_the_watcher_callback_does_not_end_the_watcher(path, monkeypatch):
    with ConfigWatcher(path) as watcher:
        original, failures = watcher.refresh_control, []

        def fail_once():
            if not failures:
                failures.append(1)
                raise RuntimeError("a bug in reading the file")
            original()

        monkeypatch.setattr(watcher, "refresh_control", fail_once)
        request_control(path, "pause")
        assert wait_until(lambda: failures)
        time.sleep(0.3)
        request_control(path, "stop")
        assert wait_until(lambda: watcher.control == "stop")
        assert watcher.callback_errors == 1 and "RuntimeError: a bug in reading the file" in watcher.last_callback_error


# ------------------------------------------------- a slow save, at the boundary

@pytest.fixture
def steering(tmp_path):
    store = Store(tmp_path / "runs")
    run = store.start_run(model="mlp", dataset="digits")
    write_atomic(run.dir / "config.json", GOOD)
    steering = Steering(run, CURRENT, say=lambda message: None)
    return steering, store, run


def events(store, run, level):
    return store.events(run.id).query(f"level == '{level}'")["message"].tolist()


def half_then_rest(steering, epoch, rest_before=lambda: None):
    """An in-place save cut by a boundary: truncate, half the edit, the boundary, ``rest_before()``, the rest."""
    edit = json.dumps({"learning_rate": 0.05, "_change": {"source": "user", "reason": "slow editor"}}, indent=2)
    with open(steering.path, "r+", encoding="utf-8") as handle:  # the same inode, as many editors save
        handle.truncate(0)
        handle.write(edit[:20])
        handle.flush()
        time.sleep(0.01)  # a later mtime than the last save, as a boundary would see it
        assert steering.next_change(epoch) is None  # rejected: not valid JSON
        rest_before()
        handle.write(edit[20:])
    return edit


def test_a_save_still_going_on_at_the_boundary_is_applied_at_the_next(steering):
    steering, store, run = steering
    half_then_rest(steering, 2)
    (rejected,) = events(store, run, "error")
    assert "not valid JSON" in rejected and "kept as config.rejected-" in rejected
    change = steering.next_change(3)
    assert change is not None and change.diff == {"learning_rate": [CURRENT.learning_rate, 0.05]}
    assert change.note.reason == "slow editor"
    assert "was written to after it was read (a save still going on); it is the live config file again" \
        in events(store, run, "info")[-1]
    assert not list(steering.path.parent.glob("config.rejected-*"))  # taken back, not left behind


def test_a_save_completed_after_a_newer_save_is_kept_and_reported(steering):
    steering, store, run = steering
    newer = render_live_file({**CURRENT.model_dump(), "learning_rate": 0.2})
    half_then_rest(steering, 2, rest_before=lambda: write_atomic(steering.path, newer))
    change = steering.next_change(3)
    assert change.diff == {"learning_rate": [CURRENT.learning_rate, 0.2]}  # the newer save counts
    (warning,) = events(store, run, "warning")
    (kept,) = steering.path.parent.glob("config.rejected-*")
    assert f"so that newer save counts. What was written is kept in {kept.name}" in warning
    assert json.loads(kept.read_text())["learning_rate"] == 0.05  # the whole slow save, on disk


def test_a_rejected_edit_nobody_writes_to_again_stays_kept(steering):
    steering, store, run = steering
    steering.path.write_text('{"learning_rate": ')
    assert steering.next_change(2) is None
    (kept,) = steering.path.parent.glob("config.rejected-*")
    for epoch in (3, 4):
        assert steering.next_change(epoch) is None
    assert kept.read_text() == '{"learning_rate": ' and len(events(store, run, "error")) == 1
    assert read_live_file(steering.path).values == CURRENT.model_dump()


def test_keep_rejected_renames_the_file_read_and_copies_a_file_saved_since(path):
    path.write_text('{"bad": ')
    raw = read_live_bytes(path)
    inode = path.stat().st_ino
    kept = keep_rejected(path, raw)
    assert kept.stat().st_ino == inode and not path.exists()
    path.write_text('{"bad": ')
    raw = read_live_bytes(path)
    request_change(path, {"learning_rate": 0.2}, source="user", fallback=CURRENT.model_dump())  # a newer save
    kept = keep_rejected(path, raw)
    assert kept.read_text() == '{"bad": ' and read_live_file(path).values["learning_rate"] == 0.2
