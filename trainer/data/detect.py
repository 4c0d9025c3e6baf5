"""``dataset: auto``: which source data_dir holds, told from its contents."""

from __future__ import annotations

from pathlib import Path

from tiller.trainer.data import image_folder, imdb_npz, mnist, text_csv
from tiller.trainer.data.base import DataError
from tiller.trainer.data.image_folder import class_folders, describe_files, image_files, names, split_folder_hint
from tiller.trainer.data.mnist import has_idx_files
from tiller.trainer.data.paths import files_with_suffix, visible_children

LAYOUTS = {
    "image_folder": image_folder.LAYOUT,
    "mnist": mnist.LAYOUT,
    "text_csv": text_csv.LAYOUT,
    "imdb_npz": imdb_npz.LAYOUT,
}
EXPECTED = ", ".join(list(LAYOUTS.values())[:-1]) + ", or " + list(LAYOUTS.values())[-1]
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
    """'3 files (.json, .txt) and 2 folders (train, test) with no images directly in them',
    and what to do when those folders are a train/val split of class folders."""
    children = visible_children(folder)
    if not children:
        return "nothing in it"
    folders = [p for p in children if p.is_dir()]
    described = describe_files(children)
    if not folders:
        return described
    split = [p for p in folders if any(image_files(c) for c in class_folders(p))]
    if split:
        verb = "hold" if len(split) > 1 else "holds"
        return (f"{described}; {names(split)} {verb} class folders of images rather than images"
                f"{split_folder_hint(split[0])}")
    inside = [child for p in folders for child in visible_children(p)]
    holding = f"holding {describe_files(inside)}" if inside else "all empty"
    return (f"{described}, with no images directly in the folders ({holding}); if they hold class folders, "
            f"set data_dir to one of them")
