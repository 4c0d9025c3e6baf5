"""dashboard.charts: store DataFrames -> Plotly figures, no Streamlit involved."""

from __future__ import annotations

import pandas as pd
import pytest

from dashboard import charts


def long_metrics(run_id: str = "r1", epochs: int = 5, lrs: dict[int, float] | None = None) -> pd.DataFrame:
    rows = []
    for epoch in range(1, epochs + 1):
        values = {("train", "loss"): 1 / epoch, ("val", "loss"): 1.1 / epoch, ("train", "accuracy"): 0.5,
                  ("val", "accuracy"): 0.4, ("", "lr"): (lrs or {}).get(epoch, 1e-3)}
        rows += [{"run_id": run_id, "epoch": epoch, "split": s, "name": n, "value": v} for (s, n), v in values.items()]
    return pd.DataFrame(rows)


def versions(*changes: tuple[int, float, str, str]) -> pd.DataFrame:
    """Version 1 at epoch 1 with lr 1e-3, then one version per (epoch, lr, source, reason)."""
    rows = [{"version": 1, "epoch": 1, "config": {"learning_rate": 1e-3}, "diff": {}, "source": "cli", "reason": ""}]
    lr = 1e-3
    for number, (epoch, new_lr, source, reason) in enumerate(changes, start=2):
        rows.append({"version": number, "epoch": epoch, "config": {"learning_rate": new_lr},
                     "diff": {"learning_rate": [lr, new_lr]}, "source": source, "reason": reason})
        lr = new_lr
    return pd.DataFrame(rows)


def test_train_val_figure_draws_training_as_markers_and_validation_as_a_line():
    fig = charts.train_val_figure(long_metrics(), "loss")
    train, val = fig.data
    assert (train.name, train.mode) == ("Training loss", "markers")
    assert (val.name, val.mode) == ("Validation loss", "lines")
    assert list(train.x) == [1, 2, 3, 4, 5] and val.y[1] == pytest.approx(0.55)
    assert fig.layout.xaxis.title.text == "epoch" and fig.layout.yaxis.title.text == "loss"
    assert fig.layout.title.text == "Training and validation loss"


def test_single_validation_point_is_still_visible():
    fig = charts.train_val_figure(long_metrics(epochs=1), "accuracy")
    assert fig.data[1].mode == "lines+markers"


def test_lr_figure_marks_each_config_change_at_its_epoch():
    metrics = long_metrics(epochs=6, lrs={4: 1e-4, 5: 1e-4, 6: 1e-4})
    fig = charts.lr_figure(metrics, versions((4, 1e-4, "user", "plateau <b>now</b>")))
    assert [shape.x0 for shape in fig.layout.shapes] == [4]
    marker = next(trace for trace in fig.data if trace.name == "config change")
    assert list(marker.x) == [4] and list(marker.y) == [1e-4]
    hover = marker.hovertext[0]
    assert "from user" in hover and "learning_rate: 0.001 → 0.0001" in hover
    assert "&lt;b&gt;now&lt;/b&gt;" in hover  # a reason is shown as text, never as markup
    assert fig.layout.annotations[0].text == "v2 user"
    assert fig.layout.yaxis.type == "log" and list(fig.layout.yaxis.tickvals) == [1e-4, 1e-3]


def test_lr_figure_without_changes_has_no_markers():
    fig = charts.lr_figure(long_metrics(), versions())
    assert not fig.layout.shapes and [t.name for t in fig.data] == ["learning rate"]


def test_lr_figure_marks_a_change_before_its_epoch_is_logged():
    fig = charts.lr_figure(long_metrics(epochs=3), versions((4, 1e-2, "llm", "")))
    assert [shape.x0 for shape in fig.layout.shapes] == [4]


def test_compare_figure_has_one_line_per_run_in_order():
    metrics = pd.concat([long_metrics("a", epochs=3), long_metrics("b", epochs=5)])
    fig = charts.compare_figure(metrics, "val", "loss", {"b": "run B", "a": "run A"})
    assert [t.name for t in fig.data] == ["run B", "run A"]
    assert [len(t.x) for t in fig.data] == [5, 3]
    assert fig.layout.title.text == "Validation loss by run"
    assert fig.layout.yaxis.title.text == "validation loss"


def test_empty_metrics_give_empty_figures():
    empty = long_metrics().iloc[0:0]
    assert all(len(t.x) == 0 for t in charts.train_val_figure(empty, "loss").data)
    assert len(charts.lr_figure(empty, pd.DataFrame()).data[0].x) == 0


@pytest.mark.parametrize(
    ("split", "name", "title"),
    [("val", "accuracy", "Validation accuracy"), ("", "lr", "Learning rate"), ("train", "f1", "Training f1")],
)
def test_metric_title(split, name, title):
    assert charts.metric_title(split, name) == title
