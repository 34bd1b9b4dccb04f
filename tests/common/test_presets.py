"""The shipped presets (sesemi_common/presets/): each documents itself and is what it claims to be."""

import json
from pathlib import Path

import pytest

from sesemi_common.config import ABOUT_KEY, Config, apply_overrides, preset_names, preset_path
from tests.kill_resume import TINY

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["demo", "tiny", "paper", "fixmatch"])
def test_every_preset_opens_with_its_command_cost_and_reach(name):
    assert name in preset_names()
    text = preset_path(name).read_text()
    values = json.loads(text)
    assert next(iter(values)) == ABOUT_KEY  # the first entry a reader sees
    about = values[ABOUT_KEY]
    assert set(about) == {"command", "cost", "reaches"} and all(about.values())
    assert f"--config {name}" in about["command"] or name == "demo" and "sesemi demo" in about["command"]
    Config.load(name)  # the documentation is not read as a setting


def test_tiny_is_the_tests_settings():
    assert Config.load("tiny") == apply_overrides(Config(), TINY)


def test_demo_is_the_demos_settings():
    config = Config.load("demo")
    assert (config.data.dataset, config.data.n_labels, config.data.image_size) == ("digits", 50, 32)
    assert (config.model.backbone, config.method.name) == ("resnet20", "sesemi")
    assert (config.train.steps, config.train.batch_labeled, config.train.batch_unlabeled) == (100, 32, 8)
    assert (config.train.log_every, config.train.eval_every, config.train.checkpoint_every) == (25, 25, 100)


def test_fixmatch_preset_is_the_papers_and_docs_fixmatch_json_still_loads():
    config = Config.load("fixmatch")
    assert (config.method.name, config.model.backbone, config.optim.schedule) == ("fixmatch", "wrn28_2", "fixmatch_cosine")
    assert (config.train.batch_labeled, config.train.batch_unlabeled, config.train.steps) == (64, 448, 2 ** 20)
    assert (config.optim.lr, config.train.ema_decay, config.train.eval_ema) == (0.03, 0.999, True)
    assert Config.load(ROOT / "docs" / "fixmatch.json") == config


def test_a_config_file_may_document_itself(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({ABOUT_KEY: {"command": "sesemi-jax train --config mine.json"}, "optim": {"lr": 0.1}}))
    assert Config.load(path) == apply_overrides(Config(), ["optim.lr=0.1"])
