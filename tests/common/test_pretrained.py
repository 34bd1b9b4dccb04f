import pytest

from sesemi_common import pretrained
from sesemi_common.config import Config, ConfigError, apply_overrides, validate
from sesemi_common.weights import WeightsError


def test_names_and_their_default_variant():
    assert pretrained.parse("torchvision:resnet18") == pretrained.TorchvisionWeights("resnet18", "IMAGENET1K_V1")
    assert pretrained.parse("torchvision:resnet50:IMAGENET1K_V2").name == "torchvision:resnet50:IMAGENET1K_V2"
    assert pretrained.is_torchvision("torchvision:resnet50") and not pretrained.is_torchvision("/w/resnet18.pth")


def test_unknown_names_are_one_line():
    with pytest.raises(WeightsError) as info:
        pretrained.parse("torchvision:vgg16")
    assert str(info.value) == ("model.weights=torchvision:vgg16: torchvision weights exist here for resnet18, "
                               "resnet50, not 'vgg16': use e.g. model.weights=torchvision:resnet18")
    with pytest.raises(WeightsError) as info:
        pretrained.parse("torchvision:resnet18:IMAGENET1K_V2")
    assert str(info.value) == ("model.weights=torchvision:resnet18:IMAGENET1K_V2: resnet18 has the torchvision "
                               "weights IMAGENET1K_V1, not 'IMAGENET1K_V2'")


def test_the_config_refuses_weights_of_another_backbone():
    with pytest.raises(ConfigError) as info:
        apply_overrides(Config(), ["model.backbone=resnet18", "model.weights=torchvision:resnet50"])
    assert str(info.value) == ("model.weights=torchvision:resnet50 are resnet50 weights but model.backbone is "
                               "resnet18: set model.backbone=resnet50")
    validate(apply_overrides(Config(), ["model.backbone=resnet50", "model.weights=torchvision:resnet50"]))


def test_a_mirror_replaces_the_folder_and_keeps_the_hashed_file_name(monkeypatch):
    official = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    monkeypatch.delenv(pretrained.URL_ENV, raising=False)
    assert pretrained.download_url(official) == official
    monkeypatch.setenv(pretrained.URL_ENV, "http://127.0.0.1:8000/mirror/")
    assert pretrained.download_url(official) == "http://127.0.0.1:8000/mirror/resnet18-f37072fd.pth"


def test_the_npz_for_jax_lives_in_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SESEMI_CACHE_DIR", str(tmp_path))
    weights = pretrained.parse("torchvision:resnet50:IMAGENET1K_V2")
    assert pretrained.npz_path(weights) == tmp_path / "pretrained" / "torchvision-resnet50-IMAGENET1K_V2.npz"
    assert pretrained.missing_npz_message("torchvision:resnet18") == (
        f"model.weights=torchvision:resnet18 needs {tmp_path}/pretrained/torchvision-resnet18-IMAGENET1K_V1.npz, "
        "and sesemi_jax cannot read PyTorch's .pth to make it: run `python -m sesemi_torch.convert "
        "torchvision:resnet18` where torch and torchvision are installed (it downloads the weights, checks their "
        "hash and writes that file), or pass model.weights=PATH.npz")
