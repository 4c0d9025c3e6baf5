"""Words to index sequences, Keras-style: 0 pads, 1 starts, 2 is out-of-vocabulary,
words count from 3. Sequences are padded at the end and cut at the start to
max_len, as seed 004's ``pad_sequences(..., padding='post', maxlen=256)`` does
(its truncating is left at Keras' default, 'pre')."""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import TensorDataset

from tiller.trainer.data.base import DataSplit

PAD, START, OOV = 0, 1, 2
FIRST_WORD = 3

# Chinese and Japanese are written without spaces, so each of their characters is a
# token; any other run of letters and digits (accents included) is one word.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def build_vocab(token_lists: Iterable[list[str]], vocab_size: int) -> dict[str, int]:
    """The vocab_size - 3 most frequent words -> 3, 4, ...; ties go alphabetically."""
    counts = Counter(word for tokens in token_lists for word in tokens)
    ranked = sorted(counts, key=lambda word: (-counts[word], word))[: max(vocab_size - FIRST_WORD, 0)]
    return {word: FIRST_WORD + rank for rank, word in enumerate(ranked)}


def encode(tokens: list[str], vocab: dict[str, int]) -> np.ndarray:
    return np.array([START] + [vocab.get(word, OOV) for word in tokens], dtype=np.int64)


def pad_sequences(sequences: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """(N, max_len) int64: short sequences padded with 0 at the end, long ones keep their last max_len."""
    padded = np.full((len(sequences), max_len), PAD, dtype=np.int64)
    for row, sequence in zip(padded, sequences):
        kept = sequence[-max_len:]
        row[: len(kept)] = kept
    return padded


def split_sequences(padded: np.ndarray, labels: np.ndarray, train: np.ndarray, val: np.ndarray, *,
                    class_names: list[str], ids: list[str], vocab_size: int, skipped: list[str],
                    source: str) -> DataSplit:
    """A text ``DataSplit`` from padded sequences and the split's indices."""
    inputs, targets = torch.from_numpy(padded), torch.as_tensor(labels, dtype=torch.long)
    train_idx, val_idx = torch.as_tensor(train), torch.as_tensor(val)
    return DataSplit(
        train=TensorDataset(inputs[train_idx], targets[train_idx]),
        val=TensorDataset(inputs[val_idx], targets[val_idx]),
        class_names=class_names,
        kind="text",
        in_channels=0,
        image_size=0,
        train_labels=targets[train_idx],
        val_labels=targets[val_idx],
        val_ids=[ids[i] for i in val],
        skipped=skipped,
        source=source,
        vocab_size=vocab_size,
    )
