"""model.weights=torchvision:resnet18: torchvision's enum, torch.hub's hash-checked download, a local server."""

import hashlib
import io

import numpy as np
import pytest
import torch
import torchvision

from sesemi_common import pretrained as common_pretrained
from sesemi_common.weights import WeightsError, read_npz_with_metadata
from sesemi_torch import cli, convert, pretrained
from sesemi_torch.models import make_model
from tests.common.test_cifar import http_root  # noqa: F401  (the local HTTP server fixture)
from tests.torch.test_convert import assert_state_equal, randomized

OFFICIAL = "https://download.pytorch.org/models"


@pytest.fixture(scope="module")
def resnet18_file():
    """(bytes of a resnet18 state dict saved as torchvision's file is, its SHA-256, the state dict)."""
    reference = randomized(torchvision.models.resnet18(weights=None), seed=5).state_dict()
    buffer = io.BytesIO()
    torch.save(reference, buffer)
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest(), reference


@pytest.fixture
def mirror(http_root, monkeypatch, tmp_path):  # noqa: F811
    """The served folder, with SESEMI_WEIGHTS_URL pointing at it and TORCH_HOME in tmp_path."""
    served, url = http_root
    monkeypatch.setenv("SESEMI_WEIGHTS_URL", url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return served, url


@pytest.fixture
def enum_names_fixture(resnet18_file, monkeypatch):
    """ResNet18_Weights.IMAGENET1K_V1 names a file whose hash prefix is the fixture's, as torchvision's names its own."""
    _, sha, _ = resnet18_file
    member = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    monkeypatch.setattr(member.value, "url", f"{OFFICIAL}/resnet18-{sha[:8]}.pth")
    return f"resnet18-{sha[:8]}.pth"


def test_names_resolve_through_torchvisions_enums(monkeypatch):
    monkeypatch.delenv("SESEMI_WEIGHTS_URL", raising=False)
    assert pretrained.weights_url("torchvision:resnet18") == f"{OFFICIAL}/resnet18-f37072fd.pth"
    assert pretrained.weights_url("torchvision:resnet50") == f"{OFFICIAL}/resnet50-0676ba61.pth"
    assert pretrained.weights_url("torchvision:resnet50:IMAGENET1K_V2") == f"{OFFICIAL}/resnet50-11ad3fa6.pth"
    weights = common_pretrained.parse("torchvision:resnet50:IMAGENET1K_V2")
    assert pretrained.weights_enum(weights) is torchvision.models.ResNet50_Weights.IMAGENET1K_V2


def test_download_is_hash_checked_and_loads_the_backbone(resnet18_file, mirror, enum_names_fixture, tmp_path):
    data, _, reference = resnet18_file
    served, _ = mirror
    (served / enum_names_fixture).write_bytes(data)
    model = make_model("resnet18", 10, {"self": 6})
    heads = {k: v.clone() for k, v in model.state_dict().items() if "head" in k}
    convert.load_backbone_weights(model, "torchvision:resnet18")
    assert_state_equal(model.backbone.state_dict(), {k: v for k, v in reference.items() if not k.startswith("fc.")})
    for key, value in heads.items():  # ImageNet's fc is dropped; the run's heads stay
        assert torch.equal(model.state_dict()[key], value), key
    assert (tmp_path / "torch" / "hub" / "checkpoints" / enum_names_fixture).read_bytes() == data  # TORCH_HOME


def test_a_file_that_fails_the_hash_check_is_one_line(resnet18_file, mirror, tmp_path):
    data, sha, _ = resnet18_file
    served, url = mirror
    (served / "resnet18-f37072fd.pth").write_bytes(data)  # the official name, other bytes
    with pytest.raises(WeightsError) as info:
        convert.load_backbone_weights(make_model("resnet18", 10), "torchvision:resnet18")
    assert str(info.value) == (f"download of {url}/resnet18-f37072fd.pth failed its hash check (invalid hash value "
                               f"(expected \"f37072fd\", got \"{sha}\")): the transfer was corrupted or the server "
                               "holds another file; run again to download it again")
    assert list((tmp_path / "torch" / "hub" / "checkpoints").iterdir()) == []


def test_a_missing_file_is_one_line(mirror, tmp_path):
    _, url = mirror
    with pytest.raises(WeightsError) as info:
        pretrained.load_state_dict("torchvision:resnet50")
    assert str(info.value) == (f"cannot download {url}/resnet50-0676ba61.pth (HTTP 404 File not found): check the "
                               "network, set SESEMI_WEIGHTS_URL to a mirror that holds resnet50-0676ba61.pth, or put "
                               f"resnet50-0676ba61.pth in {tmp_path}/torch/hub/checkpoints")


def test_the_train_cli_refuses_a_bad_download_in_one_line(resnet18_file, mirror, capsys, tmp_path):
    data, sha, _ = resnet18_file
    served, url = mirror
    (served / "resnet18-f37072fd.pth").write_bytes(data)
    code = cli.main(["train", "model.backbone=resnet18", "model.weights=torchvision:resnet18", "data.image_size=16",
                     "data.n_labels=20", "train.steps=2", "train.batch_labeled=8", "train.batch_unlabeled=2",
                     "--run-dir", str(tmp_path / "run"), "--no-progress"])
    captured = capsys.readouterr()
    announced, error = captured.err.strip().splitlines()  # torch.hub's announcement, then one line, no traceback
    assert code == 2 and captured.out == ""
    assert announced.startswith(f'Downloading: "{url}/resnet18-f37072fd.pth" to ')
    assert error.startswith(f"error: download of {url}/resnet18-f37072fd.pth failed its hash check")


def test_convert_writes_the_npz_where_jax_looks(resnet18_file, mirror, enum_names_fixture, monkeypatch, tmp_path,
                                                 capsys):
    data, _, reference = resnet18_file
    served, url = mirror
    (served / enum_names_fixture).write_bytes(data)
    monkeypatch.setenv("SESEMI_CACHE_DIR", str(tmp_path / "cache"))
    assert convert.main(["torchvision:resnet18"]) == 0
    path = tmp_path / "cache" / "pretrained" / "torchvision-resnet18-IMAGENET1K_V1.npz"
    captured = capsys.readouterr()
    assert captured.out == f"{path}\n"  # torch.hub's "Downloading: ..." goes to stderr, not into the output
    assert captured.err.startswith(f'Downloading: "{url}/{enum_names_fixture}" to {tmp_path}/torch/hub/checkpoints/')
    arrays, metadata = read_npz_with_metadata(path)
    assert sorted(arrays) == sorted(reference)  # fc included, as torchvision_pth_to_npz writes it
    for key, value in reference.items():
        np.testing.assert_array_equal(arrays[key], value.numpy())
    assert metadata == {"weights": "ResNet18_Weights.IMAGENET1K_V1", "url": f"{url}/{enum_names_fixture}"}


def test_convert_of_an_unknown_name_is_one_line(capsys):
    assert convert.main(["torchvision:vgg16"]) == 2
    assert capsys.readouterr().err.strip() == ("error: model.weights=torchvision:vgg16: torchvision weights exist here "
                                               "for resnet18, resnet50, not 'vgg16': use e.g. "
                                               "model.weights=torchvision:resnet18")
