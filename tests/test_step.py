"""Label smoothing, gradient clipping and accumulation: the functions, and a
change of each taking effect in the running loop."""

import math

import pytest
import torch

from tiller.store import Store
from tiller.trainer.engine.appliers import apply_change
from tiller.trainer.steering.config import validate_config
from tiller.trainer.steering.live_config import LiveFile
from tiller.trainer.engine.distributed import World
from tiller.trainer.engine.job_steering import JobSteering
from tiller.trainer.engine.loop import EpochLoop, build_state
from tiller.trainer.steering.steer import Steering
from tiller.trainer.steering.review import review_edit
from tiller.trainer.engine.step import clip_gradients, ends_step, optimizer_steps_in, training_loss


def test_accumulation_steps_after_every_nth_batch_and_the_last():
    config = validate_config({"gradient_accumulation_enabled": True, "gradient_accumulation_steps": 3})
    assert [i for i in range(7) if ends_step(i, 7, config)] == [2, 5, 6]
    assert optimizer_steps_in(7, config) == 3
    off = validate_config({"gradient_accumulation_steps": 3})  # not enabled: every batch steps
    assert optimizer_steps_in(7, off) == 7


def test_label_smoothing_raises_the_loss_of_a_confident_hit():
    logits, targets = torch.tensor([[10.0, 0.0, 0.0]]), torch.tensor([0])
    plain = training_loss(logits, targets, validate_config({}))
    smoothed = training_loss(logits, targets, validate_config({"label_smoothing_enabled": True}))
    assert smoothed > plain + 0.1


def test_clipping_bounds_the_global_norm_and_reports_it_before():
    model = torch.nn.Linear(4, 1)
    model(torch.full((1, 4), 100.0)).sum().backward()
    config = validate_config({"gradient_clipping": True, "gradient_clipping_value": 0.5})
    before = clip_gradients(model, config)
    after = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    assert before > 100 and float(after) == pytest.approx(0.5, rel=1e-4)


def test_without_clipping_the_norm_is_reported_and_the_gradients_are_left_alone():
    model = torch.nn.Linear(4, 1)
    model(torch.full((1, 4), 100.0)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    reported = clip_gradients(model, validate_config({"gradient_clipping": False}))
    assert reported == pytest.approx(float(torch.nn.utils.get_total_norm(grads)))
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))


# --------------------------------------------------------- in the running loop


def make_loop(tmp_path, **values) -> EpochLoop:
    state = build_state(validate_config({"batch_size": 64, **values}))
    store = Store(tmp_path / "runs")
    run = store.start_run(model="mlp", dataset="digits")
    return EpochLoop(state, run, JobSteering(World.single(), Steering(run, state.config)), say=lambda message: None)


def change(loop: EpochLoop, epochs_done: int, **values) -> None:
    apply_change(loop.state, review_edit(LiveFile(values=values), loop.state.config, epochs_done))


def record_steps(optimizer) -> list[float]:
    """The global gradient norm seen by every optimizer step."""
    norms = []

    def before_step(opt, args, kwargs):
        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.nn.utils.get_total_norm(grads)))

    optimizer.register_step_pre_hook(before_step)
    return norms


def test_accumulation_and_clipping_changed_mid_run(tmp_path):
    loop = make_loop(tmp_path)
    norms = record_steps(loop.state.optimizer)
    loop.train_epoch(1)
    batches = math.ceil(len(loop.state.data.train) / 64)
    assert len(norms) == batches
    assert max(norms) > 0.05

    change(loop, 1, gradient_accumulation_enabled=True, gradient_accumulation_steps=4,
           gradient_clipping=True, gradient_clipping_value=0.05)
    norms.clear()
    metrics = loop.train_epoch(2)
    assert len(norms) == math.ceil(batches / 4)
    assert max(norms) <= 0.05 * (1 + 1e-4)
    assert metrics["train/grad_norm"] > 0.05  # reported before clipping


def test_label_smoothing_changed_mid_run(tmp_path):
    # Same seed, same start; a rate high enough that the plain loss falls fast in one epoch.
    plain, smoothed = make_loop(tmp_path / "a", learning_rate=0.01), make_loop(tmp_path / "b", learning_rate=0.01)
    change(smoothed, 0, label_smoothing_enabled=True, label_smoothing=0.9)
    assert smoothed.train_epoch(1)["train/loss"] > plain.train_epoch(1)["train/loss"] + 0.5


def test_optimizer_switch_and_betas_mid_run(tmp_path):
    loop = make_loop(tmp_path)
    loop.train_epoch(1)
    assert isinstance(loop.state.optimizer, torch.optim.Adam)

    change(loop, 1, beta1=0.8)
    assert {g["betas"] for g in loop.state.optimizer.param_groups} == {(0.8, 0.999)}

    change(loop, 1, optimizer="SGD", momentum=0.5, nesterov=True, learning_rate=0.05)
    optimizer = loop.state.optimizer
    assert isinstance(optimizer, torch.optim.SGD)
    assert [(g["momentum"], g["nesterov"]) for g in optimizer.param_groups] == [(0.5, True)]
    steps = record_steps(optimizer)
    loop.train_epoch(2)
    assert len(steps) == math.ceil(len(loop.state.data.train) / 64)  # the new optimizer does the stepping
    assert {g["lr"] for g in optimizer.param_groups} == {0.05}


def test_nesterov_without_momentum_is_refused():
    from tiller.trainer.steering.config import ConfigError

    with pytest.raises(ConfigError, match="nesterov needs momentum > 0"):
        validate_config({"optimizer": "SGD", "nesterov": True, "momentum": 0.0})


def test_early_stopping_switched_on_mid_run_restores_the_best_weights(tmp_path):
    loop = make_loop(tmp_path)
    stop, model = loop.state.early_stop, loop.state.model
    best = None
    for epoch, val_loss in enumerate([1.0, 0.5, 0.7, 0.8], start=1):
        with torch.no_grad():
            next(model.parameters()).add_(1.0)  # the weights move every epoch
        stop.observe(epoch, val_loss, model)
        if epoch == 2:
            best = {k: v.clone() for k, v in model.state_dict().items()}
    assert not stop.should_stop(4, loop.state.config)  # off by default

    change(loop, 4, early_stopping=True, early_stopping_patience=2)
    assert stop.should_stop(4, loop.state.config)  # epochs 3 and 4 did not improve
    loop.stop_early(4)
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    events = loop.run.store.events(loop.run.id)["message"].tolist()
    assert events[0].startswith("Early stopping after epoch 4") and "weights of epoch 2" in events[0]


def test_early_stopping_waits_for_patience():
    from tiller.trainer.engine.early_stop import EarlyStopping

    config = validate_config({"early_stopping": True, "early_stopping_patience": 3})
    stop, model = EarlyStopping(), torch.nn.Linear(1, 1)
    for epoch, loss in enumerate([1.0, 1.1, 1.2], start=1):
        stop.observe(epoch, loss, model)
    assert not stop.should_stop(3, config)
    stop.observe(4, 1.3, model)
    assert stop.should_stop(4, config)
