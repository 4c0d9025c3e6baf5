import types

import torch
import torch.nn.functional as F

from tiller.trainer.steering.config import TrainConfig
from tiller.trainer.engine.freeze import apply_freeze, train_mode
from tiller.trainer.models.build import build_model

IMAGES = types.SimpleNamespace(kind="image", num_classes=3, in_channels=3, image_size=32, vocab_size=0)


def build(name="resnet18", **values):
    return build_model(TrainConfig(model_name=name, **values), IMAGES)


def ids(params):
    return {id(p) for p in params}


def test_timm_groups_are_timms_in_order_without_the_head():
    model = build("mobilenetv3_small_050")
    groups = model.backbone_groups()
    names = [name for name, _ in groups]
    assert names[:3] == ["conv_stem + bn1", "blocks.0.0", "blocks.1.0"] and names[-1] == "conv_head"
    assert len(groups) == 14
    grouped = [id(p) for _, params in groups for p in params]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) | ids(model.head_parameters()) == ids(model.parameters())
    assert not set(grouped) & ids(model.head_parameters())


def test_mlp_groups_are_its_layers_before_the_head():
    model = build("mlp")
    assert [(name, len(params)) for name, params in model.backbone_groups()] == [("hidden", 2)]
    assert ids(model.head_parameters()) == ids(model.output.parameters())


def trainable(model):
    return {id(p) for p in model.parameters() if p.requires_grad}


def test_freeze_backbone_leaves_only_the_head_training():
    model = build(head="seed002")
    report = apply_freeze(model, model_config(freeze_backbone=True, fine_tune_at=2))
    assert trainable(model) == ids(model.head.parameters())
    assert (report.frozen_groups, report.total_groups) == (9, 9)
    assert report.trainable_params == sum(p.numel() for p in model.head.parameters())
    assert report.describe().startswith("backbone frozen, only the head trains")


def model_config(**values):
    return TrainConfig(model_name="resnet18", **values)


def test_fine_tune_at_freezes_exactly_the_first_groups_and_can_change_mid_run():
    model = build()
    groups = model.backbone_groups()
    report = apply_freeze(model, model_config(fine_tune_at=3))
    frozen = {id(p) for _, params in groups[:3] for p in params}
    assert trainable(model) == ids(model.parameters()) - frozen
    assert report.describe().startswith("fine_tune_at 3: the first 3 of 9 backbone layer groups are frozen")

    report = apply_freeze(model, model_config(fine_tune_at=100))  # seed 002's value counts Keras layers
    assert trainable(model) == ids(model.head_parameters())
    assert "beyond the backbone's 9 layer groups" in report.describe()

    report = apply_freeze(model, model_config(fine_tune_at=0))
    assert trainable(model) == ids(model.parameters())
    assert report.trainable_params == report.total_params and report.frozen_groups == 0


def train_step(model, optimizer, inputs, targets):
    train_mode(model)
    F.cross_entropy(model(inputs), targets).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)  # as the loop does


def test_unfreezing_mid_run_needs_no_new_optimizer_and_keeps_adam_state():
    torch.manual_seed(0)
    model = build("mlp")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)  # all parameters, as trainer/engine/optim.py
    inputs, targets = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])

    F.cross_entropy(model(inputs), targets).backward()  # a gradient left over from before freezing
    apply_freeze(model, model_config(freeze_backbone=True))
    assert model.hidden.weight.grad is None and model.output.weight.grad is not None
    hidden, output = model.hidden.weight.clone(), model.output.weight.clone()
    train_step(model, optimizer, inputs, targets)
    assert torch.equal(model.hidden.weight, hidden)
    assert not torch.equal(model.output.weight, output)
    assert model.hidden.weight not in optimizer.state

    apply_freeze(model, model_config(freeze_backbone=False))
    train_step(model, optimizer, inputs, targets)
    assert not torch.equal(model.hidden.weight, hidden)
    assert optimizer.state[model.output.weight]["step"] == 2  # the head's moments carried on
    assert optimizer.state[model.hidden.weight]["step"] == 1


def test_frozen_batchnorm_stays_in_eval_mode_and_keeps_its_statistics():
    model = build(head="seed002")
    apply_freeze(model, model_config(freeze_backbone=True))
    train_mode(model)
    assert not model.backbone.bn1.training and not model.backbone.layer1[0].bn1.training
    assert model.head[3].training and model.training  # the head's BatchNorm trains
    before = model.backbone.bn1.running_mean.clone()
    model(torch.rand(4, 3, 32, 32))
    assert torch.equal(model.backbone.bn1.running_mean, before)

    apply_freeze(model, model_config(fine_tune_at=1))  # only the stem (conv1 + bn1) stays frozen
    train_mode(model)
    assert not model.backbone.bn1.training and model.backbone.layer1[0].bn1.training
