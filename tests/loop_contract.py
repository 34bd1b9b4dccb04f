"""The contract both training loops meet, run by tests/jax/test_loop.py and tests/torch/test_loop.py."""

import numpy as np
import pytest

from sesemi_common.config import Config, apply_overrides
from sesemi_common.progress import NonFiniteLossError
from sesemi_common.runs import RunDir, RunDirError
from tests.kill_resume import TINY, comparable_metrics, run_killed_then_resumed, run_uninterrupted


def tiny(*overrides):
    return apply_overrides(Config(), [*TINY, *overrides])


@pytest.mark.slow
class LoopContract:
    fit = None  # the framework's loop.fit
    backend = None  # its CLI backend
    checkpoints = None  # its checkpoints module
    cli_module = ""

    def test_fit_writes_the_run_directory(self, tmp_path):
        summary = self.fit(tiny(), tmp_path / "run", show_progress=False)
        run = RunDir(tmp_path / "run")
        assert run.read_config() == tiny()
        assert len(run.read_split()["labeled"]) == 20
        metrics = run.read_metrics()
        losses = [m for m in metrics if "loss" in m]
        assert [m["step"] for m in losses] == [4, 8, 12, 16, 20, 24]
        assert set(losses[0]) >= {"step", "epoch", "lr", "loss_sup", "loss_self", "loss", "images_per_s"}
        for m in losses:
            assert m["loss"] == pytest.approx(m["loss_sup"] + m["loss_self"], rel=1e-5)  # w = 1
        assert [m["step"] for m in metrics if "test_accuracy" in m] == [12, 24]
        assert 0.0 <= summary["final_test_accuracy"] <= 1.0
        assert run.read_summary()["framework"] == self.backend.name
        assert self.checkpoints.latest_step(run.checkpoints) == 24


    def test_training_into_an_existing_run_needs_resume(self, tmp_path):
        self.fit(tiny("train.steps=4", "train.checkpoint_every=4"), tmp_path / "run", show_progress=False)
        with pytest.raises(RunDirError, match=r"already holds a run \(finished, see its summary.json\): pass --overwrite"):
            self.fit(tiny("train.steps=4", "train.checkpoint_every=4"), tmp_path / "run", show_progress=False)


    def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(self, tmp_path):
        config = tiny("optim.lr=1e30", "optim.schedule=constant")
        with pytest.raises(NonFiniteLossError, match=r"loss became (nan|inf) at step \d+"):
            self.fit(config, tmp_path / "run", show_progress=False)
        run = RunDir(tmp_path / "run")
        step = self.checkpoints.latest_step(run.checkpoints)
        if step is not None:  # whatever was saved must be finite: it was checked before saving
            logits = self.backend.classifier(run, config, 10)(np.zeros((2, 16, 16, 3), np.uint8))
            assert np.isfinite(logits).all()


    def test_sigkill_then_resume_is_exact(self, tmp_path):
        run_uninterrupted(self.cli_module, tmp_path / "straight")
        run_killed_then_resumed(self.cli_module, tmp_path / "killed", kill_after_step=12)
        assert comparable_metrics(tmp_path / "killed") == comparable_metrics(tmp_path / "straight")
        images = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
        config = RunDir(tmp_path / "straight").read_config()
        straight = self.backend.classifier(RunDir(tmp_path / "straight"), config, 10)(images)
        killed = self.backend.classifier(RunDir(tmp_path / "killed"), config, 10)(images)
        np.testing.assert_array_equal(killed, straight)
