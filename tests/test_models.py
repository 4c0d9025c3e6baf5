import types

import huggingface_hub.constants
import pytest
import timm
import torch
import torch.nn as nn
from safetensors.torch import save_file

from tiller.trainer.steering.config import TrainConfig
from tiller.trainer.models.names import resolve_model_name
from tiller.trainer.models.build import build_model, set_dropout


def images(channels=3, classes=3, size=32):
    return types.SimpleNamespace(kind="image", num_classes=classes, in_channels=channels, image_size=size,
                                 vocab_size=0)


def text(classes=2, vocab=50):
    return types.SimpleNamespace(kind="text", num_classes=classes, in_channels=0, image_size=0, vocab_size=vocab)


def config(**values):
    return TrainConfig(**values)


def batch(channels=3, size=32, n=2):
    return torch.rand(n, channels, size, size)


@pytest.mark.parametrize("name, head, feature_width", [
    ("mlp", "default", 128),
    ("resnet18", "default", 512),
    ("resnet18", "seed002", 128),
    ("mobilenetv3_small_050", "default", 1024),  # after conv_head
    ("mobilenetv3_small_050", "seed002", 128),
    ("efficientnet_b0", "default", 1280),
])
def test_image_models_give_logits_and_features(name, head, feature_width):
    model = build_model(config(model_name=name, head=head), images(channels=1, classes=5)).eval()
    x = batch(channels=1)
    assert model(x).shape == (2, 5)
    assert model.features(x).shape == (2, feature_width)
    assert not model.binary


def test_text_model_gives_one_logit_and_dense_features():
    model = build_model(config(model_name="text_embedding_bag", embedding_dim=8), text()).eval()
    tokens = torch.tensor([[5, 7, 0, 0], [0, 0, 0, 0], [3, 3, 3, 9]])  # the second row is all padding
    logits = model(tokens)
    assert logits.shape == (3, 1) and torch.isfinite(logits).all()
    assert model.features(tokens).shape == (3, 8)
    assert model.binary


def test_text_model_averages_only_real_tokens():
    model = build_model(config(model_name="text_embedding_bag", embedding_dim=8), text()).eval()
    short = torch.tensor([[5, 7, 0, 0, 0, 0]])
    assert torch.allclose(model(short), model(torch.tensor([[5, 7]])))


@pytest.mark.parametrize("name, data, message", [
    ("mlp", text(), "text_embedding_bag"),
    ("resnet18", text(), "text_embedding_bag"),
    ("text_embedding_bag", images(), "text data with exactly 2 classes"),
    ("text_embedding_bag", text(classes=3), "3 classes"),
])
def test_model_and_data_must_match(name, data, message):
    with pytest.raises(ValueError, match=message):
        build_model(config(model_name=name), data)


@pytest.mark.parametrize("alias, timm_name", [
    ("MobileNetV3", "mobilenetv3_large_100"),
    ("mobilenet-v3-small", "mobilenetv3_small_100"),
    ("EfficientNetB0", "efficientnet_b0"),
    ("EfficientNetB7", "efficientnet_b7"),
    ("ResNet50", "resnet50"),
    ("DenseNet121", "densenet121"),
    ("InceptionV3", "inception_v3"),
    ("Xception", "legacy_xception"),
    ("resnet18.a1_in1k", "resnet18.a1_in1k"),
    ("MLP", "mlp"),
])
def test_keras_style_names_resolve_to_timm_models(alias, timm_name):
    assert resolve_model_name(alias) == timm_name
    assert timm_name == "mlp" or timm.is_model(timm_name)


def test_an_alias_builds_its_timm_model():
    model = build_model(config(model_name="MobileNetV3Small"), images())
    assert type(model.backbone).__name__ == "MobileNetV3" and model.backbone.conv_head.out_channels == 1024


def test_unknown_name_suggests_close_timm_names():
    with pytest.raises(ValueError, match="unknown model 'resnet19x'") as info:
        build_model(config(model_name="resnet19x"), images())
    close = str(info.value).split("close timm names: ")[1].split(", ")
    assert 1 <= len(close) <= 3 and all(timm.is_model(name) for name in close)


def test_seed002_head_layer_order():
    model = build_model(config(model_name="resnet18", head="seed002", hidden_size=64, dropout_rate=0.3),
                        images(classes=4))
    layers = list(model.head)
    assert [type(layer) for layer in layers] == [nn.Linear, nn.ReLU, nn.Dropout, nn.BatchNorm1d, nn.Linear]
    assert (layers[0].in_features, layers[0].out_features) == (512, 64)
    assert (layers[2].p, layers[3].num_features, layers[4].out_features) == (0.3, 64, 4)
    assert model.backbone.num_classes == 0 and model.backbone.drop_rate == 0.0  # seed 002 drops only in its head


# ------------------------------------------------------------------ pretrained weights


@pytest.fixture(scope="module")
def resnet_source():
    torch.manual_seed(1)
    return timm.create_model("resnet18", num_classes=5)


def saved(model, path):
    if path.suffix == ".safetensors":
        save_file(model.state_dict(), path)
    else:
        torch.save(model.state_dict(), path)
    return str(path)


def backbone_tensors_equal(model, source, skip=("fc.",)):
    own = model.backbone.state_dict()
    return all(torch.equal(own[k], v) for k, v in source.state_dict().items() if not k.startswith(skip))


@pytest.mark.parametrize("filename", ["weights.pth", "weights.safetensors"])
def test_weights_file_loads_backbone_and_resets_a_classifier_of_other_size(tmp_path, resnet_source, filename):
    path = saved(resnet_source, tmp_path / filename)
    model = build_model(config(model_name="resnet18", use_pretrained=True, pretrained_path=path), images())
    assert backbone_tensors_equal(model, resnet_source)
    assert model.backbone.fc.weight.shape == (3, 512)
    (note, normalised) = model.build_notes
    loaded = len(resnet_source.state_dict()) - 2  # all but fc.weight and fc.bias
    assert note.startswith(f"loaded {loaded} tensors from {path} into resnet18")
    assert "classifier starts from random weights (3 classes here, 5 there)" in note
    assert "mean (0.485, 0.456, 0.406)" in normalised


def test_weights_file_keeps_a_classifier_that_fits(tmp_path, resnet_source):
    path = saved(resnet_source, tmp_path / "w.pth")
    model = build_model(config(model_name="resnet18", use_pretrained=True, pretrained_path=path), images(classes=5))
    assert backbone_tensors_equal(model, resnet_source, skip=())
    assert "random" not in model.build_notes[0]


def test_weights_file_for_grey_images_adapts_the_first_conv_and_normalisation(tmp_path, resnet_source):
    path = saved(resnet_source, tmp_path / "w.pth")
    model = build_model(config(model_name="resnet18", use_pretrained=True, pretrained_path=path),
                        images(channels=1))
    assert torch.allclose(model.backbone.conv1.weight, resnet_source.conv1.weight.sum(dim=1, keepdim=True))
    assert "conv1 adapted from 3 to 1 input channel(s)" in model.build_notes[0]
    assert model.normalize.mean.flatten().tolist() == pytest.approx([(0.485 + 0.456 + 0.406) / 3])
    x = batch(channels=1)
    model.eval()
    assert torch.allclose(model(x), model.backbone((x - model.normalize.mean) / model.normalize.std))


def test_weights_file_of_another_architecture_is_refused(tmp_path, resnet_source):
    path = saved(resnet_source, tmp_path / "w.pth")
    with pytest.raises(ValueError, match=f"the weights in {path} do not fit resnet34"):
        build_model(config(model_name="resnet34", use_pretrained=True, pretrained_path=path), images())


def test_seed002_head_on_a_weights_file(tmp_path, resnet_source):
    path = saved(resnet_source, tmp_path / "w.safetensors")
    model = build_model(config(model_name="resnet18", head="seed002", use_pretrained=True, pretrained_path=path),
                        images())
    assert backbone_tensors_equal(model, resnet_source)
    assert "seed 002's head starts from random weights" in model.build_notes[0]


def tiller_checkpoint(model, path, **config_values):
    torch.save({"epoch": 3, "model": model.state_dict(), "optimizer": {}, "config": config_values}, path)
    return str(path)


def test_tiller_checkpoint_loads_every_tensor_that_fits(tmp_path):
    source = build_model(config(model_name="resnet18", head="seed002", hidden_size=32), images(classes=3))
    path = tiller_checkpoint(source, tmp_path / "last.pt")
    model = build_model(config(model_name="resnet18", head="seed002", hidden_size=32, use_pretrained=True,
                               pretrained_path=path), images(classes=4))
    own, theirs = model.state_dict(), source.state_dict()
    assert all(torch.equal(own[k], v) for k, v in theirs.items() if not k.startswith("head.4."))
    assert isinstance(model.normalize, nn.Identity)  # the checkpoint's run did not normalise either
    (note,) = model.build_notes
    assert f"Tiller checkpoint {path}" in note
    assert "skipped 2: head.4.bias (4 here, 3 in the file), head.4.weight (4x32 here, 3x32 in the file)" in note


def test_tiller_checkpoint_of_a_normalised_run_keeps_normalising(tmp_path, resnet_source):
    first = build_model(config(model_name="resnet18", use_pretrained=True,
                               pretrained_path=saved(resnet_source, tmp_path / "w.pth")), images())
    path = tiller_checkpoint(first, tmp_path / "best.pt")
    model = build_model(config(model_name="resnet18", use_pretrained=True, pretrained_path=path), images())
    assert torch.equal(model.normalize.std, first.normalize.std)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in first.state_dict().items())


def test_tiller_checkpoint_warm_starts_an_mlp(tmp_path):
    source = build_model(config(), images(channels=1, size=8, classes=10))
    path = tiller_checkpoint(source, tmp_path / "last.pt")
    model = build_model(config(use_pretrained=True, pretrained_path=path), images(channels=1, size=8, classes=10))
    assert torch.equal(model.hidden.weight, source.hidden.weight)


def test_mlp_has_no_hub_weights():
    with pytest.raises(ValueError, match="mlp has no pretrained weights"):
        build_model(config(use_pretrained=True), images())


@pytest.mark.parametrize("make_file, message", [
    (lambda path: None, "there is no such file"),
    (lambda path: path.write_bytes(b"not weights at all"), "could not be read as weights"),
    (lambda path: torch.save({"step": 3}, path), "holds no tensors"),
])
def test_unusable_weights_file_is_named(tmp_path, make_file, message):
    path = tmp_path / "w.pth"
    make_file(path)
    with pytest.raises(ValueError, match=message) as info:
        build_model(config(model_name="resnet18", use_pretrained=True, pretrained_path=str(path)), images())
    assert str(path) in str(info.value)


def test_hub_failure_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import
    with pytest.raises(ValueError, match="from the Hugging Face hub") as info:
        build_model(config(model_name="resnet18", use_pretrained=True), images())
    assert "pretrained_path" in str(info.value) and "use_pretrained: false" in str(info.value)


def test_pretrained_path_without_use_pretrained_is_not_loaded(tmp_path, resnet_source):
    path = saved(resnet_source, tmp_path / "w.pth")
    model = build_model(config(model_name="resnet18", pretrained_path=path), images())
    assert model.build_notes == [f"pretrained_path {path} was not loaded: use_pretrained is false"]
    assert not torch.equal(model.backbone.conv1.weight, resnet_source.conv1.weight)
    assert isinstance(model.normalize, nn.Identity)


def test_state_dict_loads_into_the_same_build():
    cfg = config(model_name="mobilenetv3_small_050", head="seed002")
    first, second = build_model(cfg, images()), build_model(cfg, images())
    second.load_state_dict(first.state_dict())
    x = batch()
    assert torch.equal(first.eval()(x), second.eval()(x))


# ------------------------------------------------------------------ dropout


@pytest.mark.parametrize("name, head, data, sites", [
    ("mlp", "default", images(), 1),
    ("text_embedding_bag", "default", text(), 1),
    ("resnet18", "default", images(), 1),  # timm's drop_rate before fc
    ("resnet18", "seed002", images(), 1),  # the head's Dropout; the backbone does not drop
])
def test_set_dropout_counts_the_places_dropout_rate_controls(name, head, data, sites):
    model = build_model(config(model_name=name, head=head, dropout_rate=0.0), data)
    assert set_dropout(model, 0.4) == sites
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    rates += [m.drop_rate for m in model.modules() if isinstance(getattr(m, "drop_rate", None), float)
              and m.drop_rate > 0]
    assert rates.count(0.4) == sites


def test_set_dropout_leaves_dropout_inside_timm_blocks_alone():
    model = build_model(config(model_name="convnext_atto", dropout_rate=0.2), images())
    assert model.backbone.head.drop.p == 0.2
    set_dropout(model, 0.5)
    assert model.backbone.head.drop.p == 0.5
    assert model.backbone.stages[0].blocks[0].mlp.drop1.p == 0.0  # proj_drop_rate, not dropout_rate
