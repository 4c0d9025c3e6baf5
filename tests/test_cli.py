import json

import pytest

from tiller.store import Store
from tiller.trainer.cli.commands import main, parse_assignment
from tiller.trainer.steering.live_config import parse_live_file


def run_cli(capsys, *argv):
    main(list(argv))
    return capsys.readouterr().out


@pytest.fixture
def trained(tmp_path, capsys):
    runs = tmp_path / "runs"
    run_cli(capsys, "train", "--runs-dir", str(runs), "--set", "num_epochs=2", "--name", "tiny")
    return runs


def test_train_then_runs_and_show(trained, capsys):
    runs = json.loads(run_cli(capsys, "runs", "--runs-dir", str(trained), "--json"))
    assert [(r["name"], r["status"], r["epoch"], r["num_epochs"]) for r in runs] == [("tiny", "finished", 2, 2)]
    text = run_cli(capsys, "runs", "--runs-dir", str(trained))
    assert "tiny" in text and "2/2" in text

    shown = json.loads(run_cli(capsys, "show", "latest", "--runs-dir", str(trained), "--json"))
    assert shown["config"]["num_epochs"] == 2
    assert shown["config_versions"][0]["source"] == "cli"
    assert {m["name"] for m in shown["metrics"]} >= {"loss", "accuracy", "lr", "epoch_seconds", "samples_per_sec"}
    assert shown["events"][0]["message"].startswith("Finished after 2 epochs")
    assert "Config versions:" in run_cli(capsys, "show", runs[0]["id"][:5], "--runs-dir", str(trained))


def test_runs_dir_before_or_after_the_command(trained, capsys):
    assert "tiny" in run_cli(capsys, "--runs-dir", str(trained), "runs")
    assert "tiny" in run_cli(capsys, "runs", "--runs-dir", str(trained))


def test_runs_dir_from_environment(trained, capsys, monkeypatch):
    monkeypatch.setenv("TILLER_RUNS_DIR", str(trained))
    assert "tiny" in run_cli(capsys, "runs")


def test_set_and_control_write_the_live_file(trained, capsys):
    store = Store(trained)
    run_id = store.find_run("latest")
    store.update_run(run_id, status="running")  # as if its trainer (this process) were still going
    try:
        out = run_cli(capsys, "set", "latest", "learning_rate=0.02", "--reason", "why not", "--runs-dir", str(trained))
        assert "applies at the next epoch boundary" in out
        live = parse_live_file((trained / run_id / "config.json").read_text())
        assert live.values["learning_rate"] == 0.02
        assert (live.note.source, live.note.reason) == ("cli", "why not")
        run_cli(capsys, "pause", run_id, "--runs-dir", str(trained))
        assert parse_live_file((trained / run_id / "config.json").read_text()).control == "pause"
    finally:
        store.update_run(run_id, status="finished")


def test_set_refuses_invalid_values_without_writing(trained, capsys):
    run_id = Store(trained).find_run("latest")
    before = (trained / run_id / "config.json").read_text()
    with pytest.raises(SystemExit) as info:
        run_cli(capsys, "set", "latest", "learning_rat=0.02", "--runs-dir", str(trained))
    assert info.value.code == 2
    assert "did you mean 'learning_rate'" in capsys.readouterr().err
    assert (trained / run_id / "config.json").read_text() == before


def test_train_refuses_a_bad_config_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"learning_rate": "fast", "num_epoch": 3}')
    with pytest.raises(SystemExit) as info:
        run_cli(capsys, "train", "--config", str(bad), "--runs-dir", str(tmp_path / "runs"))
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert f"config error in {bad}" in err
    assert "learning_rate: input should be a valid number" in err and "did you mean 'num_epochs'" in err
    assert Store(tmp_path / "runs").runs().empty


def test_unknown_run_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_cli(capsys, "show", "nope", "--runs-dir", str(tmp_path))
    assert "no run matches 'nope'" in capsys.readouterr().err


def test_parse_assignment_reads_json_values():
    assert parse_assignment("learning_rate=1e-3") == ("learning_rate", 0.001)
    assert parse_assignment("model_name=resnet18") == ("model_name", "resnet18")
    assert parse_assignment("flag=true") == ("flag", True)
