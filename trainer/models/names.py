"""Model names as users write them: Tiller's own, timm's, or Keras-style (MobileNetV3, EfficientNetB0)."""

from __future__ import annotations

import difflib
from functools import lru_cache

TILLER_MODELS = ("mlp", "text_embedding_bag")

# Keras application names whose timm model is not just the same letters with "_"
# (EfficientNetB0 -> efficientnet_b0, DenseNet121, VGG16, InceptionV3 are found that way).
KERAS_TO_TIMM = {
    "mobilenet": "mobilenetv1_100",
    "mobilenetv2": "mobilenetv2_100",
    "mobilenetv3": "mobilenetv3_large_100",  # seed 003's MobileNetV3 is Keras' default, the large one
    "mobilenetv3large": "mobilenetv3_large_100",
    "mobilenetv3small": "mobilenetv3_small_100",
    "xception": "legacy_xception",  # Keras' Xception is the original (Chollet 2017), not the aligned xception41
    "resnet50v2": "resnetv2_50",
    "resnet101v2": "resnetv2_101",
    "resnet152v2": "resnetv2_152",
    "nasnetlarge": "nasnetalarge",
    **{f"efficientnetv2b{i}": f"tf_efficientnetv2_b{i}" for i in range(4)},
}


def squash(name: str) -> str:
    """Lower case without '-' and '_': the form names are compared in."""
    return name.lower().replace("-", "").replace("_", "")


@lru_cache(maxsize=1)
def _timm_by_squashed() -> dict[str, str]:
    import timm  # slow to import; only timm names need it

    return {squash(name): name for name in timm.list_models()}


def resolve_model_name(name: str) -> str:
    """The model ``name`` means: 'mlp', 'text_embedding_bag' or a timm model name.

    Raises ValueError naming up to three close timm models when there is none.
    """
    key = squash(name)
    for own in TILLER_MODELS:
        if key == squash(own):
            return own
    import timm

    if timm.is_model(name):  # also a name with a pretrained tag, resnet18.a1_in1k
        return name
    if key in KERAS_TO_TIMM:
        return KERAS_TO_TIMM[key]
    by_squashed = _timm_by_squashed()
    if key in by_squashed:
        return by_squashed[key]
    close = [by_squashed[k] for k in difflib.get_close_matches(key, by_squashed, n=3)]
    hint = f"; close timm names: {', '.join(close)}" if close else ""
    raise ValueError(f"unknown model {name!r}: use 'mlp', 'text_embedding_bag', a timm model name or a "
                     f"Keras-style name such as MobileNetV3 or EfficientNetB0{hint}")
