import json

import pytest

from sesemi_common.config import (Config, ConfigError, apply_overrides, preset_names, preset_path, resume_changes,
                                   valid_keys)
from sesemi_common.methods import ema_decay, get, unlabeled_batch


def test_defaults_follow_the_paper():
    config = Config()
    assert (config.train.batch_labeled, config.train.batch_unlabeled) == (96, 16)
    assert (config.optim.lr, config.optim.momentum, config.optim.nesterov) == (0.05, 0.9, True)
    assert (config.optim.weight_decay, config.optim.schedule, config.optim.poly_power) == (5e-4, "poly", 0.5)
    assert (config.method.sesemi.weight, config.model.dropout, config.model.joint_forward) == (1.0, 0.0, False)
    assert get(config.method.name).heads == {"self": 6}


def test_overrides_parse_to_the_field_type():
    config = apply_overrides(Config(), ["optim.lr=0.1", "train.steps=3e3", "model.joint_forward=true",
                                        "method.name=rotation", "method.rotation.rampup_steps=100"])
    assert config.optim.lr == 0.1 and config.train.steps == 3000 and config.model.joint_forward is True
    assert get(config.method.name).heads == {"self": 4} and config.method.rotation.rampup_steps == 100
    assert config.method.sesemi.rampup_steps == 0  # each method has its own knobs
    assert Config().optim.lr == 0.05  # overrides never touch the defaults


def test_save_load_round_trip(tmp_path):
    config = apply_overrides(Config(), ["optim.lr=0.2", "data.n_labels=4000"])
    config.save(tmp_path / "c.json")
    assert Config.load(tmp_path / "c.json") == config
    (tmp_path / "partial.json").write_text(json.dumps({"optim": {"lr": 0.3}}))
    assert Config.load(tmp_path / "partial.json").optim.lr == 0.3


@pytest.mark.parametrize("override,message", [
    (["optim.lrr=0.1"], "unknown config key 'optim.lrr'; did you mean 'optim.lr'?"),
    (["lr=0.1"], "unknown config key 'lr'; did you mean 'optim.lr'?"),
    (["optim.lr=-0.1"], "config key 'optim.lr' must be positive, got -0.1"),
    (["optim.lr=fast"], "config key 'optim.lr' needs a float, got 'fast'"),
    (["model.backbone=resnet21"], "config key 'model.backbone' must be one of resnet20, resnet8, wrn28_2, resnet18, "
                                  "resnet50, convnet13, got 'resnet21'; did you mean 'resnet20'?"),
    (["augment.normalize=zcaa"], "config key 'augment.normalize' must be one of channel, zca, got 'zcaa'; "
                                 "did you mean 'zca'?"),
    (["augment.noise_std=-0.1"], "config key 'augment.noise_std' must be zero or positive, got -0.1"),
    (["model.joint_forward=maybe"], "config key 'model.joint_forward' needs true or false, got 'maybe'"),
    (["optim.lr"], "override 'optim.lr' is not of the form section.key=value"),
    (["train.batch_unlabeled=0"], "method 'sesemi' needs train.batch_unlabeled > 0"),
    (["optim.warmup_steps=5000"], "optim.warmup_steps (5000) must be smaller than train.steps (2000)"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        apply_overrides(Config(), override)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_config_files(tmp_path):
    with pytest.raises(ConfigError, match="config file .*missing.json does not exist"):
        Config.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        Config.load(tmp_path / "bad.json")
    (tmp_path / "typo.json").write_text(json.dumps({"train": {"step": 10}}))
    with pytest.raises(ConfigError, match="unknown config key 'train.step'; did you mean 'train.steps'"):
        Config.load(tmp_path / "typo.json")


def test_method_knobs_are_nested_and_typos_get_a_hint():
    config = apply_overrides(Config(), ["method.name=mean_teacher", "method.mean_teacher.weight=3"])
    assert config.method.mean_teacher.weight == 3.0 and config.method.pi_model.weight == 10.0
    assert "method.mean_teacher.rampup_steps" in valid_keys()
    with pytest.raises(ConfigError, match="did you mean 'method.mean_teacher.weight'"):
        apply_overrides(Config(), ["method.mean_teacher.weigth=1"])
    with pytest.raises(ConfigError, match="did you mean 'method.sesemi.weight'"):
        apply_overrides(Config(), ["method.sesemi.wieght=1"])
    with pytest.raises(ConfigError, match="config key 'method.pi_model.weight' must be zero or positive"):
        apply_overrides(Config(), ["method.pi_model.weight=-1"])


def test_supervised_alone_is_the_baseline_and_rotation_has_one_spelling():
    config = apply_overrides(Config(), ["method.name=supervised"])
    assert unlabeled_batch(config) == 0  # train.batch_unlabeled (16) is not drawn
    with pytest.raises(ConfigError, match="unknown config key 'method.proxy'"):
        apply_overrides(Config(), ["method.proxy=rotation"])


def test_config_files_of_earlier_runs_load_with_todays_keys():
    old = Config.from_dict({"method": {"name": "sesemi", "proxy": "rotation", "self_weight": 0.5, "rampup_steps": 7}})
    assert old.method.name == "rotation"
    assert (old.method.rotation.weight, old.method.rotation.rampup_steps) == (0.5, 7)


def test_ema_decay_in_force():
    assert ema_decay(Config()) == 0.0
    assert ema_decay(apply_overrides(Config(), ["method.name=mean_teacher"])) == 0.999  # a teacher needs one
    assert ema_decay(apply_overrides(Config(), ["method.name=mean_teacher", "train.ema_decay=0.99"])) == 0.99
    with pytest.raises(ConfigError, match="train.eval_ema needs an EMA"):
        apply_overrides(Config(), ["train.eval_ema=true"])
    with pytest.raises(ConfigError, match=r"train.ema_decay' must be in \[0, 1\)"):
        apply_overrides(Config(), ["train.ema_decay=1"])


@pytest.mark.parametrize("override, message", [
    ("optim.weight_decay=nan", "config key 'optim.weight_decay' must be a finite number, got nan"),
    ("optim.lr=inf", "config key 'optim.lr' must be a finite number, got inf"),
    ("optim.momentum=0", "optim.nesterov needs optim.momentum > 0, got 0.0: set a momentum or optim.nesterov=false"),
])
def test_values_no_run_can_use_are_refused_when_parsed(override, message):
    with pytest.raises(ConfigError) as err:
        apply_overrides(Config(), [override])
    assert str(err.value) == message
    assert apply_overrides(Config(), ["optim.momentum=0", "optim.nesterov=false"]).optim.momentum == 0.0


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "holds a list (a JSON array), not a JSON object: write sections such as"),
    ('{"train": 5}', """config section 'train' must be a JSON object of its keys, e.g. {"train": {"steps": ...}}, got 5"""),
    ('{"optim": [0.1]}', "config section 'optim' must be a JSON object of its keys"),
])
def test_a_config_file_of_the_wrong_shape_says_what_shape(tmp_path, content, message):
    (tmp_path / "c.json").write_text(content)
    with pytest.raises(ConfigError) as err:
        Config.load(tmp_path / "c.json")
    assert message in str(err.value) and "did you mean" not in str(err.value)


def test_resume_may_change_the_lr_and_the_cadence_only():
    saved = apply_overrides(Config(), ["train.steps=40"])
    assert resume_changes(saved, saved) == {}
    lowered = apply_overrides(saved, ["optim.lr=0.01", "train.log_every=5"])
    assert resume_changes(saved, lowered) == {"optim.lr": (0.05, 0.01), "train.log_every": (50, 5)}
    with pytest.raises(ConfigError) as err:
        resume_changes(saved, apply_overrides(saved, ["optim.lr=0.01", "data.n_labels=30"]))
    assert str(err.value).startswith("--resume cannot change data.n_labels: the run started with "
                                     "data.n_labels=100, this command asks for 30; only optim.lr,")


def test_the_paper_preset_loads_by_name_and_by_path():
    """Every knob of the paper's CIFAR-10 recipe that exists here (docs/PAPER_PRESET.md)."""
    config = Config.load("paper")
    assert "paper" in preset_names() and Config.load(preset_path("paper")) == config
    assert (config.data.dataset, config.data.image_size, config.data.n_labels) == ("cifar10", 32, 4000)
    assert (config.model.backbone, config.model.dropout, config.model.joint_forward) == ("convnet13", 0.2, False)
    assert (config.method.name, config.method.sesemi.weight, config.method.sesemi.rampup_steps) == ("sesemi", 1.0, 0)
    augment = config.augment
    assert (augment.crop, augment.translate, augment.hflip, augment.normalize, augment.noise_std) == (
        "translate", 2, True, "zca", 0.15)
    optim = config.optim
    assert (optim.lr, optim.momentum, optim.nesterov, optim.weight_decay, optim.schedule, optim.poly_power,
            optim.warmup_steps) == (0.05, 0.9, True, 1e-3, "poly", 0.5, 0)
    train = config.train
    assert (train.steps, train.batch_labeled, train.batch_unlabeled) == (50 * 3125, 96, 16)
    assert train.eval_every == train.checkpoint_every == 3125  # once per epoch of 50,000 / 16 steps
    assert config.eval.tta == 8  # the paper's DenseEvaluator(oversample=True)


@pytest.mark.parametrize("override, message", [
    ("eval.tta=4", "config key 'eval.tta' must be 1 (one clean view) or 8 (the paper's 8 test-time views), got 4"),
    ("eval.tta=eight", "config key 'eval.tta' needs an int, got 'eight'"),
])
def test_eval_tta_is_1_or_8(override, message):
    assert Config().eval.tta == 1 and apply_overrides(Config(), ["eval.tta=8"]).eval.tta == 8
    with pytest.raises(ConfigError) as err:
        apply_overrides(Config(), [override])
    assert str(err.value) == message
    with pytest.raises(ConfigError, match=r"eval.tta=8 shifts test images by up to 2 px .* needs data.image_size > 2"):
        apply_overrides(Config(), ["data.image_size=2", "eval.tta=8"])


def test_a_config_from_before_the_eval_section_loads_and_resumes_with_tta(tmp_path):
    old = Config().to_dict()
    del old["eval"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    saved = Config.load(tmp_path / "config.json")
    assert saved == Config() and saved.eval.tta == 1
    # How the test set is evaluated changes no training state, so --resume may switch it.
    assert resume_changes(saved, apply_overrides(saved, ["eval.tta=8"])) == {"eval.tta": (1, 8)}


def test_an_unknown_config_names_the_presets(tmp_path):
    with pytest.raises(ConfigError, match=r"config file papr does not exist: pass the path of a JSON config or "
                                          r"a preset \(demo, fixmatch, own_data, paper, tiny\)"):
        Config.load("papr")
