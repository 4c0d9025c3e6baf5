"""Keras' ``imdb.npz``: reviews as word ranks (1 = the most frequent word), keys
x_train, y_train, x_test, y_test. Train and test are pooled and split like any
other source.

The reviews are ragged, stored as pickled object arrays, and unpickling can run
code: load only an imdb.npz from a trusted source (such as Keras' own download).

The arrays are written by a program, so a bad value in them (a label that is not 0 or
1, such as 2, 0.5, NaN or None; a negative word rank) means the wrong file or a bug in
what wrote it: the file is refused, naming the first bad entries, rather than patched.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np

from tiller.trainer.data.base import DataError, DataSplit
from tiller.trainer.data.paths import the_file
from tiller.trainer.data.sequences import FIRST_WORD, OOV, START, pad_sequences, split_sequences
from tiller.trainer.data.split import stratified_split

LAYOUT = "a Keras imdb.npz (x_train, y_train, x_test, y_test) or the folder holding it"
KEYS = ("x_train", "y_train", "x_test", "y_test")
SHOWN = 5  # bad entries named in a message
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
        sequences += keras_sequences(x, config.vocab_size, f"{npz_path.name}: x_{part}")
        labels.append(binary_labels(y, npz_path.name, f"y_{part}"))
        ids += [f"{npz_path.name}#{part}/{i}" for i in range(len(x))]
    labels = np.concatenate(labels)
    train, val = stratified_split(labels, CLASS_NAMES, config.val_split, config.seed, ids)
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


def binary_labels(y: np.ndarray, name: str, key: str) -> np.ndarray:
    """``y`` as 0/1 int64 (True/False and 0.0/1.0 count as well); anything else is refused."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:  # a column vector: still one label per review
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{name}: {key} has shape {y.shape}; expected one label per review, 0 (negative) "
                        f"or 1 (positive), not one-hot rows")
    bad = [(i, value) for i, value in enumerate(y.tolist()) if value not in (0, 1)]
    if bad:
        shown = ", ".join(f"{key}[{i}] is {value!r}" for i, value in bad[:SHOWN])
        raise DataError(f"{name}: labels must be 0 (negative) or 1 (positive); {shown} "
                        f"({len(bad):,} bad label{'s' * (len(bad) > 1)} in all)")
    return y.astype(np.int64)


def keras_sequences(x: np.ndarray, vocab_size: int, where: str) -> list[np.ndarray]:
    """Keras' imdb.load_data convention: [1] + [rank + 3 ...], ranks >= vocab_size - 3 become 2."""
    try:
        lengths = np.array([len(review) for review in x])
        words = np.concatenate([np.asarray(review, dtype=np.int64) for review in x]) if len(x) else np.array([])
    except (TypeError, ValueError):
        raise DataError(f"{where}: each review must be a list of word ranks (whole numbers)") from None
    if len(words) and words.min() < 0:
        # it would index the embedding table from the end, or fail in the middle of training
        first = np.flatnonzero(words < 0)[0]
        review = int(np.searchsorted(np.cumsum(lengths), first, side="right"))
        raise DataError(f"{where}[{review}] holds the word rank {words[first]}; ranks are whole numbers from 0")
    words = words.astype(np.int64) + FIRST_WORD
    words[words >= vocab_size] = OOV
    return [np.concatenate(([START], review)) for review in np.split(words, np.cumsum(lengths)[:-1])]
