"""Seed 004's text model: averaged word embeddings -> Dense -> one logit."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tiller.trainer.models.classifier import Classifier, LayerGroup

PADDING = 0  # token id of padding: it has no embedding and is left out of the average


class TextEmbeddingBag(Classifier):
    """Embedding -> mean over real tokens -> Dropout -> Dense(embedding_dim) ReLU -> Dense 1."""

    binary = True

    def __init__(self, vocab_size: int, embedding_dim: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PADDING)
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(embedding_dim, embedding_dim)
        self.output = nn.Linear(embedding_dim, 1)

    def mean_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != PADDING).unsqueeze(-1).float()
        total = (self.embedding(tokens) * mask).sum(dim=1)
        return total / mask.sum(dim=1).clamp(min=1.0)  # an all-padding row averages to zeros

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.relu(self.hidden(self.dropout(self.mean_embedding(tokens))))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(tokens))

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.output.parameters())

    def backbone_groups(self) -> list[LayerGroup]:
        return [("embedding", list(self.embedding.parameters())), ("hidden", list(self.hidden.parameters()))]
