"""What every model Tiller builds offers, whatever its architecture."""

from __future__ import annotations

from typing import Protocol, Sequence

import torch
import torch.nn as nn

LayerGroup = tuple[str, list[nn.Parameter]]


class DataShape(Protocol):
    """The only facts about the data a model is built from."""

    kind: str  # "image" or "text"
    num_classes: int
    in_channels: int  # images: 1 or 3; text: 0
    image_size: int
    vocab_size: int  # text: rows of the embedding table


class Classifier(nn.Module):
    """A model with logits, penultimate features and a known split into head and backbone.

    - ``forward(x)``: logits, (N, classes), or (N, 1) when ``binary``
    - ``features(x)``: (N, F) activations just before the last layer, for embedding panels
    - ``head_parameters()``: the classifier head, which ``freeze_backbone`` leaves training
    - ``backbone_groups()``: every other parameter as ordered (name, parameters) layer
      groups, the unit ``fine_tune_at`` counts in
    - ``dropout_sites``: names of the submodules whose rate ``dropout_rate`` sets
    - ``build_notes``: what building it did that the user should hear about
    """

    binary = False  # True: one logit per sample, trained with binary cross-entropy

    def __init__(self) -> None:
        super().__init__()
        self.build_notes: list[str] = []
        self.dropout_sites: list[str] = []

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def head_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def backbone_groups(self) -> list[LayerGroup]:
        raise NotImplementedError


class InputNormalization(nn.Module):
    """(x - mean) / std with pretrained weights' statistics, since Tiller's images come in [0, 1].

    The statistics are buffers saved with the model, so a checkpoint says whether
    the inputs it was trained on were normalised.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels: int):
        super().__init__()
        if channels == 1:  # grey images: the pretrained first conv's channels are summed into one
            mean, std = [sum(mean) / len(mean)], [sum(std) / len(std)]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def dropout_modules_at(model: nn.Module, rate: float) -> list[str]:
    """Names of the submodules that drop with probability exactly ``rate``.

    ``build_model`` builds with a marker rate and asks this where it landed: those
    are the places ``dropout_rate`` controls (timm wires ``drop_rate`` to its head
    only; attention or MLP dropout inside blocks keeps its own setting).
    """
    return [
        name
        for name, module in model.named_modules()
        if (isinstance(module, nn.Dropout) and module.p == rate) or getattr(module, "drop_rate", None) == rate
    ]
