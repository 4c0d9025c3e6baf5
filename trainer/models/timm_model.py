"""timm models as Tiller classifiers: with their own classifier, or with seed 002's head."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from tiller.trainer.models.classifier import Classifier, DataShape, InputNormalization, LayerGroup
from tiller.trainer.steering.config import TrainConfig
from tiller.trainer.models.pretrained import WeightsFile, file_backbone, hub_backbone


class TimmClassifier(Classifier):
    """A timm model with its own classifier."""

    def __init__(self, backbone: nn.Module, normalize: nn.Module):
        super().__init__()
        self.normalize, self.backbone = normalize, backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        spatial = self.backbone.forward_features(self.normalize(x))
        return self.backbone.forward_head(spatial, pre_logits=True)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.get_classifier().parameters())

    def backbone_groups(self) -> list[LayerGroup]:
        return timm_layer_groups(self.backbone, self.head_parameters())


class Seed002Classifier(Classifier):
    """A timm model's pooled features (built with num_classes=0) -> seed 002's head."""

    def __init__(self, backbone: nn.Module, head: nn.Sequential, normalize: nn.Module):
        super().__init__()
        self.normalize, self.backbone, self.head = normalize, backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.normalize(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head[:-1](self.backbone(self.normalize(x)))

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def backbone_groups(self) -> list[LayerGroup]:
        return timm_layer_groups(self.backbone, [])


def seed002_head(in_features: int, hidden: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Seed 002: Dense hidden ReLU -> Dropout -> BatchNorm -> Dense classes (logits)."""
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.BatchNorm1d(hidden),
        nn.Linear(hidden, num_classes),
    )


def build_timm_classifier(
    name: str, config: TrainConfig, data: DataShape, dropout: float, weights: WeightsFile | None
) -> Classifier:
    """``name`` from timm with the head ``config.head`` asks for, starting from ``weights`` or the hub
    when ``use_pretrained``. A Tiller checkpoint in ``weights`` is left for the caller to load."""
    if data.kind != "image":
        raise ValueError(f"{name} is an image model, and this data is {data.kind}: use model_name "
                         f"text_embedding_bag")
    seed002 = config.head == "seed002"
    kwargs = {
        "num_classes": 0 if seed002 else data.num_classes,  # 0: timm returns pooled features
        "in_chans": data.in_channels,
        "drop_rate": 0.0 if seed002 else dropout,  # seed 002 drops only inside its head
    }
    backbone, notes = _backbone(name, kwargs, config.use_pretrained, weights)
    normalize = _input_normalization(backbone, data.in_channels, config.use_pretrained, weights)
    if isinstance(normalize, InputNormalization):
        cfg = backbone.pretrained_cfg
        notes.append(f"inputs are normalised inside the model with the pretrained weights' mean "
                     f"{tuple(cfg['mean'])} and std {tuple(cfg['std'])}")
    if seed002:
        # head_hidden_size: the width of forward_head's pooled output (mobilenetv3's conv_head widens it)
        width = getattr(backbone, "head_hidden_size", None) or backbone.num_features
        model: Classifier = Seed002Classifier(
            backbone, seed002_head(width, config.hidden_size, data.num_classes, dropout), normalize)
    else:
        model = TimmClassifier(backbone, normalize)
    model.build_notes += notes
    return model


def _backbone(name: str, kwargs: dict[str, Any], use_pretrained: bool, weights: WeightsFile | None):
    import timm  # slow to import; only timm models need it

    if use_pretrained and weights is None:
        return hub_backbone(name, kwargs)
    if use_pretrained and not weights.from_tiller:
        return file_backbone(name, kwargs, weights)
    return timm.create_model(name, **kwargs), []


def _input_normalization(backbone: nn.Module, channels: int, use_pretrained: bool,
                         weights: WeightsFile | None) -> nn.Module:
    """Pretrained weights saw normalised images; a Tiller checkpoint did iff it holds the statistics."""
    if weights is not None and weights.from_tiller:
        wanted = "normalize.mean" in weights.tensors
    else:
        wanted = use_pretrained
    if not wanted:
        return nn.Identity()
    return InputNormalization(backbone.pretrained_cfg["mean"], backbone.pretrained_cfg["std"], channels)


def timm_layer_groups(backbone: nn.Module, head: list[nn.Parameter]) -> list[LayerGroup]:
    """timm's own fine-grained layer groups (stem, each block, ...), in order, without the head."""
    from timm.models import group_parameters

    head_ids = {id(p) for p in head}
    params = dict(backbone.named_parameters())
    groups = []
    for names in group_parameters(backbone, backbone.group_matcher(coarse=False)).values():
        kept = [n for n in names if id(params[n]) not in head_ids]  # mobilenetv3 groups conv_head with it
        if kept:
            groups.append((_group_name(kept, list(params)), [params[n] for n in kept]))
    return groups


def _group_name(param_names: list[str], all_names: list[str]) -> str:
    """'layer1.0' when the group is one whole submodule; else its modules, 'conv1 + bn1' or 'first … last'."""
    modules = list(dict.fromkeys(n.rpartition(".")[0] or n for n in param_names))
    common = []
    for parts in zip(*(m.split(".") for m in modules)):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    prefix = ".".join(common) + "."
    if common and sum(n.startswith(prefix) for n in all_names) == len(param_names):
        return prefix[:-1]
    return " + ".join(modules) if len(modules) <= 3 else f"{modules[0]} … {modules[-1]}"
