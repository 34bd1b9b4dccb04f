"""Issue 16: the run's framework-free weights files, and the verdict of `sesemi verify`, without a framework."""

import numpy as np
import pytest

from sesemi_common import cli, run_weights
from sesemi_common.config import Config, apply_overrides
from sesemi_common.runs import RunDir, RunDirError
from sesemi_common.verify import RTOL, compare
from sesemi_common.weights import WeightsError, extra_heads, read_npz, read_npz_with_metadata

STATE_DICT = {"backbone.conv1.weight": np.ones((4, 3, 3, 3), np.float32),
              "backbone.bn1.num_batches_tracked": np.zeros((), np.int64),
              "sup_head.linear.weight": np.ones((10, 4), np.float32), "sup_head.linear.bias": np.zeros(10, np.float32),
              "self_head.weight": np.ones((6, 4), np.float32), "self_head.bias": np.zeros(6, np.float32),
              "flip_proxy_head.weight": np.ones((3, 4), np.float32), "flip_proxy_head.bias": np.zeros(3, np.float32)}


def test_extra_heads_are_every_name_head_but_the_supervised_one():
    assert extra_heads(STATE_DICT) == {"self": 6, "flip_proxy": 3}


def _checkpoint(run: RunDir, step: int) -> None:
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    (run.checkpoints / f"step_{step}.pt").write_bytes(b"")


def test_weights_files_follow_the_checkpoints_and_the_last_is_the_model(tmp_path):
    run = RunDir(tmp_path)
    config = apply_overrides(Config(), ["train.steps=6", "train.eval_ema=true", "train.ema_decay=0.9"])
    for step in (2, 4, 6):
        _checkpoint(run, step)
        for old in run.checkpoint_steps()[:-2]:  # the trainer keeps 2
            (run.checkpoints / f"step_{old}.pt").unlink()
        run_weights.save(run, step, STATE_DICT, "torch", config)
        assert run_weights.find(run) == (run_weights.final_file(run) if step == 6 else run_weights.step_file(run, step))
    assert run_weights.saved_steps(run) == [4, 6]
    arrays, metadata = read_npz_with_metadata(run_weights.final_file(run))
    assert metadata == {"framework": "torch", "step": 6, "variables": "ema", "backbone": "resnet20",
                        "method": "sesemi", "num_classes": 10, "heads": {"self": 6, "flip_proxy": 3}}
    assert arrays.keys() == STATE_DICT.keys() and arrays["backbone.bn1.num_batches_tracked"].shape == ()
    assert read_npz(run_weights.step_file(run, 4)).keys() == STATE_DICT.keys()  # the metadata is left out
    assert run_weights.trained_by(run) == "torch"
    with pytest.raises(RunDirError, match=r"keeps no weights of step 2: its weights files are of steps 4, 6"):
        run_weights.require(run, 2)
    assert not list(tmp_path.rglob(".*.tmp"))  # atomic writes leave no temporary file


def test_a_run_without_weights_files_names_the_export_command(tmp_path):
    run = RunDir(tmp_path)
    (run.checkpoints / "8").mkdir(parents=True)  # an orbax checkpoint: a JAX run
    assert run_weights.trained_by(run) == "jax" and run_weights.find(run) is None
    with pytest.raises(RunDirError, match=f"^{tmp_path} has no weights file: write it from its checkpoint with "
                                          f"`sesemi-jax export {tmp_path}`$"):
        run_weights.require(run)


def test_a_truncated_weights_file_is_a_weights_error(tmp_path):
    run = RunDir(tmp_path)
    _checkpoint(run, 2)
    path = run_weights.save(run, 2, STATE_DICT, "jax", Config())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(WeightsError, match=f"^weights file {path} is not a readable .npz"):
        run_weights.read(path)


def _logits(rng, n=50, scale=20.0):
    return (scale * rng.standard_normal((n, 10))).astype(np.float32)


def test_verdict_passes_within_the_bound_and_fails_beyond_it():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 50)
    a = _logits(rng)
    scale = float(np.abs(a).max())
    close = compare({"jax": a, "torch": a + 0.5 * RTOL * scale}, labels)
    assert close["passed"] and close["label_agreement"] == 1.0 and close["max_abs_logit"] == scale
    assert close["bound"] == pytest.approx(RTOL * scale) and close["relative_logit_diff"] == pytest.approx(0.5 * RTOL, rel=1e-3)
    far = a.copy()
    far[3, 0] += 3 * RTOL * scale  # beyond the bound, on a logit that changes no label
    far_result = compare({"jax": a, "torch": far}, labels)
    assert not far_result["passed"] and far_result["labels_differ"] == 0


def test_a_label_may_differ_only_on_a_tie_within_rounding():
    labels = np.array([0, 1])
    a = np.array([[5.0, 5.0 + 1e-6, 0.0], [1.0, 9.0, 0.0]], np.float32)  # image 0: a tie within the bound
    b = a.copy()
    b[0, 0] += 2e-6
    tie = compare({"jax": a, "torch": b}, labels)
    assert tie["passed"] and tie["labels_differ"] == 1 and tie["labels_differ_beyond_ties"] == 0
    assert tie["label_agreement"] == 0.5
    c = a.copy()
    c[1, 0] = 9.0 + 1e-3  # image 1 flips by far more than rounding
    flipped = compare({"jax": a, "torch": c}, labels)
    assert not flipped["passed"] and flipped["labels_differ_beyond_ties"] == 1


def test_verify_and_export_need_their_frameworks(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_installed", lambda package: not package.startswith("torch"))
    assert cli.main(["verify", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("error: sesemi verify runs the model in both frameworks and torch is not "
                                       "installed: pip install 'sesemi[torch]'\n")
    assert cli.main(["export", str(tmp_path), "--to", str(tmp_path / "m.pth")]) == 2
    assert capsys.readouterr().err == ("error: sesemi export writes a torch.save file and torch is not installed: "
                                       "pip install 'sesemi[torch]'\n")
