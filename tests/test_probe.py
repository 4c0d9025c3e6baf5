"""The probe: a run's model and validation data rebuilt from its checkpoint, checked against
what the run stored. Real one-epoch runs: an MLP on digits (plain and with EMA), a small
timm CNN on class folders of drawn shapes, and the text model on a CSV."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from tiller.store import Store
from tiller.trainer.steering.config import validate_config
from tiller.trainer.engine.loop import train
from tiller.trainer.engine.probe import (ProbeError, checkpoint_epoch, features, find_data_dir, gradcam, load_probe,
                           text_snippet, thumbnail)
from tiller.trainer.engine.step import probabilities

SHAPES = ("bar", "circle", "square")
SHAPE_SIDE = 64  # resnet10t's stride is 32: a 2x2 last feature map, so Grad-CAM has places to tell apart
CNN = "resnet10t"  # the smallest timm ResNet: one epoch on 60 images takes a second or two


def train_run(runs_dir: Path, config: dict, cwd: Path | None = None) -> Path:
    """One real epoch of ``config`` in ``runs_dir``; returns the run's folder. ``cwd`` is where it
    starts, which a relative data_dir is read from."""
    store = Store(runs_dir)
    with pytest.MonkeyPatch.context() as patch:
        if cwd is not None:
            patch.chdir(cwd)
        run_id = train(validate_config({"num_epochs": 1, **config}), store, say=lambda message: None)
    store.close()
    return runs_dir / run_id


def write_shapes(root: Path, per_class: int = 20) -> None:
    """Class folders of white bars, circles and squares on dark noise, at random places."""
    rng = np.random.default_rng(0)
    for name in SHAPES:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = Image.fromarray((rng.random((SHAPE_SIDE, SHAPE_SIDE, 3)) * 60).astype(np.uint8))
            x, y = (int(v) for v in rng.integers(4, SHAPE_SIDE - 24, 2))
            draw = ImageDraw.Draw(image)
            if name == "bar":
                draw.rectangle([x, 0, x + 6, SHAPE_SIDE], fill="white")
            elif name == "circle":
                draw.ellipse([x, y, x + 20, y + 20], fill="white")
            else:
                draw.rectangle([x, y, x + 20, y + 20], fill="white")
            image.save(root / name / f"{i:02d}.png")


def train_shapes_run(repo: Path) -> Path:
    """The CNN on ``repo/data/shapes``, started from ``repo`` with a relative data_dir, as a user would."""
    write_shapes(repo / "data" / "shapes")
    return train_run(repo / "runs", {"model_name": CNN, "data_dir": "data/shapes", "img_size": SHAPE_SIDE,
                                     "batch_size": 16}, cwd=repo)


def write_reviews(path: Path) -> None:
    good = ["a wonderful film with a great cast", "great fun and a lovely story", "I loved every minute"]
    bad = ["a dull and boring mess", "terrible acting and an awful plot", "I hated every minute"]
    rows = [f'"{text} {i}",{label}' for i in range(10) for label, texts in (("pos", good), ("neg", bad))
            for text in texts]
    path.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")


def stored(run_dir: Path, epoch: int = 1):
    store = Store(run_dir.parent)
    try:
        return store.predictions(run_dir.name, epoch)
    finally:
        store.close()


def probe_probs(probe) -> np.ndarray:
    with torch.no_grad():
        inputs = torch.stack([probe.data.val[i][0] for i in range(len(probe.data.val))])
        return probabilities(probe.model(inputs)).numpy()


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("mlp") / "runs", {"model_name": "mlp"})


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory) -> Path:
    return train_shapes_run(tmp_path_factory.mktemp("cnn"))


def test_probe_rebuilds_the_stored_validation_split(mlp_run):
    probe = load_probe(mlp_run)
    assert probe.data.val_ids == stored(mlp_run).sample_ids
    assert (probe.epoch, probe.which, probe.data_path) == (1, "best", None)
    assert not probe.model.training
    assert checkpoint_epoch(mlp_run, "last") == 1


def test_features_through_the_head_give_the_stored_probabilities(mlp_run):
    probe = load_probe(mlp_run)
    indices, values = features(probe)
    assert values.shape == (len(probe.data.val), 128)  # hidden_size
    assert np.array_equal(indices, np.arange(len(probe.data.val)))
    probs = torch.softmax(probe.model.output(torch.from_numpy(values)), dim=1).detach().numpy()
    np.testing.assert_allclose(probs, stored(mlp_run).probs, atol=1e-2)


def test_features_limit_is_a_seeded_subsample(mlp_run):
    probe = load_probe(mlp_run)
    all_indices, all_values = features(probe)
    indices, values = features(probe, limit=50)
    again, _ = features(probe, limit=50)
    assert len(indices) == 50 and np.array_equal(indices, again) and np.all(np.diff(indices) > 0)
    np.testing.assert_allclose(values, all_values[indices], atol=1e-5)


def test_ema_run_is_probed_with_the_averaged_weights(tmp_path):
    run_dir = train_run(tmp_path / "runs", {"model_name": "mlp", "model_ema": True, "model_ema_decay": 0.99})
    probe = load_probe(run_dir)
    np.testing.assert_allclose(probe_probs(probe), stored(run_dir).probs, atol=1e-2)
    trained = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert not torch.equal(probe.model.state_dict()["hidden.weight"], trained["hidden.weight"])


def test_cnn_probe_finds_relative_data_from_the_repository_and_reproduces_probabilities(cnn_run):
    assert Path.cwd() != cnn_run.parent.parent  # data_dir "data/shapes" is not under the current directory
    probe = load_probe(cnn_run)
    assert probe.data_path == cnn_run.parent.parent / "data" / "shapes"
    np.testing.assert_allclose(probe_probs(probe), stored(cnn_run).probs, atol=1e-2)
    assert features(probe)[1].shape == (len(probe.data.val), 512)


def test_thumbnails_are_rgb_uint8_at_the_asked_size(mlp_run, cnn_run):
    digit = thumbnail(load_probe(mlp_run), 0, size=96)
    assert digit.shape == (96, 96, 3) and digit.dtype == np.uint8
    assert np.array_equal(digit[..., 0], digit[..., 2])  # grey, three equal channels
    shape = thumbnail(load_probe(cnn_run), 3, size=SHAPE_SIDE)
    assert shape.shape == (SHAPE_SIDE, SHAPE_SIDE, 3) and shape.max() == 255  # a white shape


def class_activation_map(probe, index: int, target: int) -> np.ndarray:
    """Zhou et al.'s CAM, which Grad-CAM equals for global average pooling then one linear
    layer (ResNet's head): relu(sum_c fc.weight[target, c] * A_c), upsampled, scaled to max 1."""
    backbone = probe.model.backbone
    with torch.no_grad():
        maps = backbone.forward_features(probe.data.val[index][0][None])
        cam = torch.relu(torch.einsum("c,nchw->nhw", backbone.fc.weight[target], maps))[:, None]
        cam = torch.nn.functional.interpolate(cam, size=(SHAPE_SIDE, SHAPE_SIDE), mode="bilinear")[0, 0]
    return (cam / cam.max() if cam.max() > 0 else cam).numpy()


def test_gradcam_is_the_class_activation_map_of_a_resnet(cnn_run):
    probe = load_probe(cnn_run)
    # After one epoch a class may have no positive evidence anywhere (an all-zero map):
    # explain the class with the most.
    target = max(range(len(SHAPES)), key=lambda c: class_activation_map(probe, 0, c).std())
    heatmap, overlay, predicted = gradcam(probe, 0, target_class=target)
    assert heatmap.shape == (SHAPE_SIDE, SHAPE_SIDE) and heatmap.dtype == np.float32
    assert heatmap.min() >= 0 and heatmap.max() == pytest.approx(1.0) and heatmap.std() > 1e-3
    np.testing.assert_allclose(heatmap, class_activation_map(probe, 0, target), atol=1e-4)
    assert overlay.shape == (SHAPE_SIDE, SHAPE_SIDE, 3) and overlay.dtype == np.uint8
    assert predicted == stored(cnn_run).predicted[0]  # the prediction, whichever class is explained
    assert gradcam(probe, 0)[2] == predicted
    with pytest.raises(ProbeError, match="class 7 does not exist"):
        gradcam(probe, 0, target_class=7)
    with pytest.raises(ProbeError, match="there is no validation sample 12"):
        gradcam(probe, 12)


def test_gradcam_refuses_the_mlp(mlp_run):
    with pytest.raises(ProbeError, match="Grad-CAM needs a convolutional model"):
        gradcam(load_probe(mlp_run), 0)


def test_text_run_has_snippets_not_images(tmp_path):
    write_reviews(tmp_path / "reviews.csv")
    run_dir = train_run(tmp_path / "runs", {"model_name": "text_embedding_bag", "data_dir": "reviews.csv",
                                            "val_split": 0.3}, cwd=tmp_path)
    probe = load_probe(run_dir)
    np.testing.assert_allclose(probe_probs(probe), stored(run_dir).probs, atol=1e-2)
    assert thumbnail(probe, 0) is None
    row = int(probe.data.val_ids[0].rpartition("#")[2])
    written = (tmp_path / "reviews.csv").read_text(encoding="utf-8").splitlines()[row]
    assert text_snippet(probe, 0) == written.rpartition(",")[0].strip('"')
    with pytest.raises(ProbeError, match="Grad-CAM needs images; this run trained on text"):
        gradcam(probe, 0)


def test_missing_checkpoint_says_so(tmp_path):
    (tmp_path / "runs" / "fresh_run").mkdir(parents=True)
    with pytest.raises(ProbeError, match="no checkpoint yet"):
        load_probe(tmp_path / "runs" / "fresh_run")


def test_missing_data_folder_names_it(cnn_run, tmp_path):
    moved = tmp_path / "elsewhere" / "runs" / cnn_run.name
    shutil.copytree(cnn_run, moved)
    with pytest.raises(ProbeError, match="the data folder data/shapes is not here"):
        load_probe(moved)
    with pytest.raises(ProbeError, match=r"looked in .* and "):
        find_data_dir("data/shapes", moved)


def test_changed_data_is_refused(cnn_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(cnn_run.parent.parent, copy)
    stored_first = stored(cnn_run).sample_ids[0]
    (copy / "data" / "shapes" / stored_first).unlink()
    with pytest.raises(ProbeError, match="the data on disk changed since the run"):
        load_probe(copy / "runs" / cnn_run.name)
