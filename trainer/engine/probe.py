"""A finished (or running) run's model and validation data, rebuilt on demand for the
evaluation panels that need more than the stored predictions: penultimate-layer
features, thumbnails, text snippets and Grad-CAM.

The split is rebuilt from the checkpoint's config: the same seed gives the same
split, so validation index i is stored prediction i. ``load_probe`` checks this
against the sample ids the run stored, so a data folder changed since the run is
an error, not a silently wrong panel.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tiller.store import Store
from tiller.store.predictions import Predictions
from tiller.store.paths import DB_FILENAME
from tiller.trainer.engine.checkpoint import checkpoint_path, load_checkpoint
from tiller.trainer.models.classifier import Classifier
from tiller.trainer.steering.config import ConfigError, TrainConfig, validate_config
from tiller.trainer.data import DataError, DataSplit, load_data
from tiller.trainer.data.text_csv import decode, read_frame
from tiller.trainer.models.build import build_model

BATCH = 256  # validation batch size, as trainer/data/loaders.val_loader uses at least
SNIPPET_WORDS = 40
OVERLAY_ALPHA = 0.45  # share of the heatmap colour in a Grad-CAM overlay


class ProbeError(Exception):
    """A probe cannot be built or cannot do what was asked; the message says why, for the page."""


@dataclass
class Probe:
    run_dir: Path
    which: str  # "best" or "last"
    epoch: int  # the epoch whose weights these are
    config: TrainConfig
    data: DataSplit
    model: Classifier  # eval mode, CPU; the EMA average when the run evaluated that
    data_path: Path | None  # data_dir as found on this machine; None for the built-in digits


def checkpoint_epoch(run_dir: Path, which: str = "best") -> int | None:
    """The epoch of a checkpoint, without reading its tensors (mmap); None when there is none."""
    path = checkpoint_path(run_dir, which)
    if not path.is_file():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])


# ------------------------------------------------------------------ loading


def load_probe(run_dir: Path, which: str = "best") -> Probe:
    """The run's ``which`` checkpoint in a model, and its validation split, on the CPU."""
    run_dir = Path(run_dir)
    payload = _read_checkpoint(run_dir, which)
    config = _checkpoint_config(payload)
    data_path = find_data_dir(config.data_dir, run_dir) if config.data_dir else None
    local = config.model_copy(update={"data_dir": str(data_path)}) if data_path else config
    try:
        data = load_data(local)
    except DataError as exc:
        raise ProbeError(f"the data of this run cannot be loaded: {exc}") from None
    stored = stored_predictions(run_dir, int(payload["epoch"]))
    check_sample_ids(data.val_ids, stored.sample_ids if stored else None)
    model = _model_with_weights(local, data, payload, checkpoint_path(run_dir, which))
    return Probe(run_dir, which, int(payload["epoch"]), config, data, model, data_path)


def _read_checkpoint(run_dir: Path, which: str) -> dict:
    path = checkpoint_path(run_dir, which)
    if not path.is_file():
        raise ProbeError(f"no checkpoint yet: {which}.pt is written at the end of the run's first epoch")
    try:
        return load_checkpoint(path)
    except Exception as exc:  # torch raises many kinds (pickle, zip, EOF) for one cause: a bad file
        raise ProbeError(f"the checkpoint {path} cannot be read ({type(exc).__name__}: {exc})") from None


def _checkpoint_config(payload: dict) -> TrainConfig:
    try:
        return validate_config(payload["config"])
    except ConfigError as exc:
        raise ProbeError(f"the checkpoint's config is no longer valid ({exc}); this Tiller cannot rebuild "
                         f"its model") from None


def find_data_dir(raw: str, run_dir: Path) -> Path:
    """``data_dir`` was relative to where the run started: most often the current directory
    or the repository holding ``runs/`` (the run folder's grandparent). Seed 003's Windows
    paths are tried with forward slashes too."""
    spellings = dict.fromkeys([raw, raw.replace("\\", "/")])
    bases = dict.fromkeys([Path.cwd(), run_dir.resolve().parent.parent])
    for spelling in spellings:
        for base in bases:
            path = base / Path(spelling).expanduser()  # an absolute path ignores base
            if path.exists():
                return path
    looked = " and ".join(str(base) for base in bases)
    raise ProbeError(f"the data folder {raw} is not here (looked in {looked}); the panels that need the "
                     f"model's inputs cannot be shown")


def stored_predictions(run_dir: Path, epoch: int) -> Predictions | None:
    """What the run stored for ``epoch``, or None when its database is not beside it."""
    if not (run_dir.parent / DB_FILENAME).is_file():
        return None
    store = Store(run_dir.parent)
    try:
        return store.predictions(run_dir.name, epoch)
    finally:
        store.close()


def check_sample_ids(rebuilt: list[str], stored: list[str] | None) -> None:
    if stored is None or rebuilt == stored:
        return
    if len(rebuilt) != len(stored):
        raise ProbeError(f"the data on disk changed since the run: its split now has {len(rebuilt):,} "
                         f"validation samples, the run stored {len(stored):,}")
    first = next(i for i, (now, then) in enumerate(zip(rebuilt, stored)) if now != then)
    raise ProbeError(f"the data on disk changed since the run: validation sample {first} is "
                     f"{rebuilt[first]!r} now, the run stored {stored[first]!r}")


def _model_with_weights(config: TrainConfig, data: DataSplit, payload: dict, path: Path) -> Classifier:
    # Built as if starting from this very checkpoint: never the hub or the run's own
    # pretrained_path (which may be gone), and the input normalisation is there iff
    # the checkpoint holds its statistics (see trainer/timm_model._input_normalization).
    from_checkpoint = config.model_copy(update={"use_pretrained": True, "pretrained_path": str(path)})
    try:
        model = build_model(from_checkpoint, data)
        # The EMA average is what validation scored, so it is what the predictions show.
        model.load_state_dict(payload.get("ema_model") or payload["model"])
    except (ValueError, RuntimeError) as exc:
        raise ProbeError(f"the model cannot be rebuilt from the checkpoint: {exc}") from None
    return model.eval()


# ------------------------------------------------------------- inspection


def features(probe: Probe, limit: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(indices, features): penultimate-layer features (n, F) float32 of the validation
    samples at ``indices`` (ascending): all of them, or at most ``limit`` (>= 1) chosen at
    random with ``seed``, so the same call gives the same sample."""
    indices = sample_indices(len(probe.data.val), limit, seed)
    batches = []
    with torch.inference_mode():
        for start in range(0, len(indices), BATCH):
            inputs = torch.stack([probe.data.val[int(i)][0] for i in indices[start:start + BATCH]])
            batches.append(probe.model.features(inputs).float())
    return indices, torch.cat(batches).numpy()


def sample_indices(count: int, limit: int | None, seed: int = 0) -> np.ndarray:
    if limit is None or limit >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))


def thumbnail(probe: Probe, index: int, size: int = 96) -> np.ndarray | None:
    """(size, size, 3) uint8 of validation image ``index`` as the model saw it; None for text."""
    if probe.data.kind != "image":
        return None
    return to_rgb_uint8(validation_input(probe, index), size)


def validation_input(probe: Probe, index: int) -> torch.Tensor:
    if not 0 <= index < len(probe.data.val):
        raise ProbeError(f"there is no validation sample {index}: the run has {len(probe.data.val):,}")
    return probe.data.val[index][0]


def to_rgb_uint8(image: torch.Tensor, size: int | None = None) -> np.ndarray:
    """(C, S, S) float in [0, 1] -> (size, size, 3) uint8; grey becomes three equal channels."""
    if size is not None and size != image.shape[-1]:
        # Nearest when enlarging keeps 8x8 digits' pixels crisp instead of a blur.
        mode = "nearest" if size > image.shape[-1] else "area"
        image = F.interpolate(image[None].float(), size=(size, size), mode=mode)[0]
    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    if pixels.shape[0] == 1:
        pixels = pixels.expand(3, -1, -1)
    return pixels.permute(1, 2, 0).contiguous().numpy()


def text_snippet(probe: Probe, index: int, words: int = SNIPPET_WORDS) -> str:
    """The first words of validation text ``index``: from the CSV when the run read one, else
    the token ids (an imdb.npz holds no words)."""
    tokens = validation_input(probe, index)
    name, _, row = probe.data.val_ids[index].rpartition("#")
    csv_path = _csv_file(probe.data_path, name)
    if csv_path is not None and row.isdigit():
        text = _csv_texts(str(csv_path), csv_path.stat().st_mtime_ns)[int(row) - 1]
        cut = text.split()
        return " ".join(cut[:words]) + (" …" if len(cut) > words else "")
    ids = [str(t) for t in tokens[tokens != 0].tolist()]
    return "token ids: " + " ".join(ids[:words]) + (" …" if len(ids) > words else "")


def _csv_file(data_path: Path | None, name: str) -> Path | None:
    if data_path is None or not name.lower().endswith(".csv"):
        return None
    path = data_path if data_path.is_file() else data_path / name
    return path if path.is_file() else None


@functools.lru_cache(maxsize=2)
def _csv_texts(path: str, mtime_ns: int) -> list[str]:
    """The text column, one entry per row after the header (the numbering the sample ids use)."""
    text, _ = decode(Path(path).read_bytes())
    return list(read_frame(text, Path(path).name)["text"])


# ------------------------------------------------------------------ Grad-CAM


def gradcam(probe: Probe, index: int, target_class: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Grad-CAM (Selvaraju et al. 2017) of validation image ``index`` on the last convolutional
    feature map: (heatmap (S, S) in [0, 1], overlay (S, S, 3) uint8, predicted class).
    ``target_class`` None explains the predicted class."""
    require_gradcam(probe)
    if target_class is not None and not 0 <= target_class < probe.data.num_classes:
        raise ProbeError(f"class {target_class} does not exist: the run has {probe.data.num_classes} classes")
    image = validation_input(probe, index)
    spatial, head = _conv_features_and_head(probe.model, image[None])
    # Only the head needs a graph: the gradient is taken with respect to the feature map.
    spatial = spatial.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = head(spatial)
        predicted = int(logits.argmax(dim=1))
        target = predicted if target_class is None else int(target_class)
        (gradient,) = torch.autograd.grad(logits[0, target], spatial)
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # one weight per channel: its mean gradient
    cam = F.relu((weights * spatial.detach()).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    heatmap = (cam / cam.max() if cam.max() > 0 else cam).numpy()  # all zero: nothing supports the class
    return heatmap, overlay(to_rgb_uint8(image), heatmap), predicted


def require_gradcam(probe: Probe) -> None:
    """Raise ProbeError unless the run is an image model with a convolutional feature map."""
    from tiller.trainer.models.timm_model import Seed002Classifier, TimmClassifier  # imports timm, only needed here

    if probe.data.kind != "image":
        raise ProbeError(f"Grad-CAM needs images; this run trained on {probe.data.kind}")
    if not isinstance(probe.model, (TimmClassifier, Seed002Classifier)):
        raise ProbeError(f"Grad-CAM needs a convolutional model; this run's {probe.config.model_name} has no "
                         f"spatial feature map")


def _conv_features_and_head(model: Classifier, inputs: torch.Tensor):
    """The last conv feature map (N, C, H, W) of a timm model, and the function from it to the logits."""
    from tiller.trainer.models.timm_model import Seed002Classifier

    backbone = model.backbone
    with torch.no_grad():
        spatial = backbone.forward_features(model.normalize(inputs))
    if spatial.ndim != 4:
        raise ProbeError(f"Grad-CAM needs a convolutional model; {type(backbone).__name__}'s features "
                         f"are {spatial.ndim}-D tokens, not a spatial map")
    channels_last = getattr(backbone, "output_fmt", "NCHW") == "NHWC"  # Swin and friends
    if channels_last:
        spatial = spatial.permute(0, 3, 1, 2)

    def head(feature_map: torch.Tensor) -> torch.Tensor:
        # What forward() does after forward_features, on the same weights.
        pooled = backbone.forward_head(feature_map.permute(0, 2, 3, 1) if channels_last else feature_map)
        return model.head(pooled) if isinstance(model, Seed002Classifier) else pooled

    return spatial, head


def overlay(image: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    blended = (1 - OVERLAY_ALPHA) * image + OVERLAY_ALPHA * heat_colours(heatmap)
    return blended.round().clip(0, 255).astype(np.uint8)


# Blue (cold) -> cyan -> green -> yellow -> red (hot), the usual Grad-CAM "jet" reading.
_HEAT_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_HEAT_RGB = np.array([[0, 0, 143], [0, 160, 255], [60, 200, 60], [255, 220, 0], [200, 0, 0]], dtype=np.float64)


def heat_colours(heatmap: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) float RGB in 0..255."""
    return np.stack([np.interp(heatmap, _HEAT_STOPS, _HEAT_RGB[:, c]) for c in range(3)], axis=-1)
