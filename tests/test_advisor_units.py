"""The advisor's pieces without a run: checks, autopilot limits, the report, change ids."""

from __future__ import annotations

import pytest

from tiller.trainer.advisor.autopilot import is_due, within_limits
from tiller.trainer.advisor.checks import check_suggestions, combined_problems
from tiller.trainer.advisor.report import change_kind, render_report
from tiller.trainer.advisor.service import split_change_id
from tiller.trainer.advisor.types import AdvisorError, Suggestion, parse_tool_input
from tiller.trainer.steering.config import TrainConfig

CONFIG = TrainConfig(num_epochs=20, learning_rate=0.001).model_dump()


def check(*pairs, epochs_done=5, config=CONFIG):
    return check_suggestions([Suggestion(k, config.get(k), v, "why") for k, v in pairs], config, epochs_done)


def test_checks_refuse_what_the_trainer_would_and_accept_the_rest():
    ok, same, twice, short, clash = check(("learning_rate", 0.01), ("dropout_rate", 0.2), ("learning_rate", 0.1),
                                          ("num_epochs", 3), ("nesterov", True))
    assert ok.ok and ok.number == 1
    assert same.problem == "dropout_rate: already 0.2"
    assert "suggested twice" in twice.problem
    assert "below the 5 epochs already trained" in short.problem
    assert clash.ok  # Adam ignores nesterov; the schema only refuses it for SGD without momentum
    (sgd,) = check(("momentum", 0.0), config={**CONFIG, "optimizer": "SGD", "nesterov": True})
    assert "nesterov needs momentum > 0" in sgd.problem


def test_a_pair_that_clashes_is_refused_together():
    config = {**CONFIG, "optimizer": "SGD", "momentum": 0.9}
    assert combined_problems(config, {"momentum": 0.5}, 1) == []
    assert any("nesterov needs momentum" in p for p in combined_problems(config, {"momentum": 0.0, "nesterov": True}, 1))


def test_tool_input_must_have_the_seed003_shape():
    advice = parse_tool_input({"analysis": "a", "suggestions": [{"parameter": "lr", "suggested_value": 1}]}, "m")
    assert advice.suggestions == [Suggestion("lr", None, 1, "")]
    for bad in (None, [], {"analysis": 1, "suggestions": []}, {"analysis": "a"},
                {"analysis": "a", "suggestions": [{"parameter": "x"}] * 9}):
        with pytest.raises(AdvisorError):
            parse_tool_input(bad, "m")


def autopilot_config(**updates):
    return TrainConfig(autopilot=True, autopilot_every=2, autopilot_max_changes=3, autopilot_max_lr_factor=10.0,
                       num_epochs=10, **updates)


def test_autopilot_keeps_lr_moves_within_the_factor_and_the_budget():
    suggestions = check(("learning_rate", 0.0001), ("learning_rate", 0.00009), ("dropout_rate", 0.3),
                        ("weight_decay", 0.001), ("use_augmentation", True), ("model_name", "resnet18"))
    accepted, skipped = within_limits(suggestions, autopilot_config(), changes_made=1)
    assert [s.parameter for s in accepted] == ["learning_rate", "dropout_rate"]
    reasons = {s.number: why for s, why in skipped}
    assert "suggested twice" in reasons[2]
    assert "budget of 3 autopilot changes is used up" in reasons[4] and reasons[4] == reasons[5]
    assert "fixed for the life of the run" in reasons[6]
    (far,) = check(("learning_rate", 0.02))
    assert within_limits([far], autopilot_config(), 0)[0] == []
    assert "x/÷10 limit" in within_limits([far], autopilot_config(), 0)[1][0][1]


def test_autopilot_is_due_every_n_epochs_but_not_after_the_last():
    config = autopilot_config()
    assert [e for e in range(1, 11) if is_due(config, e)] == [2, 4, 6, 8]
    assert not is_due(TrainConfig(autopilot=False), 5)


def test_change_kinds_follow_seed_003():
    assert change_kind(1e-4, 2e-5) == "decrease" and change_kind(1, 4) == "increase"
    assert change_kind(False, True) == "enabled" and change_kind(True, False) == "disabled"
    assert change_kind("Adam", "SGD") == "switched" and change_kind({}, {"a": 2.0}) == "edited"


def test_a_report_without_advice_has_every_section_but_the_analysis():
    text = render_report(report_id="r", run_id="run1", version=3, epoch=7, source="user", reason="slower please",
                         change_id="", diff={"learning_rate": [0.01, 0.001], "class_weights": [{}, {"划痕": 2.0}]},
                         before=CONFIG, after=CONFIG, metrics={"val/loss": 0.5, "lr": 0.01})
    for heading in ("## Reason", "## Changes", "## Metrics at this point (epoch 6)", "## Config comparison",
                    "## Summary"):
        assert heading in text
    assert "## Advisor analysis" not in text and "slower please" in text
    assert '- **New**: `{"划痕": 2.0}`' in text and "an edit in the dashboard" in text
    assert "changed **2** parameters" in text


def test_change_ids_name_the_advice_and_its_suggestions():
    assert split_change_id("adv_20261123_101500_ab12#1,3") == ("adv_20261123_101500_ab12", [1, 3])
    assert split_change_id("revert:v2") == ("", []) and split_change_id("") == ("", [])


def test_an_autopilot_step_sends_nothing_once_the_user_turned_it_off(store, monkeypatch):
    from tiller.trainer.advisor.autopilot import Autopilot
    from tiller.trainer.steering.live_config import CONFIG_FILENAME, render_live_file, request_change, write_atomic

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    run = store.start_run(model="mlp", dataset="digits").__enter__()
    config = TrainConfig(num_epochs=50, batch_size=512, gradient_accumulation_enabled=True, autopilot=True)
    live = run.dir / CONFIG_FILENAME
    write_atomic(live, render_live_file(config.model_dump()))
    run.config_version(config.model_dump(), source="cli", epoch=1)
    run.val_samples(labels=[0, 1] * 50, sample_ids=[str(i) for i in range(100)], class_names=["a", "b"],
                    train_counts=[800, 800])
    for epoch in range(1, 6):
        run.log(epoch, {"train/loss": 0.5, "val/loss": 0.5, "train/accuracy": 0.8, "val/accuracy": 0.8})
    run.flush()
    events = []
    autopilot = Autopilot(store.runs_dir, run.id, lambda level, text, epoch=None: events.append(text))
    request_change(live, {"autopilot": False}, source="user", reason="off")  # not applied yet
    before = live.read_bytes()
    autopilot.after_epoch(5, config)
    autopilot.settle(30)
    assert "turned off meanwhile; nothing was sent" in events[-1]
    assert live.read_bytes() == before
