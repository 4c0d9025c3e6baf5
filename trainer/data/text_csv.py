"""A CSV of labelled texts: columns ``text,label`` (or ``review,sentiment``, the
header of the widely shared IMDB CSV). Labels may be numbers or names.

The vocabulary comes from the training split only, so validation words the model
never saw count as out-of-vocabulary, as they would in use.

Encodings, so that no file ends in a UnicodeDecodeError or in unmarked mojibake:

- a byte order mark decides: UTF-8, UTF-16 or UTF-32 (Excel's "CSV UTF-8" and
  "Unicode text" both write one); UTF-16 without a mark is recognised by its zero bytes;
- otherwise UTF-8. A file with no valid UTF-8 beyond ASCII at all is read as
  Windows-1252 (the Western European encoding Excel on Windows saves CSV in, a superset
  of Latin-1), and each row with characters beyond ASCII is noted as read that way;
- a UTF-8 file with some lines that are not UTF-8 keeps those rows, with the bad bytes
  replaced by U+FFFD, and notes each such row.

Bad rows are skipped and noted in ``DataSplit.skipped`` (the run's start warns with the
count and the first few): an empty text, a missing label (empty, NaN, NULL, N/A), a
repeated header row (from concatenated files), and, in a label column of class numbers,
a label that is not a whole number ("2.5", "pos"). "1.0" is the class 1, as pandas
writes integer labels in a column that has a gap. A label held by a single row cannot
be split into training and validation: the run is refused, naming the row, since it
may be a typo or a class that needs more examples, and only the user can tell.
"""

from __future__ import annotations

import codecs
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tiller.trainer.data.base import DataError, DataSplit
from tiller.trainer.data.paths import the_file
from tiller.trainer.data.sequences import build_vocab, encode, pad_sequences, split_sequences, tokenize
from tiller.trainer.data.split import stratified_split

LAYOUT = "a .csv file with a header row text,label (or the folder holding it)"
TEXT_COLUMNS = ("text", "review")
LABEL_COLUMNS = ("label", "sentiment")
REPLACED = "\ufffd"  # what bytes that cannot be decoded become
FALLBACK = "cp1252"
BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
SHOWN_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "utf-16": "UTF-16", "utf-16-le": "UTF-16",
               "utf-16-be": "UTF-16", "utf-32": "UTF-32", FALLBACK: "Windows-1252"}
INTEGER = re.compile(r"[+-]?\d+")
WHOLE_NUMBER = re.compile(r"[+-]?\d+(?:\.0*)?")  # 1, +1, 01, 1.0, 1.
MISSING = {"nan", "null", "n/a", "#n/a"}  # how pandas, databases and spreadsheets write an empty cell


@dataclass(frozen=True)
class Decoding:
    """How a file's bytes became text."""

    encoding: str  # a Python codec name
    replaced: bool  # some bytes could not be decoded and became U+FFFD

    @property
    def name(self) -> str:
        return SHOWN_NAMES.get(self.encoding, self.encoding)


def load_text_csv(path: Path, config) -> DataSplit:
    csv_path = the_file(path, ".csv", "text_csv")
    text, decoding = decode(csv_path.read_bytes())
    frame = read_frame(text, csv_path.name)
    texts, names, row_numbers, dropped, noted = usable_rows(frame, csv_path.name, decoding)
    class_names = sorted_classes(names)
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.array([index[name] for name in names], dtype=np.int64)
    ids = [f"{csv_path.name}#{n}" for n in row_numbers]
    train, val = stratified_split(labels, class_names, config.val_split, config.seed, ids)
    tokens = [tokenize(t) for t in texts]
    vocab = build_vocab((tokens[i] for i in train), config.vocab_size)
    padded = pad_sequences([encode(t, vocab) for t in tokens], config.max_len)
    source = f"text CSV {csv_path} ({len(texts):,} rows{source_notes(decoding, dropped, noted)})"
    return split_sequences(padded, labels, train, val, class_names=class_names, ids=ids,
                           vocab_size=config.vocab_size, skipped=dropped + noted, source=source)


def source_notes(decoding: Decoding, dropped: list[str], noted: list[str]) -> str:
    encoding = "" if decoding.name == "UTF-8" else f", read as {decoding.name}"
    if decoding.encoding == FALLBACK:
        kept = "with characters beyond ASCII"
    else:
        kept = f"with bytes that are not {decoding.name} replaced"
    counts = "".join(f", {len(rows):,} {what}" for rows, what in ((dropped, "skipped"), (noted, kept)) if rows)
    return encoding + counts


# ------------------------------------------------------------------ bytes to text

def decode(raw: bytes) -> tuple[str, Decoding]:
    """The file's text (byte order mark removed), and how it was decoded: see the module's docstring."""
    declared = declared_encoding(raw)
    if declared:
        text = raw.decode(declared, errors="replace")
        return text, Decoding(declared, REPLACED in text)
    try:
        return raw.decode("utf-8"), Decoding("utf-8", False)
    except UnicodeDecodeError:
        pass
    text = raw.decode("utf-8", errors="replace")
    if not text.replace(REPLACED, "").isascii():
        return text, Decoding("utf-8", True)  # real UTF-8 elsewhere: only some lines are broken
    text = raw.decode(FALLBACK, errors="replace")  # 5 byte values mean nothing in cp1252
    return text, Decoding(FALLBACK, REPLACED in text)


def declared_encoding(raw: bytes) -> str | None:
    """The encoding a byte order mark names; UTF-16 without one, from its zero bytes: a CSV
    starts with ASCII, which UTF-16 stores as a zero byte beside each character."""
    for bom, encoding in BOMS:
        if raw.startswith(bom):
            return encoding
    if len(raw) >= 4 and raw[1] == 0 and raw[3] == 0 and raw[0] and raw[2]:
        return "utf-16-le"
    if len(raw) >= 4 and raw[0] == 0 and raw[2] == 0 and raw[1] and raw[3]:
        return "utf-16-be"
    return None


# ------------------------------------------------------------------ text to rows

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


def usable_rows(frame: pd.DataFrame, name: str, decoding: Decoding) -> tuple[list, list, list, list, list]:
    """Texts, label names and row numbers (1 = the first row after the header) of the
    rows that can be used; then a note per row dropped, and per row kept but not read as it is."""
    rows = [(row, text.strip(), normal_label(label)) for row, (text, label)
            in enumerate(zip(frame["text"], frame["label"]), start=1)]
    numbered = holds_class_numbers([label for _, _, label in rows])
    texts, labels, kept, dropped, noted = [], [], [], [], []
    for row, text, label in rows:
        problem = row_problem(text, label, numbered)
        if problem:
            dropped.append(f"{name} row {row}: {problem}, skipped")
            continue
        note = decoding_note(text + label, decoding)
        if note:
            noted.append(f"{name} row {row}: {note}, kept")
        texts.append(text)
        labels.append(label)
        kept.append(row)
    if not texts:
        reasons = f" (for example {'; '.join(dropped[:3])})" if dropped else ""
        raise DataError(f"{name} has no row with both a text and a label{reasons}")
    return texts, labels, kept, dropped, noted


def normal_label(label: str) -> str:
    """The label as a class name: stripped, "" when missing, and whole numbers written one
    way, so that 1, 01, +1 and 1.0 are one class."""
    label = label.strip()
    if label.lower() in MISSING:
        return ""
    if WHOLE_NUMBER.fullmatch(label):
        return str(int(label.split(".")[0]))
    return label


def holds_class_numbers(labels: list[str]) -> bool:
    """Most labels are whole numbers: the column numbers the classes, and a label that is
    not one is a bad row, not a class of its own."""
    present = [label for label in labels if label]
    return sum(bool(INTEGER.fullmatch(label)) for label in present) * 2 > len(present)


def row_problem(text: str, label: str, numbered: bool) -> str:
    """Why a row cannot be used, or "" when it can."""
    if text.lower() in TEXT_COLUMNS and label.lower() in LABEL_COLUMNS:
        return "a repeated header row"
    if not text:
        return "empty text"
    if not label:
        return "no label"
    if numbered and not INTEGER.fullmatch(label):
        return f"label {label!r} is not a whole number, as the other labels are"
    return ""


def decoding_note(row_text: str, decoding: Decoding) -> str:
    if decoding.replaced and REPLACED in row_text:
        return f"bytes that are not {decoding.name} were replaced with {REPLACED}"
    if decoding.encoding == FALLBACK and not row_text.isascii():
        return "the file is not UTF-8: read as Windows-1252"
    return ""


def sorted_classes(labels: list[str]) -> list[str]:
    """Distinct labels in order: by value when they are all whole numbers (so 2 comes before 10)."""
    distinct = set(labels)
    if all(INTEGER.fullmatch(label) for label in distinct):
        return sorted(distinct, key=lambda label: (int(label), label))
    return sorted(distinct)
