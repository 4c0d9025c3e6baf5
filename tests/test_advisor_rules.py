"""The offline rule-based advisor on synthetic histories: pure Python, no training."""

from __future__ import annotations

import dataclasses

import copy
import json
import math
from pathlib import Path

import pytest

from tiller.trainer.advisor.checks import check_suggestions
from tiller.trainer.advisor.context import ClassStats, RunContext
from tiller.trainer.advisor.rules import RULES, RuleAdvisor
from tiller.trainer.steering.config import TrainConfig, validate_config

SEED003 = Path(__file__).parent / "fixtures" / "seed003_config.json"
NAMES_5 = ["划痕", "污点", "缺失", "变形", "异物"]


def seed003_config(**updates) -> dict:
    raw = json.loads(SEED003.read_text(encoding="utf-8"))
    return {**validate_config(raw).model_dump(), **updates}


def make_history(train_loss=None, val_loss=None, train_acc=None, val_acc=None, lr=1e-3) -> list[dict]:
    series = {"train/loss": train_loss, "val/loss": val_loss, "train/accuracy": train_acc, "val/accuracy": val_acc}
    n = max(len(v) for v in series.values() if v is not None)
    rows = []
    for i in range(n):
        row = {"epoch": i + 1, "lr": lr}
        for key, values in series.items():
            if values is not None and values[i] is not None:
                row[key] = values[i]
        rows.append(row)
    return rows


def make_ctx(history, config=None, classes=None, question="", dataset="digits", **updates) -> RunContext:
    cfg = dict(config) if config is not None else TrainConfig().model_dump()
    cfg.update(updates)
    return RunContext(run_id="run_test", model=cfg["model_name"], dataset=dataset, status="running", config=cfg,
                      history=history, classes=classes, question=question)


def balanced_classes(names, recall, val_count=20, train_count=200) -> ClassStats:
    n = len(names)
    confusion = []
    for i, r in enumerate(recall):
        row = [0] * n
        hits = round(r * val_count)
        row[i] = hits
        row[(i + 1) % n] = val_count - hits
        confusion.append(row)
    return ClassStats(epoch=1, names=list(names), val_counts=[val_count] * n, train_counts=[train_count] * n,
                      recall=list(recall), confusion=confusion)


def advise(ctx):
    return RuleAdvisor().advise(ctx)


def by_key(advice) -> dict:
    return {s.parameter: s.suggested_value for s in advice.suggestions}


# ------------------------------------------------------------------ scenarios


def healthy():
    return make_ctx(make_history(
        train_loss=[1.2, 0.8, 0.55, 0.4, 0.3, 0.24],
        val_loss=[1.1, 0.78, 0.56, 0.43, 0.34, 0.29],
        train_acc=[0.7, 0.82, 0.88, 0.91, 0.93, 0.95],
        val_acc=[0.7, 0.81, 0.87, 0.9, 0.92, 0.93],
    ))


def plateaued(**updates):
    return make_ctx(make_history(
        train_loss=[0.6, 0.45, 0.38, 0.36, 0.355, 0.35, 0.348],
        val_loss=[0.5, 0.4, 0.35, 0.351, 0.349, 0.352, 0.35],
        train_acc=[0.85, 0.9, 0.93, 0.94, 0.94, 0.95, 0.95],
        val_acc=[0.84, 0.89, 0.92, 0.92, 0.93, 0.93, 0.93],
    ), **updates)


def gap_growing(**updates):
    return make_ctx(make_history(
        train_loss=[0.5, 0.3, 0.15, 0.08, 0.05, 0.03],
        val_loss=[0.52, 0.42, 0.4, 0.41, 0.43, 0.44],
        train_acc=[0.85, 0.9, 0.95, 0.98, 0.99, 1.0],
        val_acc=[0.82, 0.85, 0.86, 0.86, 0.86, 0.86],
    ), **updates)


def stalled(**updates):
    return make_ctx(make_history(
        train_loss=[1.5, 1.45, 1.44, 1.435, 1.43],
        val_loss=[1.5, 1.46, 1.45, 1.45, 1.448],
        train_acc=[0.5, 0.52, 0.53, 0.53, 0.535],
        val_acc=[0.5, 0.51, 0.52, 0.52, 0.525],
    ), **updates)


def still_learning(**updates):
    ctx_updates = {"num_epochs": 6, **updates}
    return make_ctx(make_history(
        train_loss=[1.0, 0.8, 0.65, 0.55, 0.47, 0.41],
        val_loss=[1.0, 0.82, 0.68, 0.58, 0.5, 0.45],
        train_acc=[0.6, 0.7, 0.76, 0.8, 0.83, 0.85],
        val_acc=[0.6, 0.69, 0.75, 0.79, 0.82, 0.84],
    ), **ctx_updates)


def nan_loss(**updates):
    return make_ctx(make_history(
        train_loss=[0.9, 0.7, 0.6, math.nan],
        val_loss=[0.85, 0.7, 0.62, math.nan],
        train_acc=[0.7, 0.78, 0.8, 0.1],
        val_acc=[0.7, 0.77, 0.79, 0.1],
    ), **updates)


def diverging(**updates):
    return make_ctx(make_history(
        train_loss=[0.5, 0.4, 0.3, 0.9],
        val_loss=[0.5, 0.42, 0.33, 1.1],
        train_acc=[0.8, 0.85, 0.9, 0.6],
        val_acc=[0.8, 0.84, 0.88, 0.55],
    ), **updates)


def weak_class(config=None, rare: bool = True, **updates):
    """The first class (划痕) is recalled far worse than the rest; ``rare``: it also has fewer training samples."""
    ctx = healthy()
    classes = balanced_classes(NAMES_5, [0.2, 0.9, 0.85, 0.95, 0.88])
    if rare:
        classes = dataclasses.replace(classes, train_counts=[60, 200, 200, 200, 200])
    return make_ctx(ctx.history, config=config or seed003_config(gradient_accumulation_enabled=False),
                    classes=classes, **updates)


def big_batch(train_per_class=200, **updates):
    ctx = healthy()
    classes = balanced_classes(NAMES_5, [0.9] * 5, train_count=train_per_class)
    return make_ctx(ctx.history, config=seed003_config(**updates), classes=classes)


SCENARIOS = {
    "healthy": healthy, "plateau": plateaued, "gap": gap_growing, "stalled": stalled,
    "still_learning": still_learning, "nan": nan_loss, "diverging": diverging, "weak_class": weak_class,
    "big_batch": big_batch,
    "text_gap": lambda: gap_growing(model_name="text_embedding_bag", dataset="imdb_npz"),
    "all_at_once": lambda: make_ctx(nan_loss().history, config=seed003_config(weight_strategy="manual"),
                                    classes=balanced_classes(NAMES_5, [0.2, 0.9, 0.85, 0.95, 0.88],
                                                             train_count=200)),
}


# ------------------------------------------------------------------ the contract


def test_name_and_advisor_label():
    assert RuleAdvisor().name == "offline rules"
    assert advise(healthy()).advisor == "offline rules"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_suggestion_passes_the_trainers_checks(scenario):
    ctx = SCENARIOS[scenario]()
    advice = advise(ctx)
    assert len(advice.suggestions) <= 4
    assert len({s.parameter for s in advice.suggestions}) == len(advice.suggestions)
    for checked in check_suggestions(advice.suggestions, ctx.config, ctx.epochs_done):
        assert checked.ok, checked.problem
        assert checked.notes == []  # the current value given is the config's
    for s in advice.suggestions:
        assert s.current_value == ctx.config[s.parameter]
        assert type(s.suggested_value) is type(ctx.config[s.parameter])
        assert s.reason
    json.dumps(advice.to_dict(), ensure_ascii=False)  # JSON-safe


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_deterministic(scenario):
    ctx = SCENARIOS[scenario]()
    assert advise(ctx) == advise(copy.deepcopy(ctx)) == advise(SCENARIOS[scenario]())


def test_healthy_run_gets_no_suggestions():
    advice = advise(healthy())
    assert advice.suggestions == []
    assert "looks healthy" in advice.analysis
    assert "val loss 0.29" in advice.analysis and "epoch 6 of 20" in advice.analysis


def test_question_gets_an_honest_line_and_the_findings():
    advice = advise(make_ctx(plateaued().history, question="Why is my val loss stuck?"))
    first = advice.analysis.splitlines()[0]
    assert first.startswith("> The offline advisor follows fixed rules and cannot read your question")
    assert "**Plateau**" in advice.analysis
    assert by_key(advice) == by_key(advise(plateaued()))
    assert "cannot read" not in advise(plateaued()).analysis


# ------------------------------------------------------------------ plateau


def test_plateau_lowers_lr():
    advice = advise(plateaued())
    assert by_key(advice) == {"learning_rate": 0.0003}
    assert "not improved on 0.35 (epoch 3)" in advice.analysis and "for 4 epochs" in advice.analysis


def test_plateau_respects_min_lr():
    advice = advise(plateaued(learning_rate=2e-6, min_lr_enabled=True, min_lr=1e-6))
    assert by_key(advice) == {"learning_rate": 1e-6}
    at_floor = advise(plateaued(learning_rate=1e-6, min_lr_enabled=True, min_lr=1e-6))
    assert at_floor.suggestions == [] and "already at its floor" in at_floor.analysis


def test_plateau_with_reduce_on_plateau_scheduler_only_says_so():
    advice = advise(plateaued(lr_scheduler="ReduceLROnPlateau"))
    assert advice.suggestions == []
    assert "ReduceLROnPlateau scheduler" in advice.analysis and "looks healthy" not in advice.analysis


def test_plateau_needs_a_trend():
    ctx = plateaued()
    short = make_ctx(ctx.history[:2])
    advice = advise(short)
    assert advice.suggestions == [] and "need at least 4" in advice.analysis


# ------------------------------------------------------------------ overfitting


def test_growing_gap_on_images_adds_augmentation_and_weight_decay():
    advice = advise(gap_growing(model_name="resnet18"))
    assert by_key(advice) == {"use_augmentation": True, "weight_decay": 1e-4}
    assert "gap of 14.0 points, up from 9.0 points at epoch 3" in advice.analysis
    assert "**Plateau**" not in advice.analysis  # overfitting explains the stalled val loss


def test_growing_gap_on_the_flat_mlp_skips_augmentation():
    # Rotations and zoom of 8x8 digits fed to an MLP slow it ~20x and wreck its accuracy.
    assert by_key(advise(gap_growing(model_name="mlp"))) == {"weight_decay": 1e-4, "dropout_rate": 0.3}


def test_a_tiny_loss_that_doubles_is_not_divergence():
    ctx = make_ctx(make_history(train_loss=[0.3, 1e-3, 1e-6, 0.04], val_loss=[0.3, 0.12, 0.1, 0.11],
                                train_acc=[0.9, 1.0, 1.0, 0.99], val_acc=[0.9, 0.96, 0.97, 0.967]))
    assert "**Divergence**" not in advise(ctx).analysis


def test_growing_gap_on_text_skips_augmentation_and_label_smoothing():
    advice = advise(gap_growing(model_name="text_embedding_bag", dataset="imdb_npz", weight_decay=1e-3))
    assert by_key(advice) == {"weight_decay": 0.01, "dropout_rate": 0.3}


def test_growing_gap_with_regularisers_spent_turns_on_label_smoothing():
    advice = advise(gap_growing(use_augmentation=True, weight_decay=0.1, dropout_rate=0.5))
    assert by_key(advice) == {"label_smoothing_enabled": True}


def test_val_loss_rising_while_train_loss_falls_is_overfitting():
    ctx = make_ctx(make_history(train_loss=[0.6, 0.4, 0.3, 0.2, 0.12, 0.08],
                                val_loss=[0.55, 0.45, 0.4, 0.44, 0.5, 0.58]),
                   use_augmentation=True, weight_decay=9.999999999999999e-05)
    advice = advise(ctx)
    assert by_key(advice) == {"weight_decay": 0.001, "dropout_rate": 0.3}
    assert "val loss rose from 0.4 (epoch 3) to 0.58" in advice.analysis


# ------------------------------------------------------------------ underfitting


def test_stalled_low_accuracy_raises_lr():
    advice = advise(stalled())
    assert by_key(advice) == {"learning_rate": 0.003}
    assert "train accuracy is only 53.5 %" in advice.analysis
    assert "**Plateau**" not in advice.analysis


def test_raised_lr_is_capped_for_adam():
    assert by_key(advise(stalled(learning_rate=0.005))) == {"learning_rate": 0.01}
    capped = advise(stalled(learning_rate=0.01))
    assert capped.suggestions == [] and "ceiling" in capped.analysis
    assert by_key(advise(stalled(learning_rate=0.01, optimizer="SGD"))) == {"learning_rate": 0.03}


def test_no_lr_raise_during_warmup():
    advice = advise(stalled(warmup_enabled=True, warmup_ratio=0.5))
    assert advice.suggestions == [] and "warming up" in advice.analysis


def test_still_learning_at_the_end_extends_the_run():
    advice = advise(still_learning())
    assert by_key(advice) == {"num_epochs": 9}
    assert "epoch 6 of 6 and still learning" in advice.analysis
    assert advise(still_learning(num_epochs=20)).suggestions == []  # far from the end: nothing to do


# ------------------------------------------------------------------ divergence


def test_nan_loss_lowers_lr_and_turns_on_clipping():
    advice = advise(nan_loss())
    assert by_key(advice) == {"learning_rate": 1e-4, "gradient_clipping": True}
    assert "**Divergence**" in advice.analysis and "nan" in advice.analysis


def test_nan_stored_as_missing_value_counts():
    history = nan_loss().history
    for row in history[-1:]:
        del row["train/loss"], row["val/loss"]
    advice = advise(make_ctx(history))
    assert by_key(advice) == {"learning_rate": 1e-4, "gradient_clipping": True}
    assert "not a number" in advice.analysis


def test_nan_in_the_first_epoch():
    advice = advise(make_ctx(make_history(train_loss=[math.inf], val_loss=[0.9])))
    assert by_key(advice) == {"learning_rate": 1e-4, "gradient_clipping": True}


def test_loss_far_above_its_best_is_divergence():
    advice = advise(diverging(gradient_clipping=True))
    assert by_key(advice) == {"learning_rate": 1e-4}
    assert "3.0x its best 0.3 (epoch 3)" in advice.analysis


def test_divergence_suppresses_lr_raise():
    base = stalled().history
    history = [dict(row) for row in base]
    history.append({"epoch": 6, "train/loss": 1.429, "train/accuracy": 0.535})  # val loss NaN, not stored
    ctx = make_ctx(history)
    advice = advise(ctx)
    assert by_key(advice)["learning_rate"] < ctx.config["learning_rate"]
    assert "**Divergence**" in advice.analysis and "**Underfitting**" not in advice.analysis


def test_divergence_wins_the_lr_over_the_plateau_rule():
    history = plateaued().history + [{"epoch": 8, "train/loss": math.nan, "val/loss": 0.36}]
    advice = advise(make_ctx(history))
    assert by_key(advice)["learning_rate"] == 1e-4
    assert "**Plateau**" not in advice.analysis


# ------------------------------------------------------------------ class recall


def test_weak_class_turns_on_class_weights():
    advice = advise(weak_class())
    assert by_key(advice) == {"use_class_weights": True}
    reason = advice.suggestions[0].reason
    assert "划痕 has recall 0.20 vs a median of 0.89" in reason and "20 validation and 60 training samples" in reason
    assert "most often taken for 污点, 16 times" in advice.analysis


def test_weak_class_with_balanced_weights_on_oversamples():
    advice = advise(weak_class(config=seed003_config(use_class_weights=True, gradient_accumulation_enabled=False)))
    assert by_key(advice) == {"weight_strategy": "oversample"}


def test_a_weak_class_that_is_not_rare_gets_no_weights_only_a_finding():
    # Balanced weights would be about 1.0 for every class: suggesting them would change nothing.
    advice = advise(weak_class(rare=False))
    assert by_key(advice) == {}
    assert "not rarer than the others in training" in advice.analysis and "划痕" in advice.analysis


def test_weak_class_with_empty_manual_weights_switches_to_balanced():
    config = seed003_config(weight_strategy="manual", gradient_accumulation_enabled=False)  # weights all 1.0
    assert by_key(advise(weak_class(config=config))) == {"use_class_weights": True, "weight_strategy": "balanced"}


def test_weak_class_with_manual_weights_doubles_its_weight():
    weights = {"划痕": 2.0, "污点": 1.0, "缺失": 1.0, "变形": 1.0, "异物": 1.0}
    config = seed003_config(use_class_weights=True, weight_strategy="manual", class_weights=weights,
                            gradient_accumulation_enabled=False)
    assert by_key(advise(weak_class(config=config))) == {"class_weights": {**weights, "划痕": 4.0}}


def test_weak_class_already_oversampled_only_says_so():
    config = seed003_config(use_class_weights=True, weight_strategy="oversample", gradient_accumulation_enabled=False)
    advice = advise(weak_class(config=config))
    assert advice.suggestions == [] and "**Weak class**" in advice.analysis


def test_class_recall_ignores_tiny_classes_and_the_first_epoch():
    tiny = balanced_classes(NAMES_5, [0.0, 0.9, 0.85, 0.95, 0.88], val_count=3)
    config = seed003_config(gradient_accumulation_enabled=False)
    assert advise(make_ctx(healthy().history, config=config, classes=tiny)).suggestions == []
    classes = balanced_classes(NAMES_5, [0.2, 0.9, 0.85, 0.95, 0.88])
    assert advise(make_ctx(healthy().history[:1], config=config, classes=classes)).suggestions == []


# ------------------------------------------------------------------ effective batch


def test_seed003_effective_batch_lowers_accumulation():
    advice = advise(big_batch())  # batch 32 x accumulation 4 = 128 on 1,000 training samples
    assert by_key(advice) == {"gradient_accumulation_steps": 1}
    assert "effective batch of 128" in advice.analysis and "only 8 optimizer steps" in advice.analysis


def test_effective_batch_keeps_as_much_accumulation_as_fits():
    assert by_key(advise(big_batch(train_per_class=400))) == {"gradient_accumulation_steps": 3}
    assert advise(big_batch(train_per_class=700)).suggestions == []


def test_batch_alone_too_large_shrinks_the_batch():
    advice = advise(big_batch(gradient_accumulation_enabled=False, batch_size=256))
    assert by_key(advice) == {"batch_size": 32}


# ------------------------------------------------------------------ priority and limits


def test_at_most_four_suggestions_in_priority_order():
    advice = advise(SCENARIOS["all_at_once"]())
    assert [s.parameter for s in advice.suggestions] == [
        "learning_rate", "gradient_clipping", "use_class_weights", "weight_strategy"]
    assert "**Effective batch too large**" in advice.analysis  # found, but past the limit


def test_every_rule_fires_in_some_scenario():
    fired = set()
    for build in SCENARIOS.values():
        ctx = build()
        fired |= {rule.__name__ for rule in RULES if rule(ctx) is not None}
    assert fired == {rule.__name__ for rule in RULES}
