"""sesemi_jax.convert without torch: layouts, names, exact round trips, one-line errors.

Variables are random numbers in the shapes jax.eval_shape gives, so nothing is compiled.
"""

import re

import jax
import numpy as np
import pytest

from sesemi_jax import convert
from sesemi_jax.convert import WeightsError
from sesemi_jax.models import init_variables, make_model


def random_variables(backbone, num_classes=10, heads=None, seed=0):
    model = make_model(backbone, num_classes, {"self": 6} if heads is None else heads)
    shapes = jax.eval_shape(lambda k: init_variables(model, k, 32), jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)


def assert_trees_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    jax.tree.map(np.testing.assert_array_equal, actual, expected)


@pytest.fixture(scope="module")
def resnet20_variables():
    return random_variables("resnet20")


def test_state_dict_names_and_layouts(resnet20_variables):
    v = resnet20_variables
    sd = convert.state_dict_from_variables(v, "resnet20")
    # 21 convs (stem, 18 in blocks, 2 shortcuts), 21 BNs x 5 entries, 2 linear heads x 2.
    assert len(sd) == 21 + 21 * 5 + 4
    kernel = v["params"]["backbone"]["layer2_0"]["downsample_0"]["kernel"]  # HWIO (1, 1, 16, 32)
    weight = sd["backbone.layer2.0.downsample.0.weight"]
    assert weight.shape == (32, 16, 1, 1) and weight[5, 7, 0, 0] == kernel[0, 0, 7, 5]
    conv1 = sd["backbone.conv1.weight"]
    assert conv1.shape == (16, 3, 3, 3)
    assert conv1[4, 2, 0, 1] == v["params"]["backbone"]["conv1"]["kernel"][0, 1, 2, 4]
    head = sd["sup_head.linear.weight"]
    assert head.shape == (10, 64) and head[3, 40] == v["params"]["sup_head"]["linear"]["kernel"][40, 3]
    np.testing.assert_array_equal(sd["self_head.bias"], v["params"]["self_head"]["bias"])
    bn, stats = v["params"]["backbone"]["layer3_2"]["bn2"], v["batch_stats"]["backbone"]["layer3_2"]["bn2"]
    np.testing.assert_array_equal(sd["backbone.layer3.2.bn2.weight"], bn["scale"])
    np.testing.assert_array_equal(sd["backbone.layer3.2.bn2.bias"], bn["bias"])
    np.testing.assert_array_equal(sd["backbone.layer3.2.bn2.running_mean"], stats["mean"])
    np.testing.assert_array_equal(sd["backbone.layer3.2.bn2.running_var"], stats["var"])
    tracked = sd["backbone.layer3.2.bn2.num_batches_tracked"]
    assert tracked.dtype == np.int64 and tracked.shape == () and tracked == 0


@pytest.mark.parametrize("backbone", ["resnet20", "resnet8", "wrn28_2", "resnet18", "resnet50", "convnet13"])
def test_round_trip_is_exact(backbone):
    v = random_variables(backbone, seed=1)
    back = convert.variables_from_state_dict(convert.state_dict_from_variables(v, backbone), backbone)
    assert_trees_equal(back, v)


def test_wrn_names_follow_the_torch_module():
    sd = convert.state_dict_from_variables(random_variables("wrn28_2", heads={}), "wrn28_2")
    assert sd["backbone.layer1.0.shortcut.weight"].shape == (32, 16, 1, 1)
    assert "backbone.layer1.1.shortcut.weight" not in sd
    assert sd["backbone.final_bn.running_var"].shape == (128,)
    assert not any(key.startswith("self_head") for key in sd)


def test_convnet13_names_follow_the_torch_module():
    sd = convert.state_dict_from_variables(random_variables("convnet13", heads={}), "convnet13")
    assert sd["backbone.conv1.weight"].shape == (128, 3, 3, 3)
    assert sd["backbone.conv1.bias"].shape == (128,)  # the paper's convs have biases
    assert sd["backbone.conv7.weight"].shape == (512, 256, 3, 3)
    assert sd["backbone.conv9.weight"].shape == (128, 256, 1, 1)
    assert sd["backbone.bn9.running_var"].shape == (128,)
    assert not any(key.startswith("backbone.conv10") or key.startswith("backbone.bn10") for key in sd)


def test_npz_round_trip_writes_exactly_the_path(resnet20_variables, tmp_path):
    path = tmp_path / "weights.bin"
    convert.save_npz(resnet20_variables, path, "resnet20")
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]
    assert_trees_equal(convert.load_npz(path, "resnet20"), resnet20_variables)


def test_torchvision_layout_replaces_only_the_backbone(tmp_path):
    source = random_variables("resnet18", seed=2)
    target = random_variables("resnet18", seed=3)
    sd = convert.state_dict_from_variables(source, "resnet18")
    torchvision_sd = {k.removeprefix("backbone."): v for k, v in sd.items() if k.startswith("backbone.")}
    torchvision_sd["fc.weight"] = np.ones((1000, 512), np.float32)  # ImageNet classifier: dropped
    torchvision_sd["fc.bias"] = np.ones(1000, np.float32)
    path = tmp_path / "resnet18.npz"
    np.savez(path, **torchvision_sd)

    loaded = convert.load_torchvision_weights(target, path, "resnet18")
    assert_trees_equal(loaded["params"]["backbone"], source["params"]["backbone"])
    assert_trees_equal(loaded["batch_stats"], source["batch_stats"])
    assert_trees_equal(loaded["params"]["sup_head"], target["params"]["sup_head"])
    assert_trees_equal(loaded["params"]["self_head"], target["params"]["self_head"])


def test_torchvision_loader_refuses_a_sesemi_file(resnet20_variables, tmp_path):
    path = tmp_path / "net.npz"
    convert.save_npz(resnet20_variables, path, "resnet20")
    with pytest.raises(WeightsError, match=r"net.npz holds a whole SesemiNet .* load it with load_npz"):
        convert.load_torchvision_weights(resnet20_variables, path, "resnet20")


@pytest.fixture
def resnet20_state_dict(resnet20_variables):
    return convert.state_dict_from_variables(resnet20_variables, "resnet20")


def test_missing_key_is_named(resnet20_state_dict):
    del resnet20_state_dict["backbone.layer1.2.bn1.running_var"]
    with pytest.raises(WeightsError, match=r"^state dict: missing key 'backbone.layer1.2.bn1.running_var' "
                                           r"that resnet20 needs"):
        convert.variables_from_state_dict(resnet20_state_dict, "resnet20")


def test_unexpected_key_is_named(resnet20_state_dict):
    resnet20_state_dict["backbone.layer4.0.conv1.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(WeightsError, match="unexpected key 'backbone.layer4.0.conv1.weight' that resnet20 "
                                           "does not have"):
        convert.variables_from_state_dict(resnet20_state_dict, "resnet20")


def test_counter_of_a_missing_batchnorm_is_unexpected(resnet20_state_dict):
    resnet20_state_dict["backbone.layer1.0.bn9.num_batches_tracked"] = np.zeros((), np.int64)
    with pytest.raises(WeightsError, match="unexpected key 'backbone.layer1.0.bn9.num_batches_tracked'"):
        convert.variables_from_state_dict(resnet20_state_dict, "resnet20")


def test_wrong_shape_is_named(resnet20_state_dict):
    resnet20_state_dict["backbone.conv1.weight"] = np.zeros((16, 3, 5, 5), np.float32)
    with pytest.raises(WeightsError, match=r"key 'backbone.conv1.weight' has shape \(16, 3, 5, 5\), "
                                           r"resnet20 expects \(16, 3, 3, 3\)"):
        convert.variables_from_state_dict(resnet20_state_dict, "resnet20")


def test_head_of_the_wrong_width_is_named(resnet20_state_dict):
    resnet20_state_dict["self_head.weight"] = np.zeros((6, 128), np.float32)
    with pytest.raises(WeightsError, match=r"key 'self_head.weight' has shape \(6, 128\), resnet20 expects \(6, 64\)"):
        convert.variables_from_state_dict(resnet20_state_dict, "resnet20")


def test_half_a_head_is_an_error(resnet20_state_dict):
    del resnet20_state_dict["sup_head.linear.bias"]
    with pytest.raises(WeightsError, match=r"missing key 'sup_head.linear.bias' \(sup_head.linear is only partly"):
        convert.variables_from_state_dict(resnet20_state_dict, "resnet20")


def test_file_of_another_backbone_names_the_first_missing_key(resnet20_variables, tmp_path):
    path = tmp_path / "resnet20.npz"
    convert.save_npz(resnet20_variables, path, "resnet20")
    message = rf"^weights file {re.escape(str(path))}: missing key 'backbone.\S+' that wrn28_2 needs"
    with pytest.raises(WeightsError, match=message):
        convert.load_npz(path, "wrn28_2")


def test_variables_of_another_backbone_are_refused(resnet20_variables):
    message = r"^variables: missing key 'backbone.final_bn.\w+' that wrn28_2 needs \(are these the variables of"
    with pytest.raises(WeightsError, match=message):
        convert.state_dict_from_variables(resnet20_variables, "wrn28_2")


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(WeightsError, match=r"weights file \S+nothing.npz does not exist"):
        convert.load_npz(tmp_path / "nothing.npz", "resnet20")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(WeightsError, match=r"weights file \S+text.npz is not a readable .npz"):
        convert.load_npz(tmp_path / "text.npz", "resnet20")


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone 'vgg16'"):
        convert.variables_from_state_dict({}, "vgg16")


def test_every_head_a_method_declares_round_trips(tmp_path):
    """Issue 16: the converter reads any `{name}_head` (examples/flip_proxy's `flip_head`), not a fixed list."""
    variables = random_variables("resnet20", heads={"flip": 3, "self": 6}, seed=4)
    path = tmp_path / "net.npz"
    convert.save_npz(variables, path, "resnet20")
    state_dict = convert.read_npz(path)
    assert state_dict["flip_head.weight"].shape == (3, 64) and state_dict["self_head.bias"].shape == (6,)
    assert_trees_equal(convert.load_npz(path, "resnet20"), variables)


def test_a_runs_model_file_gives_its_backbone_and_keeps_the_new_heads(resnet20_variables, tmp_path):
    """model.weights=RUN/model.npz: the backbone of a whole SesemiNet, heads of another method and classes kept."""
    path = tmp_path / "model.npz"
    convert.save_npz(resnet20_variables, path, "resnet20")
    target = random_variables("resnet20", num_classes=4, heads={}, seed=5)
    loaded = convert.load_backbone_weights(target, path, "resnet20")
    assert_trees_equal(loaded["params"]["backbone"], resnet20_variables["params"]["backbone"])
    assert_trees_equal(loaded["batch_stats"], resnet20_variables["batch_stats"])
    assert_trees_equal(loaded["params"]["sup_head"], target["params"]["sup_head"])
    assert "self_head" not in loaded["params"]
