import threading
import time

import pytest

from tiller.trainer.steering.live_config import render_live_file, request_control, write_atomic
from tiller.trainer.steering.watcher import ConfigWatcher


def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def path(tmp_path):
    path = tmp_path / "config.json"
    write_atomic(path, render_live_file({"learning_rate": 0.1}))
    return path


def test_control_changes_are_seen_at_once(path):
    with ConfigWatcher(path) as watcher:
        request_control(path, "pause")
        assert wait_until(lambda: watcher.control == "pause")
        request_control(path, "stop")
        assert wait_until(lambda: watcher.control == "stop")


def test_reading_the_file_does_not_feed_back(path):
    # Reading the file raises inotify open/close events; reacting to those by
    # reading again once spun a core and slowed training tenfold.
    with ConfigWatcher(path) as watcher:
        request_control(path, "pause")
        assert wait_until(lambda: watcher.control == "pause")
        time.sleep(0.3)
        settled = watcher.events_handled
        time.sleep(0.7)
        assert watcher.events_handled == settled
        assert settled <= 5


def test_take_edit_returns_the_last_content_once(tmp_path):
    path = tmp_path / "config.json"
    write_atomic(path, "{}")
    with ConfigWatcher(path) as watcher:
        assert watcher.take_edit() is None
        for n in range(20):  # a save storm
            path.write_text(f'{{"n": {n}}}')
        assert wait_until(lambda: watcher.events_handled > 0)
        assert watcher.take_edit() == b'{"n": 19}'
        time.sleep(0.2)
        watcher.take_edit()  # late notifications of the same storm
        assert watcher.take_edit() is None


def test_edit_noticed_without_notifications(tmp_path):
    path = tmp_path / "config.json"
    write_atomic(path, "{}")
    watcher = ConfigWatcher(path)  # never started: no notifications at all
    time.sleep(0.01)
    path.write_text('{"learning_rate": 0.5}')
    assert watcher.take_edit() == b'{"learning_rate": 0.5}'


def test_wait_for_edit_returns_once_an_edit_is_flagged(path):
    with ConfigWatcher(path) as watcher:
        assert not watcher.wait_for_edit(timeout=0.05)  # nothing written yet
        request_control(path, "pause")
        assert watcher.wait_for_edit(timeout=5)
        assert watcher.wait_for_edit(timeout=0)  # waiting does not take the edit
        time.sleep(0.2)  # let the write's last notifications arrive
        assert watcher.take_edit() is not None
        assert not watcher.wait_for_edit(timeout=0.05)


def test_a_paused_trainer_wakes_as_soon_as_resume_is_saved(path):
    request_control(path, "pause")
    with ConfigWatcher(path) as watcher:
        woke = []
        waiter = threading.Thread(target=lambda: (watcher.wait_for_notification(60), woke.append(watcher.control)))
        waiter.start()
        time.sleep(0.2)  # the waiter is asleep
        request_control(path, "run")
        waiter.join(timeout=10)  # without the notification it would sleep out its 60 s
        assert not waiter.is_alive() and woke == ["run"]


def test_waiting_without_notifications_still_rereads_control(path):
    watcher = ConfigWatcher(path)  # never started: no notifications arrive, as on a network mount
    request_control(path, "pause")
    watcher.wait_for_notification(0.05)
    assert watcher.control == "pause"
