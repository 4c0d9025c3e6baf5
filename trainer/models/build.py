"""Models by name: seed 001's MLP, seed 004's text model, or any timm model (optionally with
seed 002's head), each a ``Classifier`` (see trainer/models/classifier.py)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tiller.trainer.models.classifier import Classifier, DataShape, LayerGroup, dropout_modules_at
from tiller.trainer.steering.config import TrainConfig
from tiller.trainer.models.names import TILLER_MODELS, resolve_model_name
from tiller.trainer.models.pretrained import WeightsFile, load_matching, read_weights_file
from tiller.trainer.models.text_model import TextEmbeddingBag

# Every model is built with this dropout rate, so the modules that end up with it are
# exactly the ones dropout_rate controls; then they are set to the config's rate.
# Building with a rate > 0 also makes timm create its dropout layers when the config says 0,
# so dropout can be raised mid-run.
_SITE_MARKER = 0.012_345_678_9


class MLP(Classifier):
    """Seed 001: Flatten -> Dense hidden ReLU -> Dropout -> Dense classes (logits)."""

    def __init__(self, in_features: int, hidden: int, num_classes: int, dropout: float):
        super().__init__()
        self.hidden = nn.Linear(in_features, hidden)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.hidden(x.flatten(start_dim=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.dropout(self.features(x)))

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.output.parameters())

    def backbone_groups(self) -> list[LayerGroup]:
        return [("hidden", list(self.hidden.parameters()))]


def build_model(config: TrainConfig, data: DataShape) -> Classifier:
    """The model ``config.model_name`` names, for ``data``, with its starting weights.

    What building did that the user should hear about (weights loaded, tensors
    skipped, inputs normalised, pretrained_path not used) is in ``model.build_notes``,
    a list of one-line strings for the run's events.
    """
    name = resolve_model_name(config.model_name)
    weights = _starting_weights(name, config)
    if name == "mlp":
        model = _mlp(config, data)
    elif name == "text_embedding_bag":
        model = _text_model(config, data)
    else:
        from tiller.trainer.models.timm_model import build_timm_classifier  # imports timm, which is slow

        model = build_timm_classifier(name, config, data, _SITE_MARKER, weights)
    if weights is not None and weights.from_tiller:
        model.build_notes.append(load_matching(model, weights))
    if config.pretrained_path and not config.use_pretrained:
        model.build_notes.append(f"pretrained_path {config.pretrained_path} was not loaded: use_pretrained is false")
    model.dropout_sites = dropout_modules_at(model, _SITE_MARKER)
    set_dropout(model, config.dropout_rate)
    return model


def _starting_weights(name: str, config: TrainConfig) -> WeightsFile | None:
    """The file use_pretrained asks to start from; None for random weights or timm's hub."""
    weights = read_weights_file(config.pretrained_path) if config.use_pretrained and config.pretrained_path else None
    if config.use_pretrained and name in TILLER_MODELS and not (weights and weights.from_tiller):
        raise ValueError(f"{name} has no pretrained weights: set use_pretrained: false, or pretrained_path "
                         f"to a Tiller checkpoint of this model")
    return weights


def _mlp(config: TrainConfig, data: DataShape) -> MLP:
    if data.kind != "image":
        raise ValueError(f"mlp trains on images, and this data is {data.kind}: use model_name text_embedding_bag")
    in_features = data.in_channels * data.image_size * data.image_size
    return MLP(in_features, config.hidden_size, data.num_classes, _SITE_MARKER)


def _text_model(config: TrainConfig, data: DataShape) -> TextEmbeddingBag:
    if data.kind != "text" or data.num_classes != 2:
        raise ValueError(f"text_embedding_bag needs text data with exactly 2 classes (one logit, binary "
                         f"cross-entropy); this data is {data.kind} with {data.num_classes} classes")
    return TextEmbeddingBag(data.vocab_size, config.embedding_dim, _SITE_MARKER)


def set_dropout(model: Classifier, rate: float) -> int:
    """Set the drop probability wherever ``dropout_rate`` applies; returns how many places changed.

    Those places are ``model.dropout_sites``: nn.Dropout layers, and timm models'
    ``drop_rate`` attributes (used with F.dropout in their heads).
    """
    for name in model.dropout_sites:
        module = model.get_submodule(name)
        if isinstance(module, nn.Dropout):
            module.p = rate
        else:
            module.drop_rate = rate
    return len(model.dropout_sites)
