"""Methods registered outside the tree (sesemi_common/plugins.py): loaded before any config, found
by both CLIs, refused with one line when their views cannot work, and never leaking into the
registry the rest of this process sees (the registering runs in subprocesses or `registered`)."""

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from sesemi_common import methods, plugins
from sesemi_common.config import Config, ConfigError, apply_overrides
from sesemi_common.proxy_forms import proxy_forms
from sesemi_torch.methods import proxy as torch_proxy

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.image_size=16", "data.n_labels=20", "train.steps=4", "train.batch_labeled=8",
        "train.batch_unlabeled=2", "train.log_every=2", "train.eval_every=4", "train.checkpoint_every=4",
        "train.eval_batch_size=256"]


def test_a_module_that_does_not_import_is_a_one_line_config_error(monkeypatch):
    monkeypatch.setenv(plugins.ENVIRONMENT_VARIABLE, "no_such_package.method")
    with pytest.raises(ConfigError, match="plug-in module 'no_such_package.method' \\(named by SESEMI_PLUGINS\\) "
                                          "cannot be imported"):
        Config()


def test_an_installed_entry_point_is_loaded_with_nothing_to_set(monkeypatch):
    entry = metadata.EntryPoint(name="flip_proxy", value="examples.flip_proxy", group=plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group: [entry] if group == entry.group else [])
    monkeypatch.setattr(plugins, "_entry_points_read", False)
    monkeypatch.setattr(plugins, "_loaded", {})
    monkeypatch.delitem(sys.modules, "examples.flip_proxy", raising=False)
    monkeypatch.delenv(plugins.ENVIRONMENT_VARIABLE, raising=False)
    with plugins.isolated_registry():
        config = apply_overrides(Config(), ["method.name=flip_proxy"])
        assert config.method.flip_proxy.weight == 1.0
        assert plugins.load() == {"examples.flip_proxy": ("flip_proxy",)}
    assert "flip_proxy" not in methods.method_names()


def test_an_unknown_method_names_the_way_to_load_a_plug_in():
    with pytest.raises(ConfigError, match="got 'flip_proxy'; a method registered outside sesemi is loaded by naming "
                                          "its module in SESEMI_PLUGINS"):
        apply_overrides(Config(), ["method.name=flip_proxy"])
    with pytest.raises(ConfigError, match="unknown config key 'method.flip_proxy.weight'; a method registered"):
        Config.from_dict({"method": {"name": "sesemi", "flip_proxy": {"weight": 0.5}}})


def test_specs_of_reads_a_plug_in_without_registering_it():
    shipped = methods.method_names()
    (spec,) = plugins.specs_of("examples.flip_proxy")
    assert (spec.name, spec.heads, spec.views_per_image) == ("flip_proxy", {"flip": 3}, 3)
    assert methods.method_names() == shipped
    with plugins.registered(spec):
        config = apply_overrides(Config(), ["method.name=flip_proxy", "method.flip_proxy.weight=0.5"])
        assert config.method.flip_proxy.weight == 0.5
    assert methods.method_names() == shipped and not hasattr(Config().method, "flip_proxy")


def test_views_of_unequal_size_are_declared_or_refused_at_registration():
    # A clean view of n images beside 6n proxy forms: 7 images per unlabeled image in 2 views.
    branches = (methods.Branch("clean", "clean"), methods.Branch("self", "proxy", heads=("self",)))
    spec = methods.MethodSpec("clean_and_proxy", heads={"self": 6}, views_per_image=7, branches=branches)
    with plugins.isolated_registry(), pytest.raises(ValueError, match="views_per_image 7 is not a multiple of its 2 "
                                                                      "views: give each view's images per unlabeled "
                                                                      "image in view_images"):
        methods.register(spec)
    wrong = methods.MethodSpec("clean_and_proxy", heads={"self": 6}, views_per_image=7, branches=branches,
                               view_images={"clean": 1, "proxy": 5})
    with plugins.isolated_registry(), pytest.raises(ValueError, match="must give each of its views .* summing to "
                                                                      "views_per_image 7"):
        methods.register(wrong)
    assert "clean_and_proxy" not in methods.method_names()
    declared = methods.MethodSpec("clean_and_proxy", heads={"self": 6}, views_per_image=7, branches=branches,
                                  view_images={"clean": 1, "proxy": 6})
    with plugins.registered(declared):
        config = apply_overrides(Config(), ["method.name=clean_and_proxy", "train.batch_unlabeled=4"])
        assert methods.view_sizes(config) == {"clean": 4, "proxy": 24}
        assert methods.images_per_step(config) == config.train.batch_labeled + 28


def test_proxy_forms_follow_the_spec_not_the_name():
    rotations = methods.MethodSpec("my_rotation", heads={"self": 4}, views_per_image=4,
                                   view_params=methods.TRANSLATED, branches=(methods.Branch("self", "proxy", heads=("self",)),),
                                   knobs=methods.ProxyKnobs, module="sesemi_{framework}.methods.proxy")
    assert proxy_forms(methods.get("sesemi")) == "rotate_flip" and proxy_forms(methods.get("rotation")) == "rotation"
    with plugins.registered(rotations):
        config = apply_overrides(Config(), ["method.name=my_rotation"])
        images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 3, 8, 8), dtype=np.uint8))
        views, targets = torch_proxy.apply_views(images, {"offsets": torch.full((3, 2), 2)}, config)
    assert views["proxy"].shape[0] == 12 and targets["self"].tolist() == [0, 1, 2, 3] * 3
    with pytest.raises(ValueError, match="needs a 'self' head of 6 or 4 classes"):
        proxy_forms(methods.MethodSpec("odd", heads={"self": 3}))


def test_the_example_shows_each_image_in_its_three_flip_forms():
    (spec,) = plugins.specs_of("examples.flip_proxy")
    with plugins.registered(spec):
        config = apply_overrides(Config(), ["method.name=flip_proxy"])
        from examples.flip_proxy import torch_flip_proxy
        images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 3, 8, 8), dtype=np.uint8))
        views, targets = torch_flip_proxy.apply_views(images, {"offsets": torch.full((3, 2), 2)}, config)
    flips = views["flips"]  # [img0 id, lr, ud, img1 id, ...]; the JAX twin's are equal (the methods rung)
    assert torch.equal(flips[1], flips[0].flip(2)) and torch.equal(flips[2], flips[0].flip(1))  # CHW: 2 is width
    assert torch.equal(flips[0], images[0]) and targets["flip"].tolist() == [0, 1, 2] * 3


def _cli(module: str, *args: str, plugin: bool = True) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != plugins.ENVIRONMENT_VARIABLE}
    if plugin:
        env[plugins.ENVIRONMENT_VARIABLE] = "examples.flip_proxy"
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_the_flip_proxy_plug_in_trains_from_both_clis(tmp_path):
    for framework in ("jax", "torch"):
        run_dir = tmp_path / framework
        done = _cli(f"sesemi_{framework}.cli", "train", "method.name=flip_proxy", "method.flip_proxy.weight=0.5",
                    *TINY, "--run-dir", str(run_dir), "--no-progress")
        assert done.returncode == 0, done.stderr[-3000:]
        logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        losses = [m for m in logged if "loss_flip" in m]
        assert [m["step"] for m in losses] == [2, 4]
        assert all(m["loss"] == pytest.approx(m["loss_sup"] + 0.5 * m["loss_flip"], rel=1e-5) for m in losses)
        assert json.loads((run_dir / "summary.json").read_text())["method"] == "flip_proxy"
    # A run's config.json names the plug-in's knobs: reading it (eval, resume) loads the plug-in
    # first, and without it the error says how to load it.
    done = _cli("sesemi_torch.cli", "eval", str(tmp_path / "jax"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert 0.0 <= json.loads(done.stdout)["test_accuracy"] <= 1.0
    done = _cli("sesemi_torch.cli", "eval", str(tmp_path / "jax"), plugin=False)
    assert done.returncode == 2 and "SESEMI_PLUGINS" in done.stderr and "Traceback" not in done.stderr
