"""Hyperparameter views of the Compare page: which keys qualify, best values, the figures."""

from __future__ import annotations

import pandas as pd
import pytest

from dashboard import hyperparameter_charts as charts


def configs(*overrides: dict) -> dict[str, dict]:
    base = {"learning_rate": 1e-3, "batch_size": 32, "optimizer": "Adam", "nesterov": False, "seed": 42,
            "model_note": "", "metrics": ["accuracy"]}
    return {f"r{i}": {**base, **o} for i, o in enumerate(overrides, start=1)}


def test_hyperparameter_table_offers_differing_numeric_bool_and_choice_keys_only():
    table = charts.hyperparameter_table(configs(
        {"learning_rate": 1e-2, "optimizer": "SGD", "nesterov": True, "model_note": "first", "metrics": ["f1"]},
        {"learning_rate": 1e-4, "model_note": "second"},
        {"batch_size": 64},
    ))
    # seed is the same everywhere; model_note is bookkeeping training ignores; metrics is a list.
    assert list(table.columns) == ["learning_rate", "batch_size", "optimizer", "nesterov"]
    assert list(table.index) == ["r1", "r2", "r3"]
    assert table["optimizer"].tolist() == ["SGD", "Adam", "Adam"]


def test_hyperparameter_table_leaves_out_keys_some_runs_lack_and_name_like_text():
    runs = configs(*({"run_name": f"trial {i}"} for i in range(13)))
    runs["r1"]["dropout"] = 0.5
    assert charts.hyperparameter_table(runs).columns.empty


def test_best_values_take_the_lowest_loss_and_the_highest_accuracy():
    metrics = pd.DataFrame([{"run_id": run_id, "epoch": epoch, "split": "val", "name": name,
                             "value": 1.1 / epoch if name == "loss" else 0.4}
                            for run_id, epochs in (("a", 3), ("b", 5)) for epoch in range(1, epochs + 1)
                            for name in ("loss", "accuracy")])
    assert charts.best_values(metrics, "val", "loss").to_dict() == pytest.approx({"a": 1.1 / 3, "b": 1.1 / 5})
    assert charts.best_values(metrics, "val", "accuracy").to_dict() == pytest.approx({"a": 0.4, "b": 0.4})


def test_parallel_figure_has_one_dimension_per_key_then_the_metric():
    table = charts.hyperparameter_table(configs(
        {"learning_rate": 1e-2, "optimizer": "SGD", "nesterov": True}, {"learning_rate": 1e-4}, {"batch_size": 64}))
    best = pd.Series({"r1": 0.9, "r2": 0.7, "r3": 0.8})
    fig = charts.parallel_figure(table, best, ("val", "accuracy"))
    parcoords = fig.data[0]
    assert parcoords.type == "parcoords"
    labels = [d.label for d in parcoords.dimensions]
    assert labels == ["learning_rate (log)", "batch_size", "optimizer", "nesterov", "best validation accuracy"]
    lr, batch, optimizer, nesterov, score = parcoords.dimensions
    assert list(lr.values) == pytest.approx([-2, -4, -3]) and list(lr.ticktext) == ["0.0001", "0.001", "0.01"]
    assert list(batch.values) == [32, 32, 64]
    assert list(optimizer.ticktext) == ["Adam", "SGD"] and list(optimizer.values) == [1, 0, 0]
    assert list(nesterov.ticktext) == ["false", "true"] and list(nesterov.values) == [1, 0, 0]
    assert list(score.values) == [0.9, 0.7, 0.8] and list(parcoords.line.color) == [0.9, 0.7, 0.8]
    assert parcoords.line.reversescale is False  # accuracy rises: the bright end is the best run


def test_hyperparameter_scatter_colours_runs_as_on_the_curves():
    table = charts.hyperparameter_table(configs({"optimizer": "SGD"}, {}, {"optimizer": "AdamW"}))
    best = pd.Series({"r1": 0.3, "r2": 0.2, "r3": 0.25})
    labels = {"r1": "one", "r2": "two", "r3": "three"}
    fig = charts.hyperparameter_scatter(table, best, ("val", "loss"), "optimizer", labels)
    assert [t.name for t in fig.data] == ["one", "two", "three"]
    assert [t.marker.color for t in fig.data] == list(charts.RUN_COLOURS[:3])
    assert [t.x[0] for t in fig.data] == [2, 0, 1]  # Adam, AdamW, SGD as ticks 0, 1, 2
    assert list(fig.layout.xaxis.ticktext) == ["Adam", "AdamW", "SGD"]
    assert "optimizer: SGD" in fig.data[0].hovertext[0]


def test_hyperparameter_scatter_colours_by_a_second_key():
    table = charts.hyperparameter_table(configs(
        {"learning_rate": 1e-1, "nesterov": True}, {"learning_rate": 1e-3}, {"learning_rate": 1e-4}))
    best = pd.Series({"r1": 0.3, "r2": 0.2, "r3": 0.25})
    fig = charts.hyperparameter_scatter(table, best, ("val", "loss"), "learning_rate", {}, colour_key="nesterov")
    (points,) = fig.data
    assert list(points.marker.color) == [1, 0, 0]
    assert list(points.marker.colorbar.ticktext) == ["false", "true"]
    assert fig.layout.xaxis.type == "log"  # learning rates spanning 1000x
