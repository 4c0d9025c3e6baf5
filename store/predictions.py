"""Validation predictions as stored: compact bytes in, numpy arrays out.

Probabilities are kept as float16 (two bytes each: 10,000 samples x 10 classes
is 200 kB per epoch), labels as int32. Raw little-endian bytes plus a shape,
never pickle, so reading a database cannot run code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

PROB_DTYPE = np.dtype("<f2")
LABEL_DTYPE = np.dtype("<i4")
TASKS = ("multiclass", "binary")


@dataclass(frozen=True)
class Predictions:
    """One epoch's validation predictions of one run."""

    epoch: int
    probs: np.ndarray  # (samples, classes) float32, rows sum to ~1
    labels: np.ndarray  # (samples,) int
    sample_ids: list[str]
    class_names: list[str]
    task: str  # multiclass / binary
    train_counts: list[int] | None = None  # training samples per class, when recorded

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


def encode_probs(probs: np.ndarray) -> tuple[bytes, int, int]:
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be (samples, classes), not shape {probs.shape}")
    return probs.astype(PROB_DTYPE).tobytes(), probs.shape[0], probs.shape[1]


def decode_probs(blob: bytes, rows: int, cols: int) -> np.ndarray:
    return np.frombuffer(blob, dtype=PROB_DTYPE).reshape(rows, cols).astype(np.float32)


def encode_labels(labels: np.ndarray) -> bytes:
    return np.asarray(labels).astype(LABEL_DTYPE).tobytes()


def decode_labels(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=LABEL_DTYPE).astype(np.int64)


def samples_row(run_id: str, labels, sample_ids: list[str], class_names: list[str], task: str,
                train_counts: list[int] | None = None) -> dict:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if len(sample_ids) != len(labels):
        raise ValueError(f"{len(sample_ids)} sample ids for {len(labels)} labels")
    return {
        "run_id": run_id,
        "task": task,
        "class_names": json.dumps(list(class_names), ensure_ascii=False),
        "labels": encode_labels(labels),
        "sample_ids": json.dumps(list(sample_ids), ensure_ascii=False),
        "count": len(labels),
        "train_counts": None if train_counts is None else json.dumps([int(n) for n in train_counts]),
    }
