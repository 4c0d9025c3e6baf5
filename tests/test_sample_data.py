"""``tiller make-sample-data``: what it writes loads through every loader, is
imbalanced and learnable, and is the same on every run."""

import contextlib
import hashlib
import io

import pytest
import torch
import torch.nn as nn
from PIL import Image

from tiller.trainer.cli.commands import main
from tiller.trainer.steering.config import validate_config
from tiller.trainer.data import class_counts, load_data, train_loader, val_loader


def make(folder) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        main(["make-sample-data", str(folder)])
    return printed.getvalue()


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "s"
    return folder, make(folder)


def load(folder, **values):
    return load_data(validate_config({"data_dir": str(folder), "img_size": 32, **values}))


def test_it_says_what_it_wrote_and_what_to_try(sample):
    folder, printed = sample
    for line in ("lung_ct/     300 CT-like images", "defects/     280 RGB images", "reviews.csv  800 reviews",
                 "imdb.npz", "mnist/       1,797", f"tiller train --set data_dir={folder}/lung_ct"):
        assert line in printed
    assert "tiller train --config examples/lung_effnet.json" in printed
    assert "tiller make-sample-data sample-data" in printed  # where the examples look


def test_lung_ct_is_imbalanced_mixed_and_has_one_corrupt_file(sample):
    folder = sample[0] / "lung_ct"
    data = load(folder)
    assert data.class_names == ["Benign cases", "Malignant cases", "Normal cases"]
    benign, malignant, normal = class_counts(torch.cat([data.train_labels, data.val_labels]), 3)
    assert 4 <= malignant / benign <= 5 and 3 <= normal / benign <= 4
    assert data.skipped == ["Normal cases/corrupt_example.jpg: unreadable image (Truncated File Read)"]
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != "corrupt_example.jpg"]
    images = [Image.open(p) for p in files]
    modes = {mode: sum(1 for im in images if im.mode == mode) for mode in ("L", "RGB")}
    assert modes["L"] > len(images) / 2 and modes["RGB"] > 10
    assert len({im.size for im in images}) > 50 and any(im.width != im.height for im in images)


def test_defects_keep_their_chinese_class_names(sample):
    data = load(sample[0] / "defects")
    assert sorted(data.class_names) == sorted(["划痕", "污点", "缺失", "变形", "异物"])
    counts = class_counts(torch.cat([data.train_labels, data.val_labels]), 5)
    assert max(counts) >= 3 * min(counts)
    assert data.val_ids[0].split("/")[0] in data.class_names


def test_reviews_npz_and_mnist_load(sample):
    folder = sample[0]
    reviews = load(folder / "reviews.csv")
    assert (reviews.kind, reviews.class_names, len(reviews.train) + len(reviews.val)) == (
        "text", ["negative", "positive"], 800)
    imdb = load(folder / "imdb.npz")
    assert (imdb.class_names, len(imdb.train) + len(imdb.val)) == (["negative", "positive"], 800)
    mnist = load(folder / "mnist", img_size=0)
    assert (mnist.num_classes, mnist.image_size, len(mnist.train) + len(mnist.val)) == (10, 28, 1797)


def small_cnn(num_classes: int) -> nn.Module:
    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(3, 16), *block(16, 32), *block(32, 64), nn.Flatten(), nn.Linear(64 * 16, num_classes))


@pytest.fixture
def one_thread():
    """Tiny convolutions run slower, not faster, on several threads of a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["lung_ct", "defects"])
def test_a_small_cnn_learns_the_images(sample, name, one_thread):
    data = load(sample[0] / name)
    torch.manual_seed(0)
    model = small_cnn(data.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    majority = max(class_counts(data.val_labels, data.num_classes)) / len(data.val_labels)
    accuracies = []
    for epoch in range(1, 13):
        for inputs, targets in train_loader(data, 16, seed=0, epoch=epoch):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs - 0.5), targets).backward()  # centred: learns sooner
            optimizer.step()
        with torch.no_grad():
            predictions = torch.cat([model(inputs - 0.5).argmax(1) for inputs, _ in val_loader(data, 32)])
        accuracies.append((predictions == data.val_labels).float().mean().item())
        if accuracies[-1] > majority + 0.25:
            break
    assert max(accuracies) > majority + 0.25, (majority, accuracies)


def test_a_second_run_writes_the_same_files(sample, tmp_path):
    make(tmp_path / "again")

    def digests(root):
        return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in root.rglob("*") if p.is_file() and p.suffix != ".npz"}  # zip entries carry a time

    assert digests(sample[0]) == digests(tmp_path / "again")
    make(tmp_path / "again")  # re-running over its own files is fine
    assert digests(sample[0]) == digests(tmp_path / "again")


def test_a_file_in_the_way_is_refused(tmp_path, capsys):
    (tmp_path / "taken").write_text("mine")
    with pytest.raises(SystemExit) as exit_:
        main(["make-sample-data", str(tmp_path / "taken")])
    assert exit_.value.code == 2
    assert "exists and is a file" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "mine"
