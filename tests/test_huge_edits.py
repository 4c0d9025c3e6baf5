"""A live config file far over the size limit: refused by its size, never read whole, kept by a rename."""

import json
import os
import tracemalloc
from pathlib import Path

import pytest

from tiller.trainer.steering.config import ConfigError, TrainConfig
from tiller.trainer.steering.live_config import (
    MAX_LIVE_FILE_BYTES,
    keep_rejected,
    parse_live_file,
    pending_edit,
    read_live_file,
    render_live_file,
    request_control,
    write_atomic,
)
from tiller.trainer.steering.review import decode_edit
from tiller.trainer.steering.watcher import ConfigWatcher

HUGE = 50 * 2**20
JSON_START = b'{"learning_rate": 0.5, "control": "pause", "notes": "'
# Reading at most the limit plus one byte, and the little else each step needs.
MEMORY_BOUND = 3 * MAX_LIVE_FILE_BYTES
CURRENT = TrainConfig(num_epochs=10).model_dump()


def write_huge(path: Path, size: int = HUGE) -> int:
    """A sparse file that starts as valid JSON and goes on for ``size`` bytes; returns its inode."""
    with open(path, "wb") as handle:
        handle.write(JSON_START)
        handle.truncate(size)
    return path.stat().st_ino


def one_byte_over(control: str = "pause") -> bytes:
    """A valid config, padded with spaces to one byte more than the limit."""
    text = json.dumps({**CURRENT, "control": control}).encode()
    return text + b" " * (MAX_LIVE_FILE_BYTES + 1 - len(text))


def peak_memory(action):
    """``action()`` and the most memory Python allocated while it ran."""
    tracemalloc.start()
    try:
        result = action()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture
def path(tmp_path):
    path = tmp_path / "config.json"
    write_atomic(path, render_live_file(CURRENT))
    return path


# ------------------------------------------------------------------ decoding

def test_one_byte_over_the_limit_is_refused_with_its_size_and_the_limit():
    raw = one_byte_over()
    with pytest.raises(ConfigError) as refused:
        decode_edit(raw)
    assert "1.0 MiB (1,048,577 bytes), over the limit of a live config file, 1.0 MiB (1,048,576 bytes)" \
        in str(refused.value)
    assert decode_edit(raw[:-1]).control == "pause"  # exactly at the limit is still a config


# ---------------------------------------------------------------- the watcher

def test_take_edit_of_a_huge_file_reads_no_more_than_the_limit_and_says_where(path):
    watcher = ConfigWatcher(path)
    write_huge(path)
    raw, peak = peak_memory(watcher.take_edit)
    assert len(raw) == MAX_LIVE_FILE_BYTES + 1 and raw.startswith(JSON_START)
    assert peak < MEMORY_BOUND
    with pytest.raises(ConfigError) as refused:
        decode_edit(raw)
    assert f"{path.resolve()} is 50.0 MiB (52,428,800 bytes), over the limit" in str(refused.value)


def test_take_edit_of_one_byte_over_is_refused(path):
    watcher = ConfigWatcher(path)
    path.write_bytes(one_byte_over())
    with pytest.raises(ConfigError, match=r"config\.json is 1\.0 MiB \(1,048,577 bytes\)"):
        decode_edit(watcher.take_edit())


def test_refresh_control_keeps_the_last_control_when_the_file_is_over_the_limit(path):
    watcher = ConfigWatcher(path)
    path.write_bytes(one_byte_over(control="pause"))  # a good "pause", but in a file too big to be read
    watcher.refresh_control()
    assert watcher.control == "run"
    write_atomic(path, render_live_file(CURRENT, "pause"))
    watcher.refresh_control()
    assert watcher.control == "pause"
    write_huge(path)
    _, peak = peak_memory(watcher.refresh_control)
    assert watcher.control == "pause" and peak < MEMORY_BOUND


# --------------------------------------------------- the dashboard's readers

def test_pending_edit_of_a_huge_file_is_an_error_with_its_size(path):
    write_huge(path)
    pending, peak = peak_memory(lambda: pending_edit(path, CURRENT))
    assert peak < MEMORY_BOUND
    assert pending == {"error": f"{path} is 50.0 MiB (52,428,800 bytes), over the limit of a live config "
                                f"file, 1.0 MiB (1,048,576 bytes); a whole config is about 2 KB"}


def test_read_live_file_falls_back_on_a_huge_file_without_reading_it(path):
    write_huge(path)
    live, peak = peak_memory(lambda: read_live_file(path, fallback=CURRENT))
    assert live.values == CURRENT and peak < MEMORY_BOUND
    path.write_bytes(one_byte_over(control="stop"))
    assert read_live_file(path, fallback=CURRENT).control == "run"


# ------------------------------------------------------------------- keeping

def test_a_huge_rejected_edit_is_kept_by_renaming_the_file_not_by_copying_it(path):
    watcher = ConfigWatcher(path)
    inode = write_huge(path)
    raw = watcher.take_edit()
    kept, peak = peak_memory(lambda: keep_rejected(path, raw))
    assert peak < MEMORY_BOUND
    assert kept.name.startswith("config.rejected-") and kept.parent == path.parent
    assert kept.stat().st_ino == inode and kept.stat().st_size == HUGE  # the very file, all of it
    assert not path.exists()  # the loop's restore_file writes the config in force here next


def test_a_huge_edit_replaced_before_it_is_kept_leaves_the_newer_save_in_place(path):
    watcher = ConfigWatcher(path)
    write_huge(path)
    raw = watcher.take_edit()
    write_atomic(path, render_live_file(CURRENT, "stop"))  # a newer save lands between the boundary's read and the keeping
    newer = path.read_bytes()
    kept, peak = peak_memory(lambda: keep_rejected(path, raw))
    assert path.read_bytes() == newer  # the next boundary's edit
    assert kept.read_bytes().startswith(JSON_START)
    assert kept.stat().st_size == MAX_LIVE_FILE_BYTES + 1 and peak < MEMORY_BOUND  # all that was read of it


# --------------------------------------------------------- a real trainer

def test_a_huge_file_saved_into_a_live_run_is_refused_kept_and_training_goes_on(tmp_path):
    from tests.test_live_steering import epochs_logged, lr_by_epoch, start_and_finish_epoch_1, wait_for

    proc, store, run_id, config_path = start_and_finish_epoch_1(tmp_path / "runs", "num_epochs=200",
                                                                "learning_rate=0.001")
    staged = config_path.with_name("huge.tmp")
    inode = write_huge(staged)
    os.replace(staged, config_path)  # saved at once: no boundary can see it half-made

    def errors() -> list[str]:
        return store.events(run_id).query("level == 'error'")["message"].tolist()

    message = wait_for(errors, "the rejection event", proc)[0]
    assert "50.0 MiB (52,428,800 bytes), over the limit of a live config file, 1.0 MiB" in message
    assert str(config_path.resolve()) in message
    kept = list(config_path.parent.glob("config.rejected-*.json"))
    assert len(kept) == 1 and f"kept as {kept[0].name}" in message
    assert kept[0].stat().st_ino == inode and kept[0].stat().st_size == HUGE
    wait_for(lambda: config_path.exists() and config_path.stat().st_size < 10_000, "the live file is restored", proc)
    assert parse_live_file(config_path.read_text()).values["learning_rate"] == 0.001

    rejected_at = epochs_logged(store, run_id)
    wait_for(lambda: epochs_logged(store, run_id) >= rejected_at + 2, "two more epochs", proc)
    request_control(config_path, "stop")
    assert proc.wait(timeout=60) == 0, proc.stdout.read()
    assert store.run(run_id)["status"] == "stopped"
    assert len(store.config_versions(run_id)) == 1  # the old config, untouched
    assert all(lr == pytest.approx(0.001) for lr in lr_by_epoch(store, run_id).values())
    assert len(errors()) == 1
