"""Every data source on tiny data written here, auto-detection, each DataError,
the split, the loaders and class weights."""

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.utils.class_weight import compute_class_weight
from torch.utils.data import TensorDataset

from tiller.trainer.steering.config import validate_config
from tiller.trainer.data import (DataError, DataSplit, balanced_class_weights, class_counts, load_data,
                          train_loader, val_loader)


def config(data_dir="", **values):
    return validate_config({"data_dir": str(data_dir), **values})


# ---------------------------------------------------------------- class folders

def save_image(path, size=(20, 30), mode="L", value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 255 - value, 0)
    Image.new(mode, size, colour).save(path)


def class_folders(root, counts={"良性": 3, "malignant": 4}):
    """Mixed sizes, grayscale and RGB, jpg and png (one with an upper-case suffix)."""
    for name, count in counts.items():
        for i in range(count):
            mode, suffix = ("RGB", ".PNG") if i % 2 else ("L", ".jpg")
            save_image(root / name / f"img{i}{suffix}", size=(10 + 7 * (i % 5), 30 - 3 * (i % 5)), mode=mode, value=40 * (i % 6))
    return root


def test_class_folders_load_as_rgb_at_img_size(tmp_path):
    root = class_folders(tmp_path / "ct")
    (root / "良性" / "notes.txt").write_text("not an image")  # not read, but listed: it could be data
    (root / "良性" / ".DS_Store").write_bytes(b"\0\1")  # hidden: ignored
    data = load_data(config(root, img_size=24, val_split=0.4))
    assert data.class_names == ["malignant", "良性"]  # sorted folder names, as they are
    assert (data.kind, data.in_channels, data.image_size, data.num_classes) == ("image", 3, 24, 2)
    assert len(data.train) + len(data.val) == 7
    assert data.skipped == ["良性/notes.txt: not an image file (.txt), skipped"]
    image, label = data.train[0]
    assert image.shape == (3, 24, 24) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert label.dtype == torch.long and label.ndim == 0
    assert data.train.images.dtype == torch.uint8  # preloaded small, made float per item
    assert all(vid.split("/")[0] in data.class_names and "." in vid for vid in data.val_ids)
    assert [data.val[i][1].item() for i in range(len(data.val))] == data.val_labels.tolist()
    assert data.source == f"class folders in {root} (7 images, 1 skipped)"


def test_default_size_is_224_and_gray_becomes_three_equal_channels(tmp_path):
    root = class_folders(tmp_path / "ct", {"a": 2, "b": 2})
    data = load_data(config(root, val_split=0.5))
    assert data.image_size == 224
    gray = next(data.train[i][0] for i in range(len(data.train)) if data.train[i][0].std(dim=0).max() == 0)
    assert gray.shape == (3, 224, 224)


def test_16_bit_scans_are_stretched_not_clipped_white(tmp_path):
    from tiller.trainer.data.image_folder import read_rgb

    scan = np.full((16, 16), 1000, dtype=np.uint16)
    scan[:, 8:] = 4000  # 12-bit CT values: clipped at 255, both halves would be white
    Image.fromarray(scan).save(tmp_path / "scan.png")
    pixels = read_rgb(tmp_path / "scan.png", 16)
    assert pixels.shape == (3, 16, 16)
    assert pixels[:, :, 0].max() < 100 and pixels[:, :, -1].min() == 255


def test_unreadable_files_are_skipped_and_listed(tmp_path):
    root = class_folders(tmp_path / "ct")
    (root / "良性" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 junk, cut off")
    (root / "malignant" / "empty.png").write_bytes(b"")
    data = load_data(config(root, img_size=8, val_split=0.4))
    assert len(data.train) + len(data.val) == 7
    assert sorted(s.split(":")[0] for s in data.skipped) == ["malignant/empty.png", "良性/broken.jpg"]
    assert "2 skipped" in data.source


def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    root = class_folders(tmp_path / "ct")
    (root / "Normal cases").mkdir()
    (root / "Normal cases" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="'Normal cases'.*holds no images"):
        load_data(config(root))


def test_a_class_with_nothing_readable_is_an_error_naming_it(tmp_path):
    root = class_folders(tmp_path / "ct")
    for i in range(2):
        (root / "异物" / f"bad{i}.jpg").parent.mkdir(exist_ok=True)
        (root / "异物" / f"bad{i}.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="class '异物': none of its 2 image files could be read"):
        load_data(config(root))


def test_a_class_with_one_image_is_an_error_naming_it_and_its_count(tmp_path):
    root = class_folders(tmp_path / "ct", {"a": 3, "b": 1})
    with pytest.raises(DataError, match="at least 2 samples.*'b' has 1"):
        load_data(config(root))


def test_images_without_class_folders_say_how_to_arrange_them(tmp_path):
    save_image(tmp_path / "loose" / "x.jpg")
    with pytest.raises(DataError, match="1 images but no class folders.*<class name>"):
        load_data(config(tmp_path / "loose", dataset="image_folder"))


# ---------------------------------------------------------------- data_dir

def test_a_missing_windows_path_is_quoted_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = "E:\\PIC_SLM\\TEST\\OUTPUT2\\dataset"
    with pytest.raises(DataError) as caught:
        load_data(config(raw))
    message = str(caught.value)
    assert f'"{raw}"' in message
    assert "relative paths are resolved from the current directory" in message and str(tmp_path) in message


def test_a_windows_style_relative_path_is_tried_with_forward_slashes(tmp_path, monkeypatch):
    class_folders(tmp_path / "data" / "ct")
    monkeypatch.chdir(tmp_path)
    assert load_data(config("data\\ct", img_size=8, val_split=0.4)).num_classes == 2


def test_unknown_layout_says_what_it_found_and_what_it_expects(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match=r"2 files \(\.json, \.txt\) and 1 folders \(train\).*expected a folder "
                                        r"of class folders"):
        load_data(config(tmp_path))


def test_an_explicit_dataset_is_still_validated(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("text,label\na,0\n")
    with pytest.raises(DataError, match="image_folder needs a folder of class folders"):
        load_data(config(csv, dataset="image_folder"))
    with pytest.raises(DataError, match="no MNIST IDX files"):
        load_data(config(tmp_path, dataset="mnist"))
    with pytest.raises(DataError, match="needs data_dir"):
        load_data(config(dataset="text_csv"))


# ---------------------------------------------------------------- digits

def test_digits_is_the_default_and_resizes_on_request():
    data = load_data(config())
    assert (data.num_classes, data.in_channels, data.image_size, len(data.train) + len(data.val)) == (10, 1, 8, 1797)
    assert data.val_ids[0].startswith("digits#")
    assert load_data(config(img_size=16)).train[0][0].shape == (1, 16, 16)


# ---------------------------------------------------------------- MNIST

def idx_bytes(array, magic):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in array.shape) + array.tobytes()


def write_mnist(folder, n_train=30, n_test=20, gz=True, dotted=False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for part, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        sep = "." if dotted else "-"
        for kind, array, magic in (("images", images, 0x803), ("labels", labels, 0x801)):
            name = f"{part}-{kind}{sep}idx{3 if kind == 'images' else 1}-ubyte"
            data = idx_bytes(array, magic)
            if gz and part == "train":
                (folder / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("dotted", [False, True])
def test_mnist_pools_train_and_t10k_gzipped_or_not(tmp_path, dotted):
    folder = write_mnist(tmp_path / "mnist", dotted=dotted)
    data = load_data(config(folder, val_split=0.2))
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 1, 28)
    assert data.class_names == [str(i) for i in range(10)]
    assert len(data.train) + len(data.val) == 50
    assert data.source == f"MNIST IDX files in {folder} (50 images)"
    first_id = data.val_ids[0]
    name, index = first_id.split("#")
    raw = (folder / name).read_bytes()
    raw = gzip.decompress(raw) if name.endswith(".gz") else raw
    expected = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[int(index)] / 255.0
    assert np.allclose(data.val[0][0][0].numpy(), expected)
    assert load_data(config(folder, img_size=14)).train[0][0].shape == (1, 14, 14)


def test_bad_idx_files_are_clear_errors(tmp_path):
    folder = write_mnist(tmp_path / "m", gz=False)
    labels = folder / "train-labels-idx1-ubyte"
    original = labels.read_bytes()
    labels.write_bytes(b"\x00\x00\x08\x03" + original[4:])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte is not an IDX file.*00000801"):
        load_data(config(folder))
    labels.write_bytes(original[:-5])
    with pytest.raises(DataError, match="damaged or truncated"):
        load_data(config(folder))
    labels.write_bytes(idx_bytes(np.zeros(29, np.uint8), 0x801))
    with pytest.raises(DataError, match="30 images but train-labels-idx1-ubyte 29 labels"):
        load_data(config(folder))
    labels.unlink()
    with pytest.raises(DataError, match="has no train-labels-idx1-ubyte"):
        load_data(config(folder, dataset="mnist"))


def test_a_corrupt_gzip_is_a_clear_error(tmp_path):
    folder = write_mnist(tmp_path / "m")
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a readable gzip file"):
        load_data(config(folder))


# ---------------------------------------------------------------- text CSV

def write_csv(path, rows, header="text,label"):
    path.write_bytes(("\n".join([header, *rows]) + "\n").encode("utf-8"))
    return path


def test_text_csv_vocabulary_comes_from_the_training_split_only(tmp_path):
    # Each row has a word of its own: only the training rows' words may be in the vocabulary.
    rows = [f"common common w{i} tail,{'pos' if i % 2 else 'neg'}" for i in range(20)]
    data = load_data(config(write_csv(tmp_path / "r.csv", rows), max_len=8, val_split=0.25))
    assert (data.kind, data.in_channels, data.image_size, data.vocab_size) == ("text", 0, 0, 10_000)
    assert data.class_names == ["neg", "pos"]
    common, tail = 3, 4  # the most frequent words come first, ties alphabetically
    for i in range(len(data.val)):
        assert data.val[i][0].tolist() == [1, common, common, 2, tail, 0, 0, 0]  # own word unseen: 2
    own_words = {data.train[i][0][3].item() for i in range(len(data.train))}
    assert min(own_words) >= 5 and len(own_words) == len(data.train)
    assert data.val_ids[0].startswith("r.csv#")


def test_sequences_are_padded_at_the_end_and_cut_at_the_start_like_seed_004(tmp_path):
    # seed 004: pad_sequences(..., padding='post', maxlen=256), truncating left at Keras' 'pre'
    rows = [f"{' '.join(f'x{j}' for j in range(n))},{n % 2}" for n in range(1, 13)]  # 1 to 12 words
    data = load_data(config(write_csv(tmp_path / "r.csv", rows), max_len=6, val_split=0.5))
    sequences = [sequence for sequence, _ in [*data.train, *data.val]]
    assert all(s.shape == (6,) and s.dtype == torch.long for s in sequences)
    short = [s.tolist() for s in sequences if (s == 0).sum() == 3]  # "x0 x1": start, two words, padding
    assert len(short) == 1 and short[0][0] == 1 and short[0][3:] == [0, 0, 0]
    full = [s for s in sequences if (s == 0).sum() == 0]  # 5 to 12 words
    assert len(full) == 8
    assert sum(1 for s in full if 1 not in s) == 7  # cut at the start: the start token is gone


def test_vocabulary_ranks_by_frequency_then_alphabetically():
    from tiller.trainer.data.sequences import build_vocab

    assert build_vocab([["b", "a", "c"], ["c", "d"]], vocab_size=5) == {"c": 3, "a": 4}


def test_words_beyond_vocab_size_become_oov(tmp_path):
    rows = [f"a a a a b b b c c d,{i % 2}" for i in range(10)]
    data = load_data(config(write_csv(tmp_path / "r.csv", rows), vocab_size=5, max_len=11, val_split=0.2))
    assert data.train[0][0].tolist() == [1, 3, 3, 3, 3, 4, 4, 4, 2, 2, 2]


def test_text_csv_labels_numbers_chinese_and_bad_rows(tmp_path):
    path = tmp_path / "r.csv"
    good = [f'"好看的电影, café",{label}' for label in (2, 10) for _ in range(3)]
    path.write_bytes(("text,label\n" + "\n".join(good) + "\n,2\nno label here,\n").encode("utf-8")
                     + "caf\xe9 latin-1,10\n".encode("latin-1"))
    data = load_data(config(path, val_split=0.4))
    assert data.class_names == ["2", "10"]  # by value, as strings
    assert len(data.train) + len(data.val) == 7  # the latin-1 row is kept, repaired
    notes = "\n".join(data.skipped)
    assert "row 7: empty text" in notes and "row 8: no label" in notes and "row 9: bytes that are not UTF-8" in notes
    assert "2 skipped" in data.source and "1 with bytes that are not UTF-8 replaced" in data.source


def test_chinese_is_split_into_characters_and_accents_survive():
    from tiller.trainer.data.sequences import tokenize

    assert tokenize("好看的电影 Café, NAÏVE!") == ["好", "看", "的", "电", "影", "café", "naïve"]


def test_text_csv_errors(tmp_path):
    with pytest.raises(DataError, match="columns text and label; it has review_text, stars"):
        load_data(config(write_csv(tmp_path / "a.csv", ["x,1"], header="review_text,stars")))
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match="not a valid CSV.*double quotes"):
        load_data(config(write_csv(tmp_path / "b" / "b.csv", ["good, fun,1"]), dataset="text_csv"))


def test_kaggle_imdb_header_is_accepted(tmp_path):
    rows = [f"review {i},{'positive' if i % 2 else 'negative'}" for i in range(6)]
    data = load_data(config(write_csv(tmp_path / "IMDB Dataset.csv", rows, header="review,sentiment"), val_split=0.4))
    assert data.class_names == ["negative", "positive"]


# ---------------------------------------------------------------- IMDB npz

def ragged(*sequences):
    array = np.empty(len(sequences), dtype=object)
    for i, sequence in enumerate(sequences):
        array[i] = list(sequence)
    return array


def write_npz(path, **overrides):
    arrays = {
        "x_train": ragged([1, 2, 3], [7, 1], [4, 4, 4, 4, 4, 4, 4, 4], [2]),
        "y_train": np.array([0, 1, 0, 1]),
        "x_test": ragged([5, 6], [1, 1, 1]),
        "y_test": np.array([1, 0]),
        **overrides,
    }
    np.savez(path, **arrays)
    return path


def test_imdb_npz_follows_keras_load_data(tmp_path):
    path = write_npz(tmp_path / "imdb.npz")
    data = load_data(config(path, vocab_size=8, max_len=5, val_split=0.34))
    assert data.class_names == ["negative", "positive"] and data.vocab_size == 8
    expected = {
        "imdb.npz#train/0": [1, 4, 5, 6, 0],  # [1] + [rank + 3], padded at the end
        "imdb.npz#train/1": [1, 2, 4, 0, 0],  # 7 + 3 >= vocab_size 8: out of vocabulary
        "imdb.npz#train/2": [7, 7, 7, 7, 7],  # 9 long, cut at the start
        "imdb.npz#train/3": [1, 5, 0, 0, 0],
        "imdb.npz#test/0": [1, 2, 2, 0, 0],
        "imdb.npz#test/1": [1, 4, 4, 4, 0],
    }
    val = {vid: data.val[i][0].tolist() for i, vid in enumerate(data.val_ids)}
    assert len(val) == 3 and all(val[vid] == expected[vid] for vid in val)
    train = sorted(data.train[i][0].tolist() for i in range(len(data.train)))
    assert train == sorted(sequence for vid, sequence in expected.items() if vid not in val)


def test_imdb_npz_plain_arrays_and_errors(tmp_path):
    plain = write_npz(tmp_path / "plain.npz", x_train=np.array([[1, 2], [3, 4], [5, 6], [7, 8]]),
                      x_test=np.array([[1, 1], [2, 2]]))
    assert load_data(config(plain, val_split=0.34)).num_classes == 2
    with pytest.raises(DataError, match="lacks x_test, y_test"):
        np.savez(tmp_path / "short.npz", x_train=np.zeros((2, 2)), y_train=np.zeros(2))
        load_data(config(tmp_path / "short.npz"))
    with pytest.raises(DataError, match="labels must be 0 .* or 1"):
        load_data(config(write_npz(tmp_path / "three.npz", y_train=np.array([0, 1, 2, 1])), val_split=0.34))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_data(config(tmp_path / "junk.npz"))


# ---------------------------------------------------------------- detection

def test_auto_detects_each_layout(tmp_path):
    (tmp_path / "csvdir").mkdir()
    (tmp_path / "npzdir").mkdir()
    write_csv(tmp_path / "csvdir" / "r.csv", [f"t{i},{i % 2}" for i in range(6)])
    write_npz(tmp_path / "npzdir" / "imdb.npz")
    assert load_data(config(tmp_path / "csvdir", val_split=0.34)).val_ids[0].startswith("r.csv#")
    assert load_data(config(tmp_path / "npzdir", val_split=0.34)).class_names == ["negative", "positive"]
    write_csv(tmp_path / "csvdir" / "other.csv", ["t,1"])
    with pytest.raises(DataError, match="2 .csv files .*other.csv, r.csv.*set data_dir to the one"):
        load_data(config(tmp_path / "csvdir"))
    (tmp_path / "file.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="is a .parquet file; expected"):
        load_data(config(tmp_path / "file.parquet"))


# ---------------------------------------------------------------- split and loaders

def test_split_is_stratified_and_seeded(tmp_path):
    root = class_folders(tmp_path / "ct", {"a": 20, "b": 10})
    first = load_data(config(root, img_size=4, val_split=0.2, seed=1))
    assert first.val_ids == load_data(config(root, img_size=4, val_split=0.2, seed=1)).val_ids
    assert first.val_ids != load_data(config(root, img_size=4, val_split=0.2, seed=2)).val_ids
    assert class_counts(first.val_labels, 2) == [4, 2]
    assert class_counts(first.train_labels, 2) == [16, 8]


def test_a_split_leaving_a_class_out_of_training_is_an_error(tmp_path):
    root = class_folders(tmp_path / "ct", {"rare": 2, "common": 40})
    with pytest.raises(DataError, match="no training sample is left for class 'rare' \\(2 samples\\)"):
        load_data(config(root, img_size=4, val_split=0.9))
    with pytest.raises(DataError, match="needs at least as many on each side as there are classes"):
        load_data(config(class_folders(tmp_path / "three", {"a": 2, "b": 2, "c": 2}), img_size=4, val_split=0.1))


def tensor_split(labels):
    labels = torch.tensor(labels)
    inputs = torch.arange(len(labels)).float().unsqueeze(1)
    return DataSplit(train=TensorDataset(inputs, labels), val=TensorDataset(inputs, labels), class_names=["a", "b"],
                     kind="image", in_channels=1, image_size=1, train_labels=labels, val_labels=labels,
                     val_ids=[], skipped=[], source="test")


def test_train_order_is_seeded_per_epoch():
    data = tensor_split([0, 1] * 20)
    order = lambda epoch: torch.cat([x for x, _ in train_loader(data, 8, seed=3, epoch=epoch)]).flatten().tolist()
    assert order(1) == order(1) and order(1) != order(2)
    assert sorted(order(1)) == list(range(40))
    assert [len(y) for _, y in val_loader(data, 8)] == [40]


def test_oversampling_roughly_balances_an_epoch():
    data = tensor_split([0] * 180 + [1] * 20)
    drawn = torch.cat([y for _, y in train_loader(data, 32, seed=0, epoch=1, oversample=True)])
    assert len(drawn) == 200
    assert 70 <= class_counts(drawn, 2)[1] <= 130  # 10% of the data, about half the draws
    again = torch.cat([y for _, y in train_loader(data, 32, seed=0, epoch=1, oversample=True)])
    assert torch.equal(drawn, again)


def test_balanced_weights_match_sklearn_and_an_absent_class_weighs_one():
    labels = torch.tensor([0] * 7 + [1] * 2 + [2] * 1)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels.numpy())
    weights = balanced_class_weights(labels, 3)
    assert weights.dtype == torch.float32 and np.allclose(weights.numpy(), expected)
    assert balanced_class_weights(torch.tensor([0, 0, 2]), 3).tolist() == pytest.approx([0.5, 1.0, 1.0])
    assert class_counts(labels, 4) == [7, 2, 1, 0]
