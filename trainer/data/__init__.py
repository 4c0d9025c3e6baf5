"""Data sets the trainer can load, split stratified into train and validation.

One module per source: digits (built in), class folders of images, MNIST IDX files,
a text CSV, Keras' imdb.npz; ``detect`` picks one for ``dataset: auto``.

Faults, the same way in every source: a data set that is wrong as a whole (no such
path, an empty folder, the wrong layout, nothing readable, a class too small to split,
an array file with a bad value in it) raises ``DataError`` saying what is wrong, where,
and what was expected; a single bad item in a set of many (a corrupt image, a CSV row
without a label) is skipped and listed in ``DataSplit.skipped``, and the run's start
warns with the count and the first few.
"""

from __future__ import annotations

from tiller.trainer.data.base import DataError, DataSplit
from tiller.trainer.data.detect import EXPECTED, LAYOUTS, detect_dataset
from tiller.trainer.data.digits import load_digits_split
from tiller.trainer.data.image_folder import load_image_folder
from tiller.trainer.data.imdb_npz import load_imdb_npz
from tiller.trainer.data.loaders import balanced_class_weights, class_counts, train_loader, val_loader
from tiller.trainer.data.mnist import load_mnist
from tiller.trainer.data.paths import resolve_data_dir
from tiller.trainer.data.text_csv import load_text_csv

LOADERS = {
    "image_folder": load_image_folder,
    "mnist": load_mnist,
    "text_csv": load_text_csv,
    "imdb_npz": load_imdb_npz,
}

__all__ = ["DataError", "DataSplit", "load_data", "train_loader", "val_loader", "class_counts",
           "balanced_class_weights"]


def load_data(config) -> DataSplit:
    """The data set ``config`` names, split; ``DataError`` says what is wrong with it."""
    if config.dataset == "digits" or (config.dataset == "auto" and not config.data_dir):
        return load_digits_split(config)
    if not config.data_dir:
        raise DataError(f"dataset {config.dataset!r} needs data_dir: the folder or file that holds it")
    try:
        path = resolve_data_dir(config.data_dir, LAYOUTS.get(config.dataset, EXPECTED))
        dataset = detect_dataset(path) if config.dataset == "auto" else config.dataset
        return LOADERS[dataset](path, config)
    except OSError as exc:  # a file or folder the loaders may not read: say which, not where in the code
        raise DataError(f"cannot read {exc.filename or config.data_dir}: {exc.strerror or exc}") from None
