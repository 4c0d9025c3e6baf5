"""Every example config loads, and the digits MLP recipe reaches its target."""

import json
from pathlib import Path

import pytest

from store import Store
from trainer.cli import load_config_file
from trainer.config import validate_config
from trainer.loop import train

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_a_valid_config(path):
    validate_config(load_config_file(path))


def test_digits_mlp_reaches_95_percent_in_5_epochs(tmp_path):
    config = validate_config(json.loads((EXAMPLES[0].parent / "digits_mlp.json").read_text()))
    store = Store(tmp_path)
    run_id = train(config, store, say=lambda message: None)
    val = store.metrics([run_id], names=["accuracy"], splits=["val"])
    assert val["epoch"].max() == 5
    assert val["value"].max() >= 0.95
