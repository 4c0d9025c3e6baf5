"""MNIST as its IDX files (``train-images-idx3-ubyte`` and friends, gzipped or not).

Whatever pairs are there (train, t10k) are pooled and split like any other source.
The classes are the label numbers that occur, in order: 0-9 for MNIST and Fashion-MNIST,
1-26 for EMNIST letters (whose class 0 is empty). IDX files are arrays written by a
program, so a bad one (wrong magic number, truncated, images and labels of different
lengths, a label number held by a single image) is refused as a whole, never patched.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from tiller.trainer.data.base import DataError, DataSplit
from tiller.trainer.data.paths import visible_children
from tiller.trainer.data.resize import resize_square
from tiller.trainer.data.split import split_images

LAYOUT = ("a folder of MNIST IDX files (train-images-idx3-ubyte and train-labels-idx1-ubyte, optionally "
          "t10k-*, each may be .gz)")
NATIVE_SIZE = 28
PARTS = ("train", "t10k")
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801  # unsigned bytes, 3 dims / 1 dim


def idx_names(part: str, kind: str) -> list[str]:
    """The spellings in use: ``train-images-idx3-ubyte`` and ``train-images.idx3-ubyte``, maybe .gz."""
    dims = {"images": "idx3", "labels": "idx1"}[kind]
    names = [f"{part}-{kind}-{dims}-ubyte", f"{part}-{kind}.{dims}-ubyte"]
    return names + [name + ".gz" for name in names]


def find_idx(folder: Path, part: str, kind: str) -> Path | None:
    by_name = {p.name.lower(): p for p in visible_children(folder) if p.is_file()}
    return next((by_name[name] for name in idx_names(part, kind) if name in by_name), None)


def idx_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """(images, labels) files per part found; a part with only one of the two is an error."""
    pairs = []
    for part in PARTS:
        images, labels = find_idx(folder, part, "images"), find_idx(folder, part, "labels")
        if images and labels:
            pairs.append((images, labels))
        elif images or labels:
            missing = idx_names(part, "labels" if images else "images")[0]
            raise DataError(f"{(images or labels).name} in {folder} has no {missing} (.gz) beside it")
    return pairs


def has_idx_files(folder: Path) -> bool:
    return any(find_idx(folder, part, kind) for part in PARTS for kind in ("images", "labels"))


def load_mnist(folder: Path, config) -> DataSplit:
    if not folder.is_dir():
        raise DataError(f"mnist needs the folder holding the IDX files; {folder} is a file")
    pairs = idx_pairs(folder)
    if not pairs:
        raise DataError(f"no MNIST IDX files in {folder}: expected {LAYOUT}")
    images, labels, ids, label_ids = [], [], [], []
    for images_path, labels_path in pairs:
        part_images, part_labels = read_pair(images_path, labels_path)
        images.append(part_images)
        labels.append(part_labels)
        ids += [f"{images_path.name}#{i}" for i in range(len(part_labels))]
        label_ids += [f"{labels_path.name}#{i}" for i in range(len(part_labels))]
    numbers, labels = np.unique(np.concatenate(labels), return_inverse=True)
    pixels = torch.from_numpy(np.concatenate(images)).unsqueeze(1)
    pixels = resize_square(pixels, config.img_size or NATIVE_SIZE)
    return split_images(pixels, labels.astype(np.int64), [str(n) for n in numbers], ids, config,
                        label_ids=label_ids, source=f"MNIST IDX files in {folder} ({len(labels):,} images)")


def read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{images_path.name} holds {len(images):,} images but {labels_path.name} "
                        f"{len(labels):,} labels; the files do not belong together")
    return images, labels


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The array in an IDX file, its magic number and length checked."""
    data = read_bytes(path)
    dims = magic & 0xFF
    header = 4 + 4 * dims
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        found = data[:4].hex() if len(data) >= 4 else f"{len(data)} bytes"
        raise DataError(f"{path.name} is not an IDX file of this kind (magic number {magic:08x} "
                        f"expected, found {found})")
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataError(f"{path.name} is damaged or truncated: its header promises {expected:,} bytes "
                        f"of data for shape {tuple(shape)}, it holds {len(data) - header:,}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_bytes(path: Path) -> bytes:
    if path.suffix.lower() != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as file:
            return file.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path.name} is not a readable gzip file ({exc})") from None
