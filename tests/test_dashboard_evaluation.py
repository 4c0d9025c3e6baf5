"""The Evaluation page, run headless with AppTest (which renders every tab) against runs in tmp_path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tiller.store import Store
from tiller.trainer.steering.config import validate_config
from tiller.trainer.engine.loop import train

PAGE = Path(__file__).resolve().parent.parent / "dashboard" / "app_pages" / "evaluation.py"
TIMEOUT_S = 30  # the first run imports plotly, pandas and scikit-learn
COMMON_CHARTS = {"eval-confusion-raw", "eval-confusion-normalised", "eval-per-class-scores", "eval-class-counts",
                 "eval-rates", "eval-radar", "eval-deferral", "eval-bin-accuracy", "eval-bin-count", "eval-reliability"}


def seed_predictions(store: Store, run_id: str, *, class_names: list[str], labels, probs_per_epoch: dict,
                     val_accuracy: dict | None = None, task: str = "multiclass",
                     train_counts: list[int] | None = None) -> str:
    """A finished run with stored validation predictions (and val/accuracy) per epoch."""
    store.create_run(model="mlp", dataset="synthetic", name=run_id, run_id=run_id)
    labels = np.asarray(labels)
    store.record_val_samples(run_id, labels=labels, sample_ids=[f"synthetic#{i}" for i in range(len(labels))],
                             class_names=class_names, task=task, train_counts=train_counts)
    for epoch, probs in probs_per_epoch.items():
        store.record_predictions(run_id, epoch, probs)
        accuracy = (val_accuracy or {}).get(epoch, float(np.mean(np.argmax(probs, axis=1) == labels)))
        store.log_metrics(run_id, epoch, {"val/accuracy": accuracy, "val/loss": 1.0})
    store.update_run(run_id, status="finished")
    return run_id


def noisy_probs(labels: np.ndarray, n_classes: int, seed: int = 0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(len(labels), n_classes))
    logits[np.arange(len(labels)), labels] += 1.5
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def binary_probs(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    p = np.clip(0.3 + 0.4 * labels + np.random.default_rng(seed).normal(0, 0.2, len(labels)), 0, 1)
    return np.column_stack([1 - p, p])


def evaluation_page(run_id: str | None = None) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S)
    if run_id:
        at.query_params["run"] = run_id
    return at.run()


def texts(elements) -> str:
    """The elements' Markdown as plain text (the page escapes user text)."""
    return re.sub(r"\\(.)", r"\1", "\n".join(str(e.value) for e in elements))


def chart_keys(at: AppTest) -> set[str]:
    return {chart.key for chart in at.get("plotly_chart")}


def metric_values(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# --------------------------------------------------------------- full page


def test_multiclass_run_renders_every_panel(runs_store):
    run_id = train(validate_config({"num_epochs": 2}), runs_store, say=lambda m: None)
    at = evaluation_page(run_id)
    assert not at.exception
    assert [t.label for t in at.tabs] == ["Report & summary", "Confusion matrices", "ROC & PR", "Per class",
                                         "Clinical utility", "Confidence & calibration", "Hard samples",
                                         "Feature space", "Grad-CAM"]
    assert chart_keys(at) == COMMON_CHARTS | {"eval-roc", "eval-pr"}
    assert not at.info  # digits: every class in validation, training counts recorded
    report = at.dataframe[0].value
    assert list(report.index[:10]) == [str(c) for c in range(10)]
    assert {"accuracy", "macro avg", "weighted avg"} <= set(report.index)
    values = metric_values(at)
    assert set(values) >= {"accuracy", "micro ROC AUC", "macro ROC AUC", "micro average precision",
                           "Cohen's kappa, quadratic weights", "severity-weighted error rate",
                           "detection rate (recall)", "mean confidence", "expected calibration error"}
    assert all(re.fullmatch(r"\d\.\d{3}", values[name]) for name in ("micro ROC AUC", "severity-weighted error rate"))


def test_binary_run_gets_one_roc_and_a_threshold_slider(runs_store):
    labels = np.array([0, 1] * 100)
    seed_predictions(runs_store, "binary_run", class_names=["正常", "恶性"], labels=labels,
                     probs_per_epoch={1: binary_probs(labels)}, task="binary", train_counts=[400, 400])
    at = evaluation_page("binary_run")
    assert not at.exception
    assert chart_keys(at) == COMMON_CHARTS | {"eval-binary-roc", "eval-binary-pr", "eval-binary-confusion"}
    assert set(metric_values(at)) >= {"ROC AUC", "average precision", "precision", "recall", "specificity"}
    assert "micro ROC AUC" not in metric_values(at)
    slider = at.slider(key="eval_binary_threshold_binary_run")
    recall_at_half = metric_values(at)["recall"]
    slider.set_value(0.05).run()
    assert not at.exception
    assert metric_values(at)["recall"] == "1.000" != recall_at_half  # every p(恶性) in this data is >= 0.05
    assert at.selectbox(key="eval_detection_class_binary_run").value == 1  # the positive class by default


def test_a_run_still_in_its_first_epoch_says_the_panels_come_when_it_ends(runs_store):
    runs_store.create_run(model="mlp", dataset="digits", name="fresh", run_id="fresh_run")  # running, this process
    at = evaluation_page("fresh_run")
    assert not at.exception
    assert "has not finished its first epoch yet" in texts(at.info)
    assert "shows them by itself" in texts(at.info)
    assert not at.get("plotly_chart")


@pytest.mark.parametrize("status, opening", [("failed", "This run failed"), ("stopped", "This run was stopped")])
def test_a_run_that_ended_before_any_predictions_says_what_to_do(runs_store, status, opening):
    runs_store.create_run(model="mlp", dataset="digits", run_id="ended_early")
    runs_store.update_run("ended_early", status=status, error="RuntimeError: out of memory")
    at = evaluation_page("ended_early")
    assert not at.exception and not at.get("plotly_chart")
    info = texts(at.info)
    assert info.startswith(f"{opening} before it stored any validation predictions")
    assert "(run?run=ended_early)" in info  # a link to its Run page, which shows why
    assert "`tiller resume ended_early`" in info and "`tiller train`" in info


def test_a_finished_run_without_predictions_points_to_log_predictions(runs_store):
    runs_store.create_run(model="mlp", dataset="own loop", run_id="own_loop")
    runs_store.log_metrics("own_loop", 1, {"val/accuracy": 0.5})
    runs_store.update_run("own_loop", status="finished")
    at = evaluation_page("own_loop")
    assert not at.exception
    info = texts(at.info)
    assert "stored no validation predictions" in info and "run.log_predictions(" in info
    assert "by itself" not in info  # nothing more will come


def test_empty_runs_folder_shows_how_to_start(runs_store):
    at = evaluation_page()
    assert not at.exception
    assert "tiller demo" in texts(at.info)


def test_default_epoch_is_the_best_validation_accuracy(runs_store):
    labels = np.arange(60) % 3
    probs = noisy_probs(labels, 3)
    seed_predictions(runs_store, "three_epochs", class_names=["a", "b", "c"], labels=labels,
                     probs_per_epoch={1: probs, 2: probs, 3: probs}, val_accuracy={1: 0.5, 2: 0.9, 3: 0.7})
    at = evaluation_page("three_epochs")
    assert not at.exception
    picker = at.selectbox(key="eval_epoch_three_epochs")
    assert picker.value == 2 and picker.options == ["1", "2 (best validation accuracy)", "3"]
    picker.set_value(3).run()
    assert not at.exception and at.selectbox(key="eval_epoch_three_epochs").value == 3


def test_missing_data_panels_say_why_instead_of_failing(runs_store):
    # A class with no validation samples and no training counts recorded.
    labels = np.arange(90) % 3
    probs = noisy_probs(labels, 4)
    seed_predictions(runs_store, "gaps", class_names=["正常", "良性", "恶性", "其他"], labels=labels,
                     probs_per_epoch={1: probs})
    at = evaluation_page("gaps")
    assert not at.exception
    info = texts(at.info)
    assert "no validation samples of 其他" in info
    assert "did not record its training samples per class" in info
    at.selectbox(key="eval_detection_class_gaps").set_value(3).run()
    assert "No validation samples of 其他" in texts(at.info)


def test_single_class_validation_set_renders_with_notes(runs_store):
    labels = np.zeros(20, dtype=int)
    probs = np.tile([0.9, 0.1], (20, 1))
    seed_predictions(runs_store, "one_class", class_names=["neg", "pos"], labels=labels,
                     probs_per_epoch={1: probs}, task="binary")
    at = evaluation_page("one_class")
    assert not at.exception
    info = texts(at.info)
    assert "needs samples of both neg and pos" in info
    assert "Kappa is not defined" in info
    assert metric_values(at)["ROC AUC"] == "–"


def test_user_inputs_are_checked_before_use(runs_store):
    labels = np.arange(60) % 3
    seed_predictions(runs_store, "inputs", class_names=["a", "b", "c"], labels=labels,
                     probs_per_epoch={1: noisy_probs(labels, 3)})
    at = evaluation_page("inputs")
    at.text_input(key="eval_thresholds_inputs").input("0.4, 1.5").run()
    assert not at.exception
    assert "1.5 is not between 0 and 1" in texts(at.warning)
    at.text_input(key="eval_thresholds_inputs").input("0.9 0.2").run()
    scenarios = next(d.value for d in at.dataframe if "deferred" in d.value.columns)
    assert list(scenarios["threshold"]) == ["0.200", "0.900"]


def test_figures_name_their_axes_classes_and_scores(runs_store):
    labels = np.arange(90) % 3
    seed_predictions(runs_store, "figures", class_names=["正常", "良性", "恶性"], labels=labels,
                     probs_per_epoch={1: noisy_probs(labels, 3)})
    at = evaluation_page("figures")
    figures = {chart.key: json.loads(chart.proto.spec) for chart in at.get("plotly_chart")}
    confusion = figures["eval-confusion-raw"]
    assert confusion["data"][0]["x"] == ["正常", "良性", "恶性"] == confusion["data"][0]["y"]
    assert confusion["layout"]["xaxis"]["title"]["text"] == "predicted class"
    assert confusion["layout"]["yaxis"]["title"]["text"] == "true class"
    roc_names = [trace["name"] for trace in figures["eval-roc"]["data"]]
    assert [name.split(" (")[0] for name in roc_names] == ["正常", "良性", "恶性", "micro-average", "chance"]
    assert all("AUC" in name for name in roc_names)
    assert all("AP" in trace["name"] for trace in figures["eval-pr"]["data"])
    assert [trace["type"] for trace in figures["eval-radar"]["data"]] == ["scatterpolar"] * 3


LONG = "A very long class name that goes on and on: Pseudomonas aeruginosa resistant strain"
ANY_SCRIPT = ["猫", "狗", "鸟", "قطة", "🐶 dog", LONG]


def column_config(dataframe) -> dict:
    return json.loads(dataframe.proto.columns)


def test_class_names_of_any_script_and_length_fit_the_tables(runs_store):
    labels = np.arange(120) % 6
    seed_predictions(runs_store, "any_script", class_names=ANY_SCRIPT, labels=labels,
                     probs_per_epoch={1: noisy_probs(labels, 6)})
    seed_predictions(runs_store, "short_names", class_names=["a", "b", "c"], labels=labels % 3,
                     probs_per_epoch={1: noisy_probs(labels % 3, 3)})
    at = evaluation_page("any_script")
    assert not at.exception
    report = at.tabs[0].dataframe[0]
    assert list(report.value.index[:6]) == ANY_SCRIPT  # whole names in the data, whatever the script
    long_width = column_config(report)["_index"]["width"]
    severity = next(d for d in at.tabs[4].dataframe if d.proto.editing_mode)
    headers = column_config(severity)
    # A header cut short names its class in full in its tooltip; short names stay whole.
    assert headers[LONG]["label"].endswith("…") and headers[LONG]["help"] == LONG
    assert headers["猫"]["label"] == "猫"
    wrong = next(d for d in at.tabs[6].dataframe if "predicted" in d.value.columns)
    assert column_config(wrong)["predicted"]["width"] == long_width

    short_width = column_config(evaluation_page("short_names").tabs[0].dataframe[0])["_index"]["width"]
    assert short_width < long_width  # the class column is as wide as its names need


def test_confusion_matrices_of_many_classes_are_stacked_not_squeezed_side_by_side(runs_store):
    for run_id, classes in (("few", 3), ("many", 15)):
        labels = np.arange(150) % classes
        seed_predictions(runs_store, run_id, class_names=[f"类{n}" for n in range(classes)], labels=labels,
                         probs_per_epoch={1: noisy_probs(labels, classes)})
    few, many = evaluation_page("few"), evaluation_page("many")
    assert not few.exception and not many.exception
    assert len(few.tabs[1].columns) == 2
    assert len(many.tabs[1].columns) == 0
    assert {chart.key for chart in many.tabs[1].get("plotly_chart")} == {"eval-confusion-raw",
                                                                          "eval-confusion-normalised"}


def test_app_navigates_to_the_evaluation_page(runs_store):
    labels = np.arange(30) % 3
    seed_predictions(runs_store, "nav", class_names=["a", "b", "c"], labels=labels,
                     probs_per_epoch={1: noisy_probs(labels, 3)})
    at = AppTest.from_file(str(PAGE.parent.parent / "app.py"), default_timeout=TIMEOUT_S).run()
    at.switch_page("app_pages/evaluation.py").run()
    assert not at.exception
    assert at.title[0].value == "Evaluation" and at.selectbox(key="eval_run_picker").value == "nav"


def test_hard_samples_show_their_images_and_grad_cam_explains_why_not_for_an_mlp(runs_store):
    run_id = train(validate_config({"num_epochs": 1}), runs_store, say=lambda m: None)
    at = evaluation_page(run_id)
    assert not at.exception and not at.get("image")  # nothing loads the model until asked
    show = [t for t in at.toggle if t.label == "Show the samples"][0]
    show.set_value(True).run()
    assert not at.exception
    assert len(at.get("image")) >= 1  # digits thumbnails, from the reloaded data set
    [t for t in at.toggle if t.label == "Explain predictions with Grad-CAM"][0].set_value(True).run()
    assert not at.exception
    assert any("Grad-CAM needs a convolutional model" in str(i.value) for i in at.info)


def test_a_live_run_gets_its_new_epochs_on_the_next_draw(runs_store):
    # The two-second notice itself is a fragment rerun, which AppTest does not tick;
    # a full rerun (any interaction, or the notice's button) lists the new epoch.
    run_id = train(validate_config({"num_epochs": 1}), runs_store, say=lambda m: None)
    runs_store.update_run(run_id, status="running")  # as if still training
    at = evaluation_page(run_id)
    assert not at.exception and not at.button  # nothing newer than what is shown
    runs_store.record_predictions(run_id, 2, runs_store.predictions(run_id, 1).probs)  # epoch 2 validated
    st.cache_data.clear()  # the list of epochs is cached for the 2 s refresh interval
    at.run()
    assert not at.exception
    assert at.selectbox(key=f"eval_epoch_{run_id}").options == ["1 (best validation accuracy)", "2"]
