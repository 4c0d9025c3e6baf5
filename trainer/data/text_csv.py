"""A CSV of labelled texts: columns ``text,label`` (or ``review,sentiment``, the
header of the widely shared IMDB CSV). Labels may be numbers or names.

The vocabulary comes from the training split only, so validation words the model
never saw count as out-of-vocabulary, as they would in use.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from trainer.data.base import DataError, DataSplit
from trainer.data.paths import the_file
from trainer.data.sequences import build_vocab, encode, pad_sequences, split_sequences, tokenize
from trainer.data.split import stratified_split

TEXT_COLUMNS = ("text", "review")
LABEL_COLUMNS = ("label", "sentiment")
REPLACED = "\ufffd"  # what bytes that are not UTF-8 become
INTEGER = re.compile(r"[+-]?\d+")


def load_text_csv(path: Path, config) -> DataSplit:
    csv_path = the_file(path, ".csv", "text_csv")
    text, repaired = decode(csv_path.read_bytes())
    frame = read_frame(text, csv_path.name)
    texts, names, row_numbers, dropped, replaced = usable_rows(frame, csv_path.name, repaired)
    class_names = sorted_classes(names)
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.array([index[name] for name in names], dtype=np.int64)
    train, val = stratified_split(labels, class_names, config.val_split, config.seed)
    tokens = [tokenize(t) for t in texts]
    vocab = build_vocab((tokens[i] for i in train), config.vocab_size)
    padded = pad_sequences([encode(t, vocab) for t in tokens], config.max_len)
    notes = "".join(f", {len(rows):,} {what}" for rows, what in
                    ((dropped, "skipped"), (replaced, "with bytes that are not UTF-8 replaced")) if rows)
    source = f"text CSV {csv_path} ({len(texts):,} rows{notes})"
    return split_sequences(padded, labels, train, val, class_names=class_names,
                           ids=[f"{csv_path.name}#{n}" for n in row_numbers], vocab_size=config.vocab_size,
                           skipped=dropped + replaced, source=source)


def decode(raw: bytes) -> tuple[str, bool]:
    """The file's text, and whether some bytes were not UTF-8 and had to be replaced."""
    try:
        return raw.decode("utf-8-sig"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8-sig", errors="replace"), True


def read_frame(text: str, name: str) -> pd.DataFrame:
    """The text and label columns, every value a string (no NaN, no guessed numbers)."""
    try:
        with warnings.catch_warnings():
            # A row with one field too many would silently become the index, or lose its
            # last field: make pandas say so instead.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, index_col=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{name} is empty; expected a header row text,label and one row per text") from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        raise DataError(f"{name} is not a valid CSV ({exc}); put texts that contain commas or line "
                        f"breaks in double quotes") from None
    columns = {str(column).strip().lower(): column for column in frame.columns}
    text_column = next((columns[c] for c in TEXT_COLUMNS if c in columns), None)
    label_column = next((columns[c] for c in LABEL_COLUMNS if c in columns), None)
    if text_column is None or label_column is None:
        raise DataError(f"{name} needs a header row with columns text and label; it has "
                        f"{', '.join(map(str, frame.columns))}")
    return frame[[text_column, label_column]].set_axis(["text", "label"], axis=1)


def usable_rows(frame: pd.DataFrame, name: str, repaired: bool) -> tuple[list, list, list, list, list]:
    """Texts, label names and row numbers (1 = the first row after the header) of the
    rows that can be used; then a note per row dropped, and per row kept with bytes replaced."""
    texts, labels, rows, dropped, replaced = [], [], [], [], []
    for row, (text, label) in enumerate(zip(frame["text"], frame["label"]), start=1):
        text, label = text.strip(), label.strip()
        if not text or not label:
            dropped.append(f"{name} row {row}: {'empty text' if not text else 'no label'}, skipped")
            continue
        if repaired and (REPLACED in text or REPLACED in label):
            replaced.append(f"{name} row {row}: bytes that are not UTF-8 were replaced with \ufffd, kept")
        texts.append(text)
        labels.append(label)
        rows.append(row)
    if not texts:
        raise DataError(f"{name} has no row with both a text and a label")
    return texts, labels, rows, dropped, replaced


def sorted_classes(labels: list[str]) -> list[str]:
    """Distinct labels in order: by value when they are all whole numbers (so 2 comes before 10)."""
    distinct = set(labels)
    if all(INTEGER.fullmatch(label) for label in distinct):
        return sorted(distinct, key=lambda label: (int(label), label))
    return sorted(distinct)
