"""Mixed precision: autocast and plain steps on the CPU, the scaler chosen for CUDA
(built, never run: this machine has no GPU), and the scaler's step logic on a CPU scaler."""

import pytest
import torch
import torch.nn as nn

from tiller.trainer.steering.config import validate_config
from tiller.trainer.engine.precision import DYNAMIC_INITIAL_SCALE, Precision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def cuda_amp_available(monkeypatch):
    """GradScaler("cuda") disables itself without a GPU; building one runs no CUDA op."""
    monkeypatch.setattr(torch.cuda.amp.common, "amp_definitely_not_available", lambda: False)


def precision_for(device, previous=None, **keys):
    return Precision.from_config(validate_config(keys), device, previous=previous)


def model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def train_once(precision: Precision, seed: int = 0) -> nn.Module:
    model, optimizer = model_and_optimizer(seed)
    with precision.autocast():
        loss = model(torch.ones(4, 3)).float().pow(2).mean()
    precision.backward(loss)
    precision.unscale_(optimizer)
    precision.step(optimizer)
    return model


def test_off_means_no_autocast_and_a_plain_optimizer_step():
    precision = precision_for(CPU)
    assert precision.dtype is None and precision.scaler is None and precision.scale is None
    with precision.autocast():
        assert nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.float32
    model, optimizer = model_and_optimizer()
    model(torch.ones(4, 3)).pow(2).mean().backward()
    optimizer.step()
    assert torch.equal(train_once(precision).weight, model.weight)
    assert precision.describe() == "full precision (float32)"


def test_cpu_autocasts_to_bfloat16_without_a_scaler():
    precision = precision_for(CPU, mixed_precision=True, loss_scale="static")
    assert precision.dtype == torch.bfloat16 and precision.scaler is None and precision.loss_scaling is None
    with precision.autocast():
        assert nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.bfloat16
    assert nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.float32  # only inside the context
    before = model_and_optimizer()[0].weight.detach().clone()
    assert not torch.equal(train_once(precision).weight, before)
    assert precision.describe() == "bf16 autocast on cpu, no loss scaling (bf16 needs none)"


def test_cuda_dynamic_scaling_starts_at_65536(cuda_amp_available):
    precision = precision_for(CUDA, mixed_precision=True)
    assert precision.dtype == torch.float16 and precision.loss_scaling == "dynamic"
    assert precision.scale == DYNAMIC_INITIAL_SCALE and precision.fixed_scale is None
    assert precision.describe() == "fp16 autocast on cuda, dynamic loss scaling from 65536"


def test_cuda_static_scaling_keeps_the_configured_scale(cuda_amp_available):
    precision = precision_for(CUDA, mixed_precision=True, loss_scale="static", static_loss_scale=512.0)
    assert precision.dtype == torch.float16 and precision.loss_scaling == "static"
    assert precision.scale == 512.0 and precision.fixed_scale == 512.0
    assert precision.describe() == "fp16 autocast on cuda, static loss scale 512"


def test_cuda_without_loss_scaling_has_no_scaler(cuda_amp_available):
    precision = precision_for(CUDA, mixed_precision=True, loss_scaling_enabled=False)
    assert precision.dtype == torch.float16 and precision.scaler is None
    assert precision.describe() == "fp16 autocast on cuda, no loss scaling (small gradients may underflow)"


def test_a_hot_change_keeps_the_dynamic_scale_reached(cuda_amp_available):
    dynamic = precision_for(CUDA, mixed_precision=True)
    dynamic.scaler.load_state_dict({**dynamic.scaler.state_dict(), "scale": 1024.0})  # as if it had backed off
    rebuilt = precision_for(CUDA, dynamic, mixed_precision=True, static_loss_scale=64.0)
    assert rebuilt.scaler is dynamic.scaler and rebuilt.scale == 1024.0


def test_static_to_dynamic_goes_on_from_the_static_scale(cuda_amp_available):
    static = precision_for(CUDA, mixed_precision=True, loss_scale="static", static_loss_scale=256.0)
    assert precision_for(CUDA, static, mixed_precision=True).scale == 256.0


def test_turning_scaling_back_on_starts_afresh(cuda_amp_available):
    unscaled = precision_for(CUDA, mixed_precision=True, loss_scaling_enabled=False)
    assert precision_for(CUDA, unscaled, mixed_precision=True).scale == DYNAMIC_INITIAL_SCALE


# The scaler logic on a CPU GradScaler (torch supports one), built the way from_config builds it.

def scaled(fixed_scale=None) -> Precision:
    return Precision(CPU, None, torch.amp.GradScaler("cpu", init_scale=128.0), fixed_scale=fixed_scale)


def test_unscale_gives_clipping_the_true_gradients():
    model, _ = model_and_optimizer()
    model(torch.ones(4, 3)).pow(2).mean().backward()
    true_grad = model.weight.grad.clone()
    precision = scaled()
    model, optimizer = model_and_optimizer()
    precision.backward(model(torch.ones(4, 3)).pow(2).mean())
    assert torch.allclose(model.weight.grad, 128.0 * true_grad)
    precision.unscale_(optimizer)
    assert torch.allclose(model.weight.grad, true_grad)


@pytest.mark.parametrize("fixed_scale, scale_after", [(None, 64.0), (128.0, 128.0)])
def test_an_overflow_skips_the_step_and_only_a_dynamic_scale_backs_off(fixed_scale, scale_after):
    precision = scaled(fixed_scale)
    model, optimizer = model_and_optimizer()
    before = model.weight.detach().clone()
    precision.backward(model(torch.ones(4, 3)).pow(2).mean())
    model.weight.grad.fill_(float("inf"))
    precision.unscale_(optimizer)
    precision.step(optimizer)
    assert torch.equal(model.weight, before)
    assert precision.scale == scale_after


def test_a_clean_static_step_updates_the_weights_and_keeps_the_scale():
    precision = scaled(128.0)
    plain = train_once(precision_for(CPU))
    assert torch.allclose(train_once(precision).weight, plain.weight)
    assert precision.scale == 128.0
