"""Class folders, as in IQ-OTH/NCCD: ``data_dir/<class name>/<images>``.

Every image becomes RGB at img_size x img_size (224 when 0), preloaded as uint8.
Files that cannot be read are skipped and listed; a class with nothing readable is
an error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from trainer.data.base import DataError, DataSplit
from trainer.data.paths import visible_children
from trainer.data.split import split_images

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
DEFAULT_SIZE = 224
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
    images, labels, ids, skipped = read_images(root, files, config.img_size or DEFAULT_SIZE)
    note = f", {len(skipped):,} skipped" if skipped else ""
    return split_images(images, labels, list(files), ids, config, skipped=skipped,
                        source=f"class folders in {root} ({len(labels):,} images{note})")


def files_by_class(root: Path) -> dict[str, list[Path]]:
    files = {folder.name: image_files(folder) for folder in find_class_folders(root)}
    for name, paths in files.items():
        if not paths:
            raise DataError(f"class folder {name!r} in {root} holds no images "
                            f"({', '.join(sorted(IMAGE_SUFFIXES))}); add images or remove the folder")
    return files


def read_images(root: Path, files: dict[str, list[Path]],
                size: int) -> tuple[torch.Tensor, np.ndarray, list[str], list[str]]:
    """Images (N, 3, size, size) uint8, labels, ids and skipped files, in folder order."""
    images = np.empty((sum(map(len, files.values())), 3, size, size), dtype=np.uint8)
    labels, ids, skipped = [], [], []
    for label, (name, paths) in enumerate(files.items()):
        read = 0
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
            read += 1
        if read == 0:
            raise DataError(f"class {name!r}: none of its {len(paths)} image files could be read "
                            f"(for example {skipped[-1]})")
    return torch.from_numpy(images[:len(labels)]), np.asarray(labels), ids, skipped


def find_class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"image_folder needs a folder of class folders; {root} is a file")
    folders = class_folders(root)
    if not folders:
        loose = len(image_files(root))
        found = f"{loose} images but no class folders" if loose else "no class folders"
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
