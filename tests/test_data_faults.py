"""Issue 7, data faults: missing or empty folders, corrupt images, labels out of range,
text in odd encodings. Each gives a clear message (what, where, what was expected) or
a counted skip, never a traceback."""

import codecs
import gzip
import pathlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tiller.store import Store
from tests.test_data import ragged
from tiller.trainer.cli.commands import main
from tiller.trainer.steering.config import validate_config
from tiller.trainer.data import DataError, load_data
from tiller.trainer.data.text_csv import decode
from tiller.trainer.data.sample_data import write_idx

ROOT = Path(__file__).resolve().parent.parent


def config(data_dir, **values):
    return validate_config({"data_dir": str(data_dir), "img_size": 8, "val_split": 0.4, **values})


def save_image(path, value=100, size=(12, 10), suffix_format=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 255 - value, 0)).save(path, format=suffix_format)
    return path


def class_folders(root, counts={"cat": 3, "dog": 3}):
    for name, count in counts.items():
        for i in range(count):
            save_image(root / name / f"{i}.png", value=40 * i)
    return root


def noisy_photo(path):
    """An image whose file is big enough to cut in half: a flat colour compresses to nothing."""
    pixels = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def message(data_dir, **values):
    with pytest.raises(DataError) as caught:
        load_data(config(data_dir, **values))
    return str(caught.value)


# ---------------------------------------------------------------- missing and empty folders

def test_a_missing_data_dir_names_the_path_and_what_it_should_hold(tmp_path):
    text = message(tmp_path / "nowhere" / "lung_ct")
    assert f'data_dir "{tmp_path}/nowhere/lung_ct" does not exist' in text
    assert f"the deepest folder of it that exists is {tmp_path}" in text  # e.g. a share not mounted
    assert "it should name a folder of class folders of images" in text and "imdb.npz" in text
    only_csv = message(tmp_path / "reviews.csv", dataset="text_csv")
    assert only_csv.endswith("it should name a .csv file with a header row text,label (or the folder holding it)")


def test_a_mistyped_data_dir_suggests_the_name_beside_it(tmp_path):
    class_folders(tmp_path / "lung_ct")
    assert f'did you mean "{tmp_path}/lung_ct"?' in message(tmp_path / "lung-CT")


@pytest.mark.parametrize("dataset, expected", [
    ("auto", r"cannot tell what data .*empty holds: it has nothing in it; expected a folder of class folders"),
    ("image_folder", r"empty holds no class folders \(it is empty\); put each class's images in its own folder, "
                     r".*empty/<class name>/"),
    ("mnist", r"no MNIST IDX files in .*empty: expected a folder of MNIST IDX files \(train-images-idx3-ubyte"),
    ("text_csv", r"data_dir .*empty should hold exactly one .csv file, it holds no .csv file"),
    ("imdb_npz", r"data_dir .*empty should hold exactly one .npz file, it holds no .npz file"),
])
def test_an_empty_folder_says_so_and_what_each_dataset_expects(tmp_path, dataset, expected):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_bytes(b"\0")  # hidden: still empty
    with pytest.raises(DataError, match=expected):
        load_data(config(tmp_path / "empty", dataset=dataset))


def test_class_folders_without_images_say_what_they_hold_instead(tmp_path):
    for name in ("benign", "malignant"):
        for i in range(3):
            (tmp_path / "scans" / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "scans" / name / f"{i}.dcm").write_bytes(b"DICM")
    explicit = message(tmp_path / "scans", dataset="image_folder")
    assert explicit == (f"class folder 'benign' in {tmp_path}/scans holds no images (.bmp, .gif, .jpeg, .jpg, .png, "
                        f".tif, .tiff, .webp): it holds 3 files (.dcm); add images or remove the folder")
    assert "2 folders (benign, malignant), with no images directly in the folders (holding 6 files (.dcm))" in \
        message(tmp_path / "scans")  # auto: no layout recognised


def test_an_empty_class_folder_is_named(tmp_path):
    root = class_folders(tmp_path / "pets")
    (root / "eel").mkdir()
    assert "class folder 'eel' in" in message(root) and "it is empty; add images or remove the folder" in message(root)


@pytest.mark.parametrize("splits", [("train",), ("train", "val"), ("test", "train", "val")])
def test_train_and_val_folders_say_tiller_splits_itself_and_which_folder_to_use(tmp_path, splits):
    for split in splits:
        class_folders(tmp_path / "data" / split)
    advice = (f"Tiller makes the validation split itself (val_split), so it needs no {splits[0]}/ folder: set "
              f"data_dir to the folder of class folders, e.g. {tmp_path}/data/{splits[0]}")
    auto = message(tmp_path / "data")
    assert f"{', '.join(splits)} {'hold' if len(splits) > 1 else 'holds'} class folders of images rather than " \
           f"images; {advice}; expected" in auto
    explicit = message(tmp_path / "data", dataset="image_folder")
    assert explicit == (f"{tmp_path}/data/{splits[0]} holds folders of images (cat, dog) rather than images: "
                        f"expected {tmp_path}/data/<class name>/<images>; {advice}")
    assert load_data(config(tmp_path / "data" / "train")).class_names == ["cat", "dog"]  # the advice works


# ---------------------------------------------------------------- corrupt and non-image files

def test_truncated_fake_and_empty_images_are_skipped_named_and_counted(tmp_path):
    root = class_folders(tmp_path / "pets")
    for path in (noisy_photo(root / "cat" / "cut.jpg"), noisy_photo(root / "dog" / "cut.png")):
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) // 2])  # a copy that stopped half way
    (root / "cat" / "fake.gif").write_text("a text file with an image suffix")
    (root / "dog" / "zero.jpg").write_bytes(b"")
    data = load_data(config(root))
    assert len(data.train) + len(data.val) == 6
    assert sorted(note.split(":")[0] for note in data.skipped) == ["cat/cut.jpg", "cat/fake.gif", "dog/cut.png",
                                                                   "dog/zero.jpg"]
    assert all("truncated" in note for note in data.skipped if "/cut." in note)
    assert data.source.endswith("(6 images, 4 skipped)")


def test_what_is_not_an_image_in_the_layout_is_skipped_and_listed(tmp_path):
    root = class_folders(tmp_path / "pets")
    (root / "cat" / "scan.dcm").write_bytes(b"DICM")  # data in a format Tiller does not read: say so
    save_image(root / "dog" / "puppies" / "p0.png")  # one level too deep
    save_image(root / "stray.jpg")  # which class would it be?
    (root / "README.txt").write_text("beside the class folders: part of the download, not of the data")
    (root / "cat" / "Thumbs.db").write_bytes(b"\0")  # Windows' thumbnail cache
    data = load_data(config(root))
    assert data.skipped == [
        "stray.jpg: an image outside the class folders, skipped",
        "cat/scan.dcm: not an image file (.dcm), skipped",
        "dog/puppies/: a folder inside a class folder (images must be directly in their class folder), skipped",
    ]
    assert data.source.endswith("(6 images, 3 skipped)")


def test_when_no_image_can_be_read_the_run_is_refused_not_trained_on_nothing(tmp_path):
    for name in ("cat", "dog"):
        for i in range(3):
            (tmp_path / "pets" / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "pets" / name / f"{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut off")
    text = message(tmp_path / "pets")
    assert text.startswith(f"none of the 6 image files in {tmp_path}/pets could be read (for example cat/0.jpg: ")
    assert "copied completely?" in text


def test_every_class_left_with_nothing_readable_is_named(tmp_path):
    root = class_folders(tmp_path / "pets", {"cat": 3})
    for name in ("dog", "eel"):
        (root / name).mkdir()
        for i in range(2):
            (root / name / f"{i}.png").write_bytes(b"not a png")
    text = message(root)
    assert "class 'dog': none of its 2 image files could be read, class 'eel': none of its 2" in text
    assert "(for example dog/0.png: not an image PIL can read; dog/1.png" in text


# ---------------------------------------------------------------- labels: text CSV

def write_csv(path, rows, header="text,label", encoding="utf-8"):
    path.write_bytes(("\n".join([header, *rows]) + "\n").encode(encoding))
    return path


def test_class_numbers_written_as_floats_are_the_same_classes(tmp_path):
    # pandas writes an integer column with a gap as floats: 1.0 is the class 1, not a third class
    rows = [f"review {i},{i % 2}" for i in range(6)] + [f"more {i},{i % 2}.0" for i in range(4)] + ["plus,+1"]
    data = load_data(config(write_csv(tmp_path / "r.csv", rows)))
    assert data.class_names == ["0", "1"] and len(data.train) + len(data.val) == 11 and data.skipped == []


def test_bad_csv_rows_are_skipped_and_named_with_row_and_value(tmp_path):
    rows = [f"review {i},{i % 3}" for i in range(12)] + [
        "half a class,2.5",  # row 13
        "a word among numbers,positive",  # row 14
        "missing,NaN",  # row 15
        "missing too,",  # row 16
        "text,label",  # row 17: the header again, where two files were joined
        ",1",  # row 18
    ]
    data = load_data(config(write_csv(tmp_path / "r.csv", rows)))
    assert data.class_names == ["0", "1", "2"] and len(data.train) + len(data.val) == 12
    assert data.skipped == [
        "r.csv row 13: label '2.5' is not a whole number, as the other labels are, skipped",
        "r.csv row 14: label 'positive' is not a whole number, as the other labels are, skipped",
        "r.csv row 15: no label, skipped",
        "r.csv row 16: no label, skipped",
        "r.csv row 17: a repeated header row, skipped",
        "r.csv row 18: empty text, skipped",
    ]
    assert "(12 rows, 6 skipped)" in data.source


def test_names_are_labels_too_and_numbers_among_names_are_kept_as_names(tmp_path):
    rows = [f"review {i},{['neg', 'pos', '3 stars'][i % 3]}" for i in range(9)]
    assert load_data(config(write_csv(tmp_path / "r.csv", rows))).class_names == ["3 stars", "neg", "pos"]


@pytest.mark.parametrize("stray", ["-1", "7", "postive"])
def test_a_label_only_one_row_has_is_refused_naming_the_row_and_value(tmp_path, stray):
    # Out of the range of the others, or a typo: only the user can tell a stray from a class
    # that needs more examples, and a class of one cannot be both trained and validated on.
    labels = ["0", "1"] if stray != "postive" else ["negative", "positive"]
    rows = [f"review {i},{labels[i % 2]}" for i in range(8)] + [f"the odd one,{stray}"]
    text = message(write_csv(tmp_path / "r.csv", rows))
    assert f"every class needs at least 2 samples (one to train on, one to validate on): '{stray}' has 1 (r.csv#9)" in text


def test_a_csv_with_only_bad_rows_says_why(tmp_path):
    text = message(write_csv(tmp_path / "r.csv", ["one,", ",1", "two,n/a"]))
    assert text.startswith("r.csv has no row with both a text and a label (for example r.csv row 1: no label")


# ---------------------------------------------------------------- labels: imdb.npz

def write_npz(path, **overrides):
    arrays = {"x_train": ragged([1, 2], [3], [4, 4], [2]), "y_train": np.array([0, 1, 0, 1]),
              "x_test": ragged([5], [1, 1]), "y_test": np.array([1, 0]), **overrides}
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("y_test, shown", [
    (np.array([1, 2]), "y_test[1] is 2"),  # a third class in a binary set
    (np.array([-1, 0]), "y_test[0] is -1"),
    (np.array([1, 0.5]), "y_test[1] is 0.5"),  # was cut to 0 without a word
    (np.array([np.nan, 1]), "y_test[0] is nan"),
    (np.array([1, None], dtype=object), "y_test[1] is None"),  # was a TypeError traceback
    (np.array(["pos", "neg"]), "y_test[0] is 'pos', y_test[1] is 'neg' (2 bad labels in all)"),
])
def test_imdb_labels_that_are_not_0_or_1_are_refused_naming_index_and_value(tmp_path, y_test, shown):
    text = message(write_npz(tmp_path / "imdb.npz", y_test=y_test))
    assert text.startswith("imdb.npz: labels must be 0 (negative) or 1 (positive); ") and shown in text


def test_imdb_labels_as_booleans_floats_or_a_column_are_fine(tmp_path):
    path = write_npz(tmp_path / "imdb.npz", y_train=np.array([[0.0], [1.0], [0.0], [1.0]]),
                     y_test=np.array([True, False]))
    assert load_data(config(path, val_split=0.34)).num_classes == 2


def test_imdb_one_hot_labels_and_negative_word_ranks_are_refused(tmp_path):
    one_hot = write_npz(tmp_path / "one_hot.npz", y_test=np.eye(2))  # was an IndexError traceback
    assert "y_test has shape (2, 2); expected one label per review" in message(one_hot)
    negative = write_npz(tmp_path / "negative.npz", x_test=ragged([5], [1, -4]))  # would index from the end
    assert message(negative) == "negative.npz: x_test[1] holds the word rank -4; ranks are whole numbers from 0"


# ---------------------------------------------------------------- labels: MNIST IDX

def write_mnist(folder, labels):
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels, dtype=np.uint8)
    images = np.random.default_rng(0).integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
    write_idx(folder / "train-images-idx3-ubyte.gz", images, 0x803)
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels, 0x801)
    return folder


def test_an_idx_label_out_of_the_others_range_is_refused_naming_file_and_index(tmp_path):
    labels = np.arange(40) % 10
    labels[17] = 200
    text = message(write_mnist(tmp_path / "mnist", labels))
    # was: "'10' has 0, '11' has 0, ... and 181 more", one empty class per number up to 200
    assert "'200' has 1 (train-labels-idx1-ubyte.gz#17)" in text and "'10'" not in text


def test_idx_classes_are_the_numbers_that_occur(tmp_path):
    # EMNIST letters number their classes 1..26: class 0 is not missing data
    data = load_data(config(write_mnist(tmp_path / "letters", np.arange(30) % 3 + 1)))
    assert data.class_names == ["1", "2", "3"]
    assert sorted(set(data.train_labels.tolist())) == [0, 1, 2]


# ---------------------------------------------------------------- encodings

TEXTS = [("Café crème “très bon”", "pos"), ("naïve – et ennuyeux", "neg")] * 3


def csv_text(rows=TEXTS):
    return "text,label\r\n" + "".join(f'"{text}",{label}\r\n' for text, label in rows)


@pytest.mark.parametrize("encoding, bom, shown", [
    ("utf-8", codecs.BOM_UTF8, ""),  # Excel's "CSV UTF-8"
    ("utf-16-le", codecs.BOM_UTF16_LE, ", read as UTF-16"),  # Excel's "Unicode text"
    ("utf-16-be", codecs.BOM_UTF16_BE, ", read as UTF-16"),
    ("utf-32-le", codecs.BOM_UTF32_LE, ", read as UTF-32"),
    ("utf-16-le", b"", ", read as UTF-16"),  # no mark: told by its zero bytes
])
def test_unicode_files_with_or_without_a_byte_order_mark_read_exactly(tmp_path, encoding, bom, shown):
    raw = bom + csv_text().encode(encoding)
    text, decoding = decode(raw)
    assert text == csv_text() and not decoding.replaced  # was: the header read as "\ufeff" or "t\0e\0x\0t"
    path = tmp_path / "r.csv"
    path.write_bytes(raw)
    data = load_data(config(path))
    assert data.class_names == ["neg", "pos"] and data.skipped == []
    assert data.source == f"text CSV {path} (6 rows{shown})"


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_a_file_that_is_not_utf8_is_read_as_windows_1252_and_each_row_says_so(tmp_path, encoding):
    rows = [(text.replace("“", '""').replace("”", '""').replace("–", "-") if encoding == "latin-1" else text, label)
            for text, label in TEXTS] + [("plain ascii", "pos"), ("plain too", "neg")]
    raw = csv_text(rows).encode(encoding)
    text, decoding = decode(raw)
    assert text == csv_text(rows) and decoding.name == "Windows-1252"  # the accents survive, not "Caf\ufffd"
    path = tmp_path / "r.csv"
    path.write_bytes(raw)
    data = load_data(config(path))
    assert len(data.train) + len(data.val) == 8
    assert data.skipped == [f"r.csv row {row}: the file is not UTF-8: read as Windows-1252, kept" for row in range(1, 7)]
    assert data.source.endswith("(8 rows, read as Windows-1252, 6 with characters beyond ASCII)")


def test_lines_that_are_not_utf8_in_a_utf8_file_are_repaired_and_noted(tmp_path):
    # Real UTF-8 elsewhere: decoding it all as Windows-1252 would garble the good rows instead.
    raw = csv_text().encode("utf-8") + "Fa\xe7ade ab\xeem\xe9e,neg\r\n".encode("cp1252") + b"\xff\xfe\x00bad,pos\r\n"
    text, decoding = decode(raw)
    assert "Café crème “très bon”" in text and "Fa\ufffdade" in text and decoding.replaced
    path = tmp_path / "r.csv"
    path.write_bytes(raw)
    data = load_data(config(path))
    assert len(data.train) + len(data.val) == 8
    assert data.skipped == [f"r.csv row {row}: bytes that are not UTF-8 were replaced with \ufffd, kept" for row in (7, 8)]


def test_a_broken_utf16_file_is_repaired_and_noted_not_a_traceback(tmp_path):
    path = tmp_path / "r.csv"
    lone_surrogate = b"\x00\xd8"  # half of a character outside the BMP, its other half lost
    path.write_bytes(codecs.BOM_UTF16_LE + csv_text().encode("utf-16-le") + "odd".encode("utf-16-le")
                     + lone_surrogate + " one,pos\r\n".encode("utf-16-le"))
    data = load_data(config(path))
    assert data.skipped == ["r.csv row 7: bytes that are not UTF-16 were replaced with \ufffd, kept"]


def test_a_file_that_cannot_be_opened_is_a_data_error_naming_it(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "r.csv", [f"t{i},{i % 2}" for i in range(6)])

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "read_bytes", refuse)  # tests run as root: chmod would not stop them
    assert message(path) == f"cannot read {path}: Permission denied"


# ---------------------------------------------------------------- through the CLI

@pytest.mark.parametrize("layout", ["unreadable images", "train and val folders"])
def test_tiller_train_on_a_bad_data_folder_prints_one_line_and_exits_2(tmp_path, layout):
    data = tmp_path / "data"
    if layout == "unreadable images":
        for name in ("cat", "dog"):
            for i in range(2):
                (data / name).mkdir(parents=True, exist_ok=True)
                (data / name / f"{i}.jpg").write_bytes(gzip.compress(b"an archive named like a photo"))
        expected = f"tiller: cannot start the run: data: none of the 4 image files in {data} could be read"
    else:
        class_folders(data / "train")
        class_folders(data / "val")
        expected = (f"tiller: cannot start the run: data: cannot tell what data {data} holds: it has 2 folders "
                    f"(train, val); train, val hold class folders of images rather than images; Tiller makes the "
                    f"validation split itself (val_split), so it needs no train/ folder: set data_dir to the "
                    f"folder of class folders, e.g. {data}/train; expected")
    done = subprocess.run([sys.executable, "-m", "tiller", "train", "--runs-dir", str(tmp_path / "runs"),
                           "--set", f"data_dir={data}", "--set", "num_epochs=1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(expected) and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert Store(tmp_path / "runs").runs().empty  # nothing was started


def test_tiller_train_warns_with_the_count_of_rows_it_skipped_or_repaired(tmp_path, capsys):
    rows = [(f"{'great fun' if i % 2 else 'dull and slow'} film {i}", "pos" if i % 2 else "neg") for i in range(20)]
    path = tmp_path / "reviews.csv"
    path.write_bytes(csv_text(rows + [("naïve", "pos")]).encode("cp1252") + b"no label at all,\r\n")
    runs = tmp_path / "runs"
    main(["train", "--runs-dir", str(runs), "--set", f"data_dir={path}", "--set", "model_name=text_embedding_bag",
          "--set", "num_epochs=1", "--set", "max_len=8", "--set", "vocab_size=50"])
    store = Store(runs)
    events = store.events(store.find_run("latest"))
    warning = events[events.level == "warning"].message.tolist()
    assert warning == ["2 item(s) of the data set could not be read as they are (each says whether it was skipped "
                       "or kept): reviews.csv row 22: no label, skipped; reviews.csv row 21: the file is not UTF-8: "
                       "read as Windows-1252, kept."]
