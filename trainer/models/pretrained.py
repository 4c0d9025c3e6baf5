"""Starting weights: timm's hub, a local weights file, or a Tiller checkpoint.

Each loader returns notes saying what was loaded and what was not, for the run's events.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors

SHOWN_NAMES = 5  # tensor names listed in a note before "and N more"


@dataclass
class WeightsFile:
    path: str
    tensors: dict[str, torch.Tensor]
    from_tiller: bool  # a Tiller checkpoint: the whole Classifier's state dict, not a bare timm model's


def read_weights_file(path: str) -> WeightsFile:
    """The tensors in ``path``: .safetensors, or a torch file (.pth/.pt/.bin) read with weights_only."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"pretrained_path {path!r}: there is no such file")
    try:
        raw = load_safetensors(file) if file.suffix == ".safetensors" else torch.load(
            file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"pretrained_path {path!r} could not be read as weights: it is not a torch file "
                         f"of tensors and plain containers (read with weights_only=True, so no code runs); save "
                         f"the state dict alone (torch.save(model.state_dict(), path)) or as .safetensors") from None
    except (OSError, RuntimeError, EOFError, SafetensorError) as exc:
        raise ValueError(f"pretrained_path {path!r} could not be read as weights: {brief(exc)}") from None
    # Tiller's checkpoint payload (trainer/engine/loop.py) holds the state dict under "model" beside the run's config
    from_tiller = isinstance(raw, Mapping) and isinstance(raw.get("model"), Mapping) and "config" in raw
    tensors = {k: v for k, v in _state_dict_in(raw).items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"pretrained_path {path!r} holds no tensors")
    return WeightsFile(path, tensors, from_tiller)


def _state_dict_in(raw: Any) -> Mapping:
    """The state dict inside a checkpoint, where timm's own loader looks for it."""
    from timm.models import clean_state_dict  # strips DDP's "module." and torch.compile's "_orig_mod."

    if not isinstance(raw, Mapping):
        return {}
    for key in ("state_dict", "model"):
        if isinstance(raw.get(key), Mapping):
            return clean_state_dict(raw[key])
    return clean_state_dict(raw)


def hub_backbone(name: str, kwargs: dict[str, Any]) -> tuple[nn.Module, list[str]]:
    """``name`` with timm's pretrained weights from the Hugging Face hub (or its local cache)."""
    import timm

    try:
        backbone = timm.create_model(name, pretrained=True, **kwargs)
    except (OSError, RuntimeError) as exc:  # offline, not cached, no weights for this model, hub errors
        raise ValueError(
            f"could not load pretrained weights for {name} from the Hugging Face hub ({brief(exc)}); "
            f"set pretrained_path to a local weights file, or use_pretrained: false"
        ) from None
    cfg = backbone.pretrained_cfg
    source = cfg.get("hf_hub_id") or f"{name}.{cfg.get('tag')}"
    note = f"loaded {name} pretrained weights ({source}) from the Hugging Face hub"
    return backbone, [note + _classifier_note(kwargs["num_classes"], cfg.get("num_classes"))]


def file_backbone(name: str, kwargs: dict[str, Any], weights: WeightsFile) -> tuple[nn.Module, list[str]]:
    """``name`` with the weights of a plain timm model's file, adapted by timm's own loader.

    timm adapts the first conv to ``in_chans`` and drops a classifier whose class
    count differs; telling it the file's class count keeps a classifier that fits.
    """
    import timm
    from timm.models import get_pretrained_cfg_value

    classifier_keys = _param_keys(get_pretrained_cfg_value(name, "classifier"))
    file_classes = next((weights.tensors[k].shape[0] for k in classifier_keys if k in weights.tensors), 0)
    file_shapes = {k: tuple(v.shape) for k, v in weights.tensors.items()}
    overlay = {"state_dict": dict(weights.tensors), "num_classes": file_classes}  # a copy: timm edits it
    try:
        backbone = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    except RuntimeError as exc:  # tensors of another shape or missing: weights of another architecture
        raise ValueError(f"the weights in {weights.path} do not fit {name}: {brief(exc)}") from None
    dropped = set(classifier_keys) if file_classes != kwargs["num_classes"] else set()
    _check_fit(name, weights.path, backbone, set(file_shapes) - dropped, set(classifier_keys))
    loaded = len(set(file_shapes) - dropped)
    note = f"loaded {loaded} tensors from {weights.path} into {name}"
    note += _classifier_note(kwargs["num_classes"], file_classes)
    note += _first_conv_note(backbone, file_shapes)
    return backbone, [note]


def _check_fit(name: str, path: str, backbone: nn.Module, file_keys: set[str], classifier_keys: set[str]) -> None:
    """Raise when the file and the model disagree beyond the classifier (timm loads non-strictly then)."""
    model_keys = set(backbone.state_dict())
    # BatchNorm fills in num_batches_tracked itself; many published weights leave it out
    missing = {k for k in model_keys - file_keys - classifier_keys if not k.endswith("num_batches_tracked")}
    unexpected = file_keys - model_keys
    if missing or unexpected:
        raise ValueError(f"the weights in {path} do not fit {name}: not in the file: {listed(missing) or 'none'}; "
                         f"not in the model: {listed(unexpected) or 'none'}")


def _first_conv_note(backbone: nn.Module, file_shapes: dict[str, tuple]) -> str:
    first_conv = backbone.pretrained_cfg.get("first_conv")
    key = f"{first_conv}.weight" if isinstance(first_conv, str) else None
    if key not in file_shapes:
        return ""
    here = backbone.get_submodule(first_conv).weight.shape[1]
    there = file_shapes[key][1]
    return f"; {first_conv} adapted from {there} to {here} input channel(s)" if here != there else ""


def load_matching(model: nn.Module, weights: WeightsFile) -> str:
    """Load the tensors of a Tiller checkpoint whose name and shape fit ``model``; say what did not."""
    own = model.state_dict()
    fitting = {k: v for k, v in weights.tensors.items() if k in own and own[k].shape == v.shape}
    if not fitting:
        raise ValueError(f"no tensor of the Tiller checkpoint {weights.path} fits this model: is it "
                         f"from another model_name?")
    model.load_state_dict(fitting, strict=False)
    skipped = [_skip_reason(k, v, own) for k, v in weights.tensors.items() if k not in fitting]
    untouched = [k for k in own if k not in fitting]
    note = f"loaded {len(fitting)} tensors from the Tiller checkpoint {weights.path}"
    if skipped:
        note += f"; skipped {len(skipped)}: {listed(skipped)}"
    if untouched:
        note += f"; {len(untouched)} tensors of this model keep their initial values ({listed(untouched)})"
    return note


def _skip_reason(key: str, tensor: torch.Tensor, own: Mapping[str, torch.Tensor]) -> str:
    if key not in own:
        return f"{key} (not in this model)"
    return f"{key} ({_shape(own[key])} here, {_shape(tensor)} in the file)"


def _classifier_note(classes_here: int, classes_there: int | None) -> str:
    if classes_here == 0:
        return "; seed 002's head starts from random weights"
    if classes_there == 0:
        return "; the classifier starts from random weights (the file has none)"
    if classes_there is not None and classes_here != classes_there:
        return f"; the classifier starts from random weights ({classes_here} classes here, {classes_there} there)"
    return ""


def _param_keys(modules: str | tuple[str, ...] | None) -> list[str]:
    modules = (modules,) if isinstance(modules, str) else modules or ()
    return [f"{m}.{p}" for m in modules for p in ("weight", "bias")]


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(str(d) for d in tensor.shape) or "scalar"


def listed(items) -> str:
    items = sorted(items)
    more = f" and {len(items) - SHOWN_NAMES} more" if len(items) > SHOWN_NAMES else ""
    return ", ".join(items[:SHOWN_NAMES]) + more


def brief(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to ``limit`` characters (torch's list every key)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
