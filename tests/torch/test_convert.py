"""sesemi_torch.convert: exact .npz round trips, torchvision .pth files, one-line errors."""

import numpy as np
import pytest
import torch
import torchvision

from sesemi_torch import convert
from sesemi_torch.convert import WeightsError
from sesemi_torch.models import make_model


def randomized(model, seed):
    """Every float entry of the state dict random, num_batches_tracked nonzero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape, generator=generator) + 0.1)
            else:
                value.fill_(7)
    return model


def assert_state_equal(actual, expected, skip=()):
    actual = {k: v for k, v in actual.items() if not k.endswith(skip)} if skip else actual
    expected = {k: v for k, v in expected.items() if not k.endswith(skip)} if skip else expected
    assert list(actual) == list(expected)
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


@pytest.mark.parametrize("backbone", ["resnet20", "wrn28_2"])
def test_npz_round_trip_is_exact(backbone, tmp_path):
    source = randomized(make_model(backbone, 10, {"self": 6}), seed=0)
    path = tmp_path / "weights.bin"
    convert.save_npz(source, path)
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]  # no '.npz' appended
    target = convert.load_npz(make_model(backbone, 10, {"self": 6}), path)
    assert_state_equal(target.state_dict(), source.state_dict())


def test_file_keeps_torch_names_and_layouts(tmp_path):
    model = randomized(make_model("resnet20", 10, {"self": 6}), seed=1)
    convert.save_npz(model, tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz") as data:
        assert sorted(data.files) == sorted(model.state_dict())
        np.testing.assert_array_equal(data["backbone.conv1.weight"], model.backbone.conv1.weight.detach().numpy())
        assert data["backbone.bn1.num_batches_tracked"].dtype == np.int64
        assert data["backbone.bn1.num_batches_tracked"] == 7


def test_missing_num_batches_tracked_keeps_the_models_value(tmp_path):
    source = randomized(make_model("resnet20", 10, {"self": 6}), seed=2)
    arrays = {k: v.numpy() for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    np.savez(tmp_path / "w.npz", **arrays)
    target = convert.load_npz(make_model("resnet20", 10, {"self": 6}), tmp_path / "w.npz")
    assert target.backbone.bn1.num_batches_tracked.item() == 0
    assert_state_equal(target.state_dict(), source.state_dict(), skip="num_batches_tracked")


@pytest.fixture
def arrays():
    return {k: v.numpy().copy() for k, v in make_model("resnet20", 10, {"self": 6}).state_dict().items()}


def load_arrays(arrays, tmp_path, backbone="resnet20"):
    np.savez(tmp_path / "w.npz", **arrays)
    return convert.load_npz(make_model(backbone, 10, {"self": 6}), tmp_path / "w.npz")


def test_missing_key_is_named(arrays, tmp_path):
    del arrays["backbone.layer2.0.downsample.0.weight"]
    with pytest.raises(WeightsError, match=r"w.npz: missing key 'backbone.layer2.0.downsample.0.weight' that "
                                           r"the model needs"):
        load_arrays(arrays, tmp_path)


def test_unexpected_key_is_named(arrays, tmp_path):
    arrays["backbone.fc.weight"] = np.zeros((1000, 64), np.float32)
    with pytest.raises(WeightsError, match=r"w.npz: unexpected key 'backbone.fc.weight' that the model does not have"):
        load_arrays(arrays, tmp_path)


def test_wrong_shape_is_named(arrays, tmp_path):
    arrays["sup_head.linear.weight"] = np.zeros((100, 64), np.float32)
    with pytest.raises(WeightsError, match=r"key 'sup_head.linear.weight' has shape \(100, 64\), the model expects "
                                           r"\(10, 64\)"):
        load_arrays(arrays, tmp_path)


def test_file_of_another_backbone(arrays, tmp_path):
    with pytest.raises(WeightsError, match=r"missing key 'backbone.\S+' that the model needs \(was the file saved "
                                           r"from another backbone\?\)"):
        load_arrays(arrays, tmp_path, backbone="wrn28_2")


def test_missing_or_unreadable_file(tmp_path):
    model = make_model("resnet20", 10)
    with pytest.raises(WeightsError, match=r"weights file \S+nothing.npz does not exist"):
        convert.load_npz(model, tmp_path / "nothing.npz")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(WeightsError, match=r"weights file \S+text.pth is not a readable torch state dict"):
        convert.load_torchvision_weights(model, tmp_path / "text.pth")


@pytest.fixture(scope="module")
def resnet18_pth(tmp_path_factory):
    """torchvision.models.resnet18().state_dict() saved as its pretrained file would be (fc included)."""
    torch.manual_seed(3)
    reference = randomized(torchvision.models.resnet18(weights=None), seed=3)
    path = tmp_path_factory.mktemp("tv") / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    return path, reference.state_dict()


def test_torchvision_pth_loads_into_the_backbone(resnet18_pth):
    path, reference = resnet18_pth
    model = make_model("resnet18", 10, {"self": 6})
    heads = {k: v.clone() for k, v in model.state_dict().items() if "head" in k}
    convert.load_torchvision_weights(model, path)
    expected = {k: v for k, v in reference.items() if not k.startswith("fc.")}
    assert_state_equal(model.backbone.state_dict(), expected)
    for key, value in heads.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_torchvision_pth_to_npz_keeps_every_key(resnet18_pth, tmp_path):
    path, reference = resnet18_pth
    convert.torchvision_pth_to_npz(path, tmp_path / "resnet18.npz")
    with np.load(tmp_path / "resnet18.npz") as data:
        assert sorted(data.files) == sorted(reference)
        for key in reference:
            np.testing.assert_array_equal(data[key], reference[key].numpy())


def test_torchvision_pth_of_the_wrong_architecture(resnet18_pth):
    path, _ = resnet18_pth
    with pytest.raises(WeightsError, match=r"resnet18.pth: missing key '\S+' that the model needs"):
        convert.load_torchvision_weights(make_model("resnet50", 10), path)


def test_a_pth_written_by_sesemi_export_gives_its_backbone(tmp_path):
    # issue 30.8: `sesemi export`'s .pth (a whole SesemiNet) as model.weights, as its model.npz would be
    trained = make_model("resnet20", 10, {"self": 6})
    torch.save(trained.state_dict(), tmp_path / "net.pth")
    fresh = convert.load_backbone_weights(make_model("resnet20", 3), tmp_path / "net.pth")
    for key, value in trained.backbone.state_dict().items():
        assert torch.equal(fresh.backbone.state_dict()[key], value), key
    assert fresh.sup_head.linear.weight.shape[0] == 3  # the heads stay the new run's


def test_a_file_that_is_no_weights_file_gets_no_library_advice(tmp_path):
    (tmp_path / "notes.pth").write_text("not weights")
    np.savez(tmp_path / "objects.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(WeightsError) as err:
        convert.load_backbone_weights(make_model("resnet20", 10), tmp_path / "notes.pth")
    assert "weights_only" not in str(err.value) and str(err.value).endswith(
        "pass a torchvision .pth, or a run's model.npz or weights/step_<N>.npz")
    with pytest.raises(WeightsError) as err:
        convert.load_backbone_weights(make_model("resnet20", 10), tmp_path / "objects.npz")
    assert str(err.value) == (f"weights file {tmp_path / 'objects.npz'} is not a readable .npz (it holds pickled "
                              "objects, not arrays): pass a run's model.npz or weights/step_<N>.npz")


def test_command_line(resnet18_pth, tmp_path, capsys):
    path, _ = resnet18_pth
    assert convert.main([str(path), str(tmp_path / "out.npz")]) == 0
    assert (tmp_path / "out.npz").is_file()
    assert convert.main([str(path)]) == 2
    assert "usage: python -m sesemi_torch.convert TORCHVISION.pth OUT.npz" in capsys.readouterr().err
