"""``dataset: auto``: which source data_dir holds, told from its contents."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from trainer.data.base import DataError
from trainer.data.image_folder import class_folders, image_files
from trainer.data.mnist import has_idx_files
from trainer.data.paths import files_with_suffix, visible_children

EXPECTED = ("a folder of class folders of images (data_dir/<class name>/*.jpg), MNIST IDX files "
            "(train-images-idx3-ubyte ...), a .csv with columns text,label, or a Keras imdb.npz")
BY_SUFFIX = {".csv": "text_csv", ".npz": "imdb_npz"}


def detect_dataset(path: Path) -> str:
    if path.is_file():
        if path.suffix.lower() in BY_SUFFIX:
            return BY_SUFFIX[path.suffix.lower()]
        raise DataError(f"data_dir {path} is a {path.suffix or 'suffix-less'} file; expected {EXPECTED}")
    if has_idx_files(path):
        return "mnist"
    if any(image_files(folder) for folder in class_folders(path)):
        return "image_folder"
    for suffix, dataset in BY_SUFFIX.items():
        found = files_with_suffix(path, suffix)
        if len(found) > 1:
            raise DataError(f"{path} holds {len(found)} {suffix} files ({', '.join(p.name for p in found)}); "
                            f"set data_dir to the one to train on")
        if found:
            return dataset
    raise DataError(f"cannot tell what data {path} holds: it has {describe_contents(path)}; expected {EXPECTED}")


def describe_contents(folder: Path) -> str:
    """'3 files (.json, .txt) and 2 folders (train, test) with no images directly in them'."""
    children = visible_children(folder)
    files = [p for p in children if p.is_file()]
    folders = [p for p in children if p.is_dir()]
    if not children:
        return "nothing in it"
    suffixes = Counter(p.suffix.lower() or "no suffix" for p in files)
    parts = []
    if files:
        parts.append(f"{len(files)} files ({', '.join(sorted(suffixes))})")
    if folders:
        names = ", ".join(p.name for p in folders[:5]) + (", ..." if len(folders) > 5 else "")
        parts.append(f"{len(folders)} folders ({names}) with no images directly in them; if they hold "
                     f"class folders, set data_dir to one of them")
    return " and ".join(parts)
