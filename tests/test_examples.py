"""Every example config runs to completion offline, on built-in or sample data."""

import json
from pathlib import Path

import pytest

from tiller.store import Store
from tiller.trainer.cli.commands import load_config_file, main
from tiller.trainer.steering.config import validate_config
from tiller.trainer.engine.loop import train

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_a_valid_config(path):
    validate_config(load_config_file(path))


def test_digits_mlp_reaches_95_percent_in_5_epochs(tmp_path):
    config = validate_config(json.loads((EXAMPLES_DIR / "digits_mlp.json").read_text()))
    store = Store(tmp_path)
    run_id = train(config, store, say=lambda message: None)
    val = store.metrics([run_id], names=["accuracy"], splits=["val"])
    assert val["epoch"].max() == 5
    assert val["value"].max() >= 0.95


@pytest.fixture(scope="module")
def playground(tmp_path_factory):
    """A folder holding ``sample-data/``, where the examples' relative data_dir paths lead."""
    root = tmp_path_factory.mktemp("playground")
    main(["make-sample-data", str(root / "sample-data")])
    return root


@pytest.mark.parametrize("name", ["lung_effnet", "mobilenetv3_defects", "imdb_text"])
def test_sample_data_example_runs_to_completion(name, playground, monkeypatch):
    monkeypatch.chdir(playground)
    config = validate_config(load_config_file(EXAMPLES_DIR / f"{name}.json"))
    store = Store(playground / "runs")
    run_id = train(config, store, say=lambda message: None)
    run = store.run(run_id)
    assert run["status"] == "finished"
    events = " ".join(store.events(run_id)["message"])
    stopped_early = "Early stopping after epoch" in events
    assert run["epoch"] == config.num_epochs or stopped_early, events
    last = store.prediction_epochs(run_id)[-1]
    predictions = store.predictions(run_id, last)
    assert predictions.probs.shape == (len(predictions.labels), len(predictions.class_names))
    if name == "imdb_text":
        assert predictions.task == "binary" and predictions.class_names == ["negative", "positive"]
        assert store.run(run_id)["best_val_accuracy"] > 0.7  # learns, on 800 synthetic reviews
    if name == "mobilenetv3_defects":
        assert set(predictions.class_names) == {"划痕", "污点", "缺失", "变形", "异物"}  # seed 003's classes
    if name == "lung_effnet":
        assert "corrupt_example.jpg" in events  # the unreadable sample file is reported, not fatal
