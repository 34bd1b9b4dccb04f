import json

import pytest

from sesemi_common.config import Config, ConfigError, apply_overrides, proxy_classes


def _error(overrides, base=None):
    with pytest.raises(ConfigError) as info:
        apply_overrides(base or Config(), overrides)
    return str(info.value)


def test_defaults_are_those_of_the_design():
    c = Config()
    assert (c.train.batch_labeled, c.train.batch_unlabeled) == (96, 16)
    assert (c.optim.lr, c.optim.momentum, c.optim.nesterov, c.optim.weight_decay) == (0.05, 0.9, True, 5e-4)
    assert (c.optim.schedule, c.optim.poly_power) == ("poly", 0.5)
    assert (c.model.backbone, c.model.dropout, c.model.joint_forward) == ("resnet20", 0.0, False)
    assert (c.method.name, c.method.proxy, c.method.self_weight, c.method.rampup_steps) == ("sesemi", "rotate_flip", 1.0, 0)
    assert (c.augment.crop, c.augment.translate, c.augment.crop_padding, c.augment.hflip) == ("translate", 2, 4, True)
    assert (c.data.dataset, c.data.image_size) == ("digits", 32)


def test_overrides_are_parsed_to_the_field_type():
    c = apply_overrides(Config(), ["optim.lr=0.1", "train.steps=2e3", "model.joint_forward=yes", "optim.momentum=1",
                                   "data.root=/tmp/x=y"])
    assert c.optim.lr == 0.1 and c.train.steps == 2000 and type(c.train.steps) is int
    assert c.model.joint_forward is True and c.optim.momentum == 1.0 and type(c.optim.momentum) is float
    assert c.data.root == "/tmp/x=y"
    assert Config().optim.lr == 0.05  # the base is not modified


def test_save_and_load_round_trip(tmp_path):
    c = apply_overrides(Config(), ["optim.lr=0.2", "method.name=rotation", "train.batch_unlabeled=8"])
    c.save(tmp_path / "c.json")
    assert Config.load(tmp_path / "c.json") == c
    assert json.loads((tmp_path / "c.json").read_text())["optim"]["lr"] == 0.2


def test_partial_file_keeps_defaults(tmp_path):
    (tmp_path / "c.json").write_text('{"optim": {"lr": 0.3}}')
    c = Config.load(tmp_path / "c.json")
    assert c.optim.lr == 0.3 and c.optim.momentum == 0.9 and c.train.steps == 2000


def test_unknown_keys_suggest_the_closest():
    assert _error(["optim.lrr=0.1"]) == "unknown config key 'optim.lrr'; did you mean 'optim.lr'?"
    assert _error(["lr=0.1"]) == "unknown config key 'lr'; did you mean 'optim.lr'?"


def test_bad_values_name_the_key():
    assert _error(["model.joint_forward=maybe"]) == "config key 'model.joint_forward' needs true or false, got 'maybe'"
    assert _error(["train.steps=many"]) == "config key 'train.steps' needs an int, got 'many'"
    assert _error(["optim.lr=fast"]) == "config key 'optim.lr' needs a float, got 'fast'"
    assert _error(["optim.lr"]) == "override 'optim.lr' is not of the form section.key=value, e.g. optim.lr=0.1"
    assert _error(["model.backbone=resnet21"]) == ("config key 'model.backbone' must be one of resnet20, wrn28_2, "
                                                   "resnet18, resnet50, got 'resnet21'; did you mean 'resnet20'?")
    assert _error(["optim.lr=-0.1"]) == "config key 'optim.lr' must be positive, got -0.1"


def test_a_fractional_int_is_an_error_not_truncated():
    assert _error(["train.steps=2.5e0"]) == "config key 'train.steps' needs an int, got '2.5e0'"
    assert _error(["train.steps=2.5"]) == "config key 'train.steps' needs an int, got '2.5'"


def test_cross_field_checks():
    assert _error(["optim.warmup_steps=2000"]) == ("optim.warmup_steps (2000) must be smaller than train.steps (2000)")
    assert _error(["train.batch_unlabeled=0"]) == ("method 'sesemi' needs train.batch_unlabeled > 0 "
                                                   "(or use method.name=supervised)")
    assert apply_overrides(Config(), ["method.name=supervised", "train.batch_unlabeled=0"]).train.batch_unlabeled == 0
    assert _error(["model.dropout=1"]) == "config key 'model.dropout' must be in [0, 1), got 1.0"


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match=f"^config file {tmp_path}/none.json does not exist: pass the path"):
        Config.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{optim: 1}")
    with pytest.raises(ConfigError, match=f"^config file {tmp_path}/bad.json is not valid JSON .*: fix the file$"):
        Config.load(tmp_path / "bad.json")
    (tmp_path / "typo.json").write_text('{"optim": {"lr": 0.1, "nesterow": true}}')
    with pytest.raises(ConfigError, match=r"^unknown config key 'optim.nesterow'; did you mean 'optim.nesterov'\?$"):
        Config.load(tmp_path / "typo.json")


@pytest.mark.parametrize("overrides, classes", [
    ([], 6), (["method.proxy=rotation"], 4), (["method.name=rotation"], 4), (["method.name=supervised"], 0)])
def test_proxy_classes(overrides, classes):
    assert proxy_classes(apply_overrides(Config(), overrides)) == classes
