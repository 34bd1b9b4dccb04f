"""Issue 16: a run trained in one framework is evaluated, verified and exported in the other.

Two tiny digits runs (one per framework, 4 steps at 16x16) are trained once for the module;
each test reads them. `sesemi verify` must find the labels equal on every test image and the
logits within its bound (sesemi_common/verify.py derives it from the model rung).
"""

import json
import shutil

import numpy as np
import pytest
import torch

from sesemi_common import cli, run_weights
from sesemi_common.runs import RunDir
from sesemi_jax import cli as jax_cli
from sesemi_jax import convert as jconvert
from sesemi_jax import loop as jloop
from sesemi_jax.models import init_variables, make_model
from sesemi_torch import cli as torch_cli
from tests.cli_contract import TINY

FRAMEWORKS = {"jax": jax_cli, "torch": torch_cli}
OTHER = {"jax": "torch", "torch": "jax"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, module in FRAMEWORKS.items():
        assert module.main(["train", *TINY, "train.steps=4", "--run-dir", str(root / name), "--no-progress"]) == 0
    # GCN + ZCA inputs: each framework whitens with its own ops (the zca rung bounds them), then the same check.
    assert torch_cli.main(["train", *TINY, "train.steps=4", "augment.normalize=zca", "--run-dir",
                           str(root / "torch-zca"), "--no-progress"]) == 0
    return root


@pytest.mark.parametrize("run_name", ["jax", "torch", "torch-zca"])
def test_verify_agrees_on_every_test_image(runs, run_name, capsys):
    run = RunDir(runs / run_name)
    trained_by = run_name.split("-")[0]
    assert cli.main(["verify", str(run.path)]) == 0
    out = capsys.readouterr().out
    result = run.read_verification()
    assert (result["trained_by"], result["step"], result["test_images"]) == (trained_by, 4, 364)
    assert result["passed"] and result["label_agreement"] == 1.0 and result["labels_differ"] == 0
    assert result["max_abs_logit_diff"] <= result["bound"] == pytest.approx(1e-5 * result["max_abs_logit"])
    accuracy = run.read_summary()["final_test_accuracy"]
    assert result["test_accuracy"] == {"jax": accuracy, "torch": accuracy}
    assert f"| {run_name} | {trained_by} | 4 | {100 * accuracy:.2f}% | {100 * accuracy:.2f}% | 100.00% (364/364) |" in out


@pytest.mark.parametrize("trained_by", ["jax", "torch"])
def test_eval_in_the_other_framework_says_who_trained_it(runs, trained_by, capsys):
    framework = OTHER[trained_by]
    assert FRAMEWORKS[framework].main(["eval", str(runs / trained_by)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["framework"], result["trained_by"], result["step"]) == (framework, trained_by, 4)
    assert result["test_accuracy"] == RunDir(runs / trained_by).read_summary()["final_test_accuracy"]


def test_a_run_without_weights_files_is_exported_by_its_own_framework(runs, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(runs / "torch", old)
    shutil.rmtree(old / "weights")
    (old / "model.npz").unlink()
    assert jax_cli.main(["eval", str(old)]) == 2
    assert capsys.readouterr().err == (f"error: {old} has no weights file: write it from its checkpoint with "
                                       f"`sesemi-torch export {old}`\n")
    assert jax_cli.main(["export", str(old)]) == 2
    assert capsys.readouterr().err == (f"error: {old} was trained by torch, so sesemi-jax cannot read its "
                                       f"checkpoints: run `sesemi-torch export {old}`\n")
    assert torch_cli.main(["export", str(old)]) == 0 and run_weights.saved_steps(RunDir(old)) == [4]
    assert capsys.readouterr().out == f"wrote {old / 'weights' / 'step_4.npz'}\n"
    assert jax_cli.main(["eval", str(old)]) == 0
    assert json.loads(capsys.readouterr().out)["test_accuracy"] == RunDir(old).read_summary()["final_test_accuracy"]


def test_verify_fails_when_the_frameworks_disagree(runs, tmp_path, capsys, monkeypatch):
    """A planted difference of 10x the bound on one logit of one image: exit 1 and verify.json says FAIL."""
    shutil.copytree(runs / "jax", tmp_path / "r")
    classifier = torch_cli.TorchBackend.classifier

    def planted(self, *args):
        classify = classifier(self, *args)

        def shifted(images):
            logits = classify(images)
            logits[7, 3] += 10 * 1e-5 * max(1.0, float(np.abs(logits).max()))
            return logits
        return shifted
    monkeypatch.setattr(torch_cli.TorchBackend, "classifier", planted)
    assert cli.main(["verify", str(tmp_path / "r")]) == 1
    captured = capsys.readouterr()
    assert "| FAIL |" in captured.out and captured.err.startswith("error: the frameworks disagree beyond the tolerance")
    assert RunDir(tmp_path / "r").read_verification()["passed"] is False


def test_the_other_frameworks_model_npz_as_model_weights(runs):
    """model.weights=RUN/model.npz: the backbone of a PyTorch run starts a JAX run (the heads stay new)."""
    model = make_model("resnet8", 10, {"self": 6})
    fresh = init_variables(model, __import__("jax").random.PRNGKey(0), 16)
    loaded = jconvert.state_dict_from_variables(
        jloop.load_pretrained(fresh, str(runs / "torch" / "model.npz"), "resnet8"), "resnet8")
    saved = run_weights.read(runs / "torch" / "model.npz")[0]
    fresh_state = jconvert.state_dict_from_variables(fresh, "resnet8")
    for key, value in loaded.items():
        expected = saved[key] if key.startswith("backbone.") and "num_batches" not in key else fresh_state[key]
        np.testing.assert_array_equal(value, expected, err_msg=key)


def test_export_loads_strictly_into_sesemi_torch(runs, tmp_path, capsys):
    """`sesemi export` of the JAX run: a SesemiNet state dict, every head, that torch loads with strict=True."""
    from sesemi_torch.models import make_model as torch_model

    assert cli.main(["export", str(runs / "jax"), "--to", str(tmp_path / "m.pth")]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'm.pth'}: sesemi_torch SesemiNet state dict, "
                                              "10 classes, step 4 trained by jax")
    model = torch_model("resnet8", 10, {"self": 6})
    model.load_state_dict(torch.load(tmp_path / "m.pth", weights_only=True), strict=True)
    saved = run_weights.read(runs / "jax" / "model.npz")[0]
    assert all(np.array_equal(value.numpy(), saved[key]) for key, value in model.state_dict().items())
