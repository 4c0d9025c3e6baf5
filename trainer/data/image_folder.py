"""Class folders, as in IQ-OTH/NCCD: ``data_dir/<class name>/<images>``.

Every image becomes RGB at img_size x img_size (224 when 0), preloaded as uint8.
Tiller makes the validation split itself (``val_split``), so the layout has no
train/ and val/ folders; a data_dir laid out that way is refused with a message
saying which folder to point at.

Bad items are skipped and each is listed in ``DataSplit.skipped`` (the run's start
warns with the count and the first few): files that cannot be read as images
(corrupt, truncated, not really an image whatever their suffix), files in a class
folder that are not images (.txt, .dcm, ...), folders inside a class folder, and
images lying beside the class folders rather than in one. A class with nothing
readable, or a data set with nothing readable at all, stops the run instead.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from tiller.trainer.data.base import DataError, DataSplit
from tiller.trainer.data.paths import visible_children
from tiller.trainer.data.split import split_images

LAYOUT = "a folder of class folders of images (data_dir/<class name>/*.jpg)"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
SPLIT_NAMES = {"train", "training", "val", "valid", "validation", "test", "testing"}
DEFAULT_SIZE = 224
SHOWN = 3  # example names in a message
# PIL's decoders raise many kinds of error on a bad file (OSError, SyntaxError, struct.error,
# DecompressionBombError...): whichever it is, that one file is unreadable.
UNREADABLE = Exception


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def image_files(folder: Path) -> list[Path]:
    return [p for p in visible_children(folder) if is_image_file(p)]


def class_folders(root: Path) -> list[Path]:
    return [p for p in visible_children(root) if p.is_dir()]


def load_image_folder(root: Path, config) -> DataSplit:
    files = files_by_class(root)
    images, labels, ids, unreadable = read_images(root, files, config.img_size or DEFAULT_SIZE)
    skipped = unreadable + left_out(root)
    note = f", {len(skipped):,} skipped" if skipped else ""
    return split_images(images, labels, list(files), ids, config, skipped=skipped,
                        source=f"class folders in {root} ({len(labels):,} images{note})")


def files_by_class(root: Path) -> dict[str, list[Path]]:
    files = {folder.name: image_files(folder) for folder in find_class_folders(root)}
    for name, paths in files.items():
        if not paths:
            raise DataError(no_images_message(root, root / name))
    return files


def no_images_message(root: Path, folder: Path) -> str:
    """Why a class folder holds no images: it is a split folder, or holds other files, or nothing."""
    nested = [child for child in class_folders(folder) if image_files(child)]
    if nested:
        return (f"{folder} holds folders of images ({names(nested)}) rather than images: expected "
                f"{root}/<class name>/<images>{split_folder_hint(folder)}")
    others = visible_children(folder)
    holds = f"it holds {describe_files(others)}" if others else "it is empty"
    return (f"class folder {folder.name!r} in {root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}): "
            f"{holds}; add images or remove the folder")


def split_folder_hint(folder: Path) -> str:
    """'train', 'val' and 'test' folders are how other tools take a ready-made split."""
    if folder.name.lower() in SPLIT_NAMES:
        return (f"; Tiller makes the validation split itself (val_split), so it needs no {folder.name}/ "
                f"folder: set data_dir to the folder of class folders, e.g. {folder}")
    return f"; if {folder.name}/ holds the class folders, set data_dir to {folder}"


def describe_files(paths: list[Path]) -> str:
    """'3 files (.dcm, .txt) and 2 folders (scans, old)'."""
    files = [p for p in paths if p.is_file()]
    folders = [p for p in paths if p.is_dir()]
    parts = []
    if files:
        suffixes = sorted(Counter(p.suffix.lower() or "no suffix" for p in files))
        parts.append(f"{len(files)} files ({', '.join(suffixes)})")
    if folders:
        parts.append(f"{len(folders)} folders ({names(folders)})")
    return " and ".join(parts)


def names(paths: list[Path]) -> str:
    return ", ".join(p.name for p in paths[:SHOWN]) + (", ..." if len(paths) > SHOWN else "")


def read_images(root: Path, files: dict[str, list[Path]],
                size: int) -> tuple[torch.Tensor, np.ndarray, list[str], list[str]]:
    """Images (N, 3, size, size) uint8, labels, ids and skipped files, in folder order."""
    images = np.empty((sum(map(len, files.values())), 3, size, size), dtype=np.uint8)
    labels, ids, skipped = [], [], []
    for label, paths in enumerate(files.values()):
        for path in paths:
            relative = path.relative_to(root).as_posix()
            try:
                pixels = read_rgb(path, size)
            except UNREADABLE as exc:
                skipped.append(f"{relative}: {unreadable_reason(exc)}")
                continue
            images[len(labels)] = pixels
            labels.append(label)
            ids.append(relative)
    check_something_read(root, files, labels, skipped)
    return torch.from_numpy(images[:len(labels)]), np.asarray(labels), ids, skipped


def check_something_read(root: Path, files: dict[str, list[Path]], labels: list[int], skipped: list[str]) -> None:
    """Training on what is left would be training on nothing, or on a class with no images."""
    if not labels:
        raise DataError(f"none of the {len(skipped):,} image files in {root} could be read (for example "
                        f"{'; '.join(skipped[:SHOWN])}); are they really images, copied completely?")
    read = Counter(labels)
    empty = [(name, len(paths)) for label, (name, paths) in enumerate(files.items()) if not read[label]]
    if empty:
        listed = ", ".join(f"class {name!r}: none of its {count} image files could be read" for name, count in empty)
        unread = [note for note in skipped if note.split("/", 1)[0] in dict(empty)]  # "<class>/<file>: why"
        raise DataError(f"{listed} (for example {'; '.join(unread[:SHOWN])})")


def left_out(root: Path) -> list[str]:
    """A note for each thing in the layout that is not read: what is not an image in a
    class folder, and images beside the class folders (which class would they be?)."""
    notes = [f"{path.name}: an image outside the class folders, skipped" for path in image_files(root)]
    for folder in class_folders(root):
        for path in visible_children(folder):
            if path.is_dir():
                notes.append(f"{folder.name}/{path.name}/: a folder inside a class folder (images must be directly "
                             f"in their class folder), skipped")
            elif not is_image_file(path):
                notes.append(f"{folder.name}/{path.name}: not an image file "
                             f"({path.suffix.lower() or 'no suffix'}), skipped")
    return notes


def find_class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"image_folder needs {LAYOUT}; {root} is a file")
    folders = class_folders(root)
    if not folders:
        loose, children = len(image_files(root)), visible_children(root)
        if loose:
            found = f"{loose} images but no class folders"
        else:
            found = f"no class folders ({'only ' + describe_files(children) if children else 'it is empty'})"
        raise DataError(f"{root} holds {found}; put each class's images in its own folder, "
                        f"{root}/<class name>/")
    return folders


def read_rgb(path: Path, size: int) -> np.ndarray:
    """(3, size, size) uint8: mixed sizes, grayscale and 16-bit scans all end up alike."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)  # phone photos are stored sideways plus a rotation tag
        image = to_rgb(image).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image).transpose(2, 0, 1)


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit and float scans: PIL would clip them at 255, so stretch by their own maximum.
        pixels = np.asarray(image, dtype=np.float32)
        peak = pixels.max()
        scaled = pixels * (255.0 / peak) if peak > 0 else pixels
        image = Image.fromarray(scaled.clip(0, 255).astype(np.uint8))
    return image.convert("RGB")


def unreadable_reason(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not an image PIL can read"
    return f"unreadable image ({exc})"
