import json

import pytest

from tiller.trainer.steering.config import (
    ConfigError,
    TrainConfig,
    describe_keys,
    frozen_keys,
    frozen_violations,
    hot_keys,
    key_bounds,
    validate_config,
)
from tiller.trainer.engine.appliers import APPLIERS


def test_defaults_are_seed_001():
    config = validate_config({})
    assert (config.model_name, config.hidden_size, config.dropout_rate, config.optimizer) == ("mlp", 128, 0.2, "Adam")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"learning_rate": "0.01"}, "learning_rate: input should be a valid number"),
        ({"batch_size": 3.5}, "batch_size: input should be a valid integer"),
        ({"batch_size": True}, "batch_size: input should be a valid integer"),
        ({"learning_rate": -1}, "learning_rate: input should be greater than 0"),
        ({"dropout_rate": 1.0}, "dropout_rate: input should be less than 1"),
        ({"num_epochs": 0}, "num_epochs: input should be greater than or equal to 1"),
        ({"learning_rat": 0.1}, "learning_rat: unknown key; did you mean 'learning_rate'?"),
        ({"optimizer": "Adagrad"}, "optimizer: input should be 'Adam', 'AdamW' or 'SGD'"),
    ],
)
def test_bad_values_are_named(data, message):
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    assert message in str(info.value)


def test_every_problem_is_reported():
    with pytest.raises(ConfigError) as info:
        validate_config({"learning_rate": -1, "batch_size": "x", "nope": 1})
    assert len(info.value.problems) == 3


def test_ints_are_fine_for_floats():
    assert validate_config({"learning_rate": 1}).learning_rate == 1.0


def test_non_object_is_refused():
    with pytest.raises(ConfigError, match="JSON object"):
        validate_config([1, 2])


def test_frozen_keys_cannot_change():
    current = validate_config({})
    (message,) = frozen_violations(current, {"model_name": "resnet18", "learning_rate": 0.1, "seed": 42})
    assert message.startswith("model_name: fixed for the life of the run")


def test_hot_and_frozen_split_covers_every_key():
    assert set(hot_keys()) | set(frozen_keys()) == set(TrainConfig.model_fields)
    assert {"learning_rate", "weight_decay", "batch_size", "num_epochs", "dropout_rate"} <= set(hot_keys())
    assert "model_name" in frozen_keys()


def test_every_hot_key_has_an_applier():
    assert set(hot_keys()) <= set(APPLIERS)


def test_describe_keys_documents_bounds():
    rows = {row["key"]: row for row in describe_keys()}
    assert rows["learning_rate"]["bounds"] == "> 0.0 and <= 10.0"
    assert rows["learning_rate"]["hot"] and not rows["model_name"]["hot"]
    assert key_bounds("batch_size") == {"ge": 1, "le": 65_536}
    json.dumps(describe_keys())  # printable by `tiller keys`


def test_seed_003_config_loads_exactly_as_recorded():
    """Seed 003's file, byte for byte: Windows paths, Chinese class names, its bookkeeping keys."""
    from pathlib import Path

    raw = json.loads((Path(__file__).parent / "fixtures" / "seed003_config.json").read_text(encoding="utf-8"))
    config = validate_config(raw)
    assert config.model_dump(include=set(raw)) == raw  # nothing dropped or coerced
    assert config.data_dir == "E:\\PIC_SLM\\TEST\\OUTPUT2\\dataset"
    assert list(config.class_weights) == ["划痕", "污点", "缺失", "变形", "异物"]
    assert config.model_name == "MobileNetV3" and config.mixed_precision and config.model_ema
