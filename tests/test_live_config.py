import json

import pytest

from tiller.trainer.steering.config import ConfigError, validate_config
from tiller.trainer.steering.live_config import (
    ChangeNote,
    keep_rejected,
    parse_live_file,
    pending_edit,
    read_live_file,
    render_live_file,
    request_change,
    request_control,
    write_atomic,
)
from tiller.trainer.steering.review import decode_edit, review_edit

CURRENT = validate_config({"num_epochs": 10})


def test_render_and_parse_round_trip():
    note = ChangeNote(source="user", reason="faster", id="abc")
    live = parse_live_file(render_live_file(CURRENT.model_dump(), "pause", note))
    assert live.values == CURRENT.model_dump()
    assert live.control == "pause" and live.note == note


def test_bad_json_names_line_and_column():
    with pytest.raises(ConfigError, match=r"not valid JSON: .* line 2, column"):
        parse_live_file('{"learning_rate": 0.1,\n}')


@pytest.mark.parametrize("text, message", [
    ('{"control": "explode"}', "control: must be one of run, pause, stop"),
    ('{"_change": {"source": "robot"}}', "_change.source: must be one of"),
    ("[1]", "must be a JSON object"),
])
def test_reserved_keys_are_checked(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_live_file(text)


def test_non_utf8_is_refused_clearly():
    with pytest.raises(ConfigError, match="not UTF-8"):
        decode_edit(b'{"learning_rate": "\xff"}')


def test_review_accepts_a_partial_edit_and_reports_the_diff():
    change = review_edit(parse_live_file('{"learning_rate": 0.01}'), CURRENT, epochs_done=2)
    assert change.diff == {"learning_rate": [0.001, 0.01]}
    assert change.config.num_epochs == 10  # untouched keys keep their values
    assert change.note.source == "file"  # a hand edit


def test_review_reports_frozen_and_invalid_keys_together():
    with pytest.raises(ConfigError) as info:
        review_edit(parse_live_file('{"model_name": "resnet18", "dropout_rate": 3}'), CURRENT, 0)
    assert [p.split(":")[0] for p in info.value.problems] == ["model_name", "dropout_rate"]


def test_review_ignores_an_edit_that_changes_nothing():
    assert review_edit(parse_live_file(render_live_file(CURRENT.model_dump(), "pause")), CURRENT, 2) is None


@pytest.mark.parametrize("edit, message", [
    ({"model_name": "resnet18"}, "model_name: fixed for the life of the run"),
    ({"learning_rate": 100}, "learning_rate: input should be less than or equal to 10"),
    ({"num_epochs": 2}, "num_epochs: 2 is below the 3 epochs already trained"),
    ({"batch_size": "big"}, "batch_size: input should be a valid integer"),
])
def test_review_rejects(edit, message):
    with pytest.raises(ConfigError, match=message):
        review_edit(parse_live_file(json.dumps(edit)), CURRENT, epochs_done=3)


def test_write_atomic_leaves_no_temp_files(tmp_path):
    path = tmp_path / "config.json"
    write_atomic(path, "one")
    write_atomic(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_request_change_merges_and_notes_the_source(tmp_path):
    path = tmp_path / "config.json"
    write_atomic(path, render_live_file(CURRENT.model_dump(), "pause"))
    request_change(path, {"learning_rate": 0.05}, source="user", reason="try it")
    live = parse_live_file(path.read_text())
    assert live.values["learning_rate"] == 0.05 and live.values["num_epochs"] == 10
    assert live.control == "pause"  # a change does not resume a paused run
    assert live.note == ChangeNote(source="user", reason="try it", id="")


def test_request_change_falls_back_to_the_last_good_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{broken")
    request_change(path, {"learning_rate": 0.05}, source="cli", fallback=CURRENT.model_dump())
    assert parse_live_file(path.read_text()).values["num_epochs"] == 10


def test_request_control_keeps_a_pending_note(tmp_path):
    path = tmp_path / "config.json"
    request_change(path, {}, source="llm", reason="r", fallback=CURRENT.model_dump())
    request_control(path, "stop")
    live = read_live_file(path)
    assert live.control == "stop" and live.note.source == "llm"
    with pytest.raises(ValueError):
        request_control(path, "explode")


def test_keep_rejected_keeps_bytes_and_never_overwrites(tmp_path):
    path = tmp_path / "config.json"
    first = keep_rejected(path, b"\xffbad")
    second = keep_rejected(path, b"worse")
    assert first != second
    assert first.read_bytes() == b"\xffbad" and second.read_bytes() == b"worse"
    assert first.name.startswith("config.rejected-")


def test_pending_edit_shows_what_is_not_applied_yet(tmp_path):
    path = tmp_path / "config.json"
    config = CURRENT.model_dump()
    write_atomic(path, render_live_file(config))
    assert pending_edit(path, config) is None
    request_change(path, {"learning_rate": 0.5}, source="user")
    assert pending_edit(path, config) == {"changes": {"learning_rate": [0.001, 0.5]}, "control": "run"}
    path.write_text("{oops")
    assert "not valid JSON" in pending_edit(path, config)["error"]
