"""Keras' ``imdb.npz``: reviews as word ranks (1 = the most frequent word), keys
x_train, y_train, x_test, y_test. Train and test are pooled and split like any
other source.

The reviews are ragged, stored as pickled object arrays, and unpickling can run
code: load only an imdb.npz from a trusted source (such as Keras' own download).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np

from trainer.data.base import DataError, DataSplit
from trainer.data.paths import the_file
from trainer.data.sequences import FIRST_WORD, OOV, START, pad_sequences, split_sequences
from trainer.data.split import stratified_split

KEYS = ("x_train", "y_train", "x_test", "y_test")
PARTS = ("train", "test")
CLASS_NAMES = ["negative", "positive"]


def load_imdb_npz(path: Path, config) -> DataSplit:
    npz_path = the_file(path, ".npz", "imdb_npz")
    arrays = read_npz(npz_path)
    sequences, labels, ids = [], [], []
    for part in PARTS:
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if len(x) != len(y):
            raise DataError(f"{npz_path.name}: x_{part} holds {len(x):,} reviews but y_{part} "
                            f"{len(y):,} labels")
        sequences += keras_sequences(x, config.vocab_size, npz_path.name)
        labels.append(np.asarray(y).astype(np.int64).ravel())
        ids += [f"{npz_path.name}#{part}/{i}" for i in range(len(x))]
    labels = np.concatenate(labels)
    if not set(np.unique(labels)) <= {0, 1}:
        raise DataError(f"{npz_path.name}: labels must be 0 (negative) or 1 (positive); found "
                        f"{sorted(set(np.unique(labels).tolist()))[:10]}")
    train, val = stratified_split(labels, CLASS_NAMES, config.val_split, config.seed)
    return split_sequences(pad_sequences(sequences, config.max_len), labels, train, val,
                           class_names=list(CLASS_NAMES), ids=ids, vocab_size=config.vocab_size, skipped=[],
                           source=f"IMDB npz {npz_path} ({len(labels):,} reviews)")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The four arrays. Unpickling is allowed only when plain arrays will not do, because
    an npz with pickled objects can run code when loaded: it must come from a trusted source."""
    if not zipfile.is_zipfile(path):
        # np.load would take any other file for a bare pickle: never unpickle that.
        raise DataError(f"{path.name} is not a readable .npz file (not a zip archive)")
    try:
        return _read_arrays(path, allow_pickle=False)
    except DataError:
        raise
    except ValueError:  # "Object arrays cannot be loaded when allow_pickle=False"
        return _read_arrays(path, allow_pickle=True)


def _read_arrays(path: Path, *, allow_pickle: bool) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=allow_pickle) as npz:
            missing = [key for key in KEYS if key not in npz.files]
            if missing:
                raise DataError(f"{path.name} is not a Keras imdb.npz: it lacks {', '.join(missing)} "
                                f"(it has {', '.join(npz.files) or 'no arrays'})")
            return {key: npz[key] for key in KEYS}
    except (zipfile.BadZipFile, pickle.UnpicklingError, OSError, EOFError) as exc:
        raise DataError(f"{path.name} is not a readable .npz file ({exc})") from None


def keras_sequences(x: np.ndarray, vocab_size: int, name: str) -> list[np.ndarray]:
    """Keras' imdb.load_data convention: [1] + [rank + 3 ...], ranks >= vocab_size - 3 become 2."""
    try:
        lengths = np.array([len(review) for review in x])
        words = np.concatenate([np.asarray(review, dtype=np.int64) for review in x]) if len(x) else np.array([])
    except (TypeError, ValueError):
        raise DataError(f"{name}: each review must be a list of word ranks (whole numbers)") from None
    words = words.astype(np.int64) + FIRST_WORD
    words[words >= vocab_size] = OOV
    return [np.concatenate(([START], review)) for review in np.split(words, np.cumsum(lengths)[:-1])]
