"""The contract both training loops meet, run by tests/jax/test_loop.py and tests/torch/test_loop.py."""

from pathlib import Path

import numpy as np
import pytest

from sesemi_common import run_weights
from sesemi_common.commands import load_classifier
from sesemi_common.config import Config, apply_overrides
from sesemi_common.methods import images_per_step
from sesemi_common.progress import NonFiniteLossError, training_seconds
from sesemi_common.runs import RunDir, RunDirError
from tests.kill_resume import (TINY, comparable_metrics, event_accumulator, event_scalars, jsonl_scalars,
                               run_killed_then_resumed, run_training, run_uninterrupted)


FIXMATCH_CONFIG = Path(__file__).resolve().parents[1] / "docs" / "fixmatch.json"


def tiny(*overrides):
    return apply_overrides(Config(), [*TINY, *overrides])


# Every method beside SESEMI, each with the terms it logs (written by hand: a new method adds
# its line); mean_teacher also trains an EMA teacher and evaluates with it; freematch and
# softmatch carry state (docs/DESIGN.md section 10), flexmatch state per unlabeled image.
METHODS = {
    "pi_model": (("method.name=pi_model",), {"loss_sup", "loss_consistency", "consistency_weight"}),
    "mean_teacher": (("method.name=mean_teacher", "train.eval_ema=true"),
                     {"loss_sup", "loss_consistency", "consistency_weight"}),
    "entmin": (("method.name=entmin",), {"loss_sup", "loss_entropy"}),
    "fixmatch": (("method.name=fixmatch",), {"loss_sup", "loss_unlabeled", "mask_rate", "pseudo_label_accuracy",
                                             "kept_pseudo_label_accuracy"}),
    "freematch": (("method.name=freematch",), {"loss_sup", "loss_unlabeled", "loss_fairness", "mask_rate",
                                               "threshold"}),
    "softmatch": (("method.name=softmatch",), {"loss_sup", "loss_unlabeled", "mask_rate", "confidence_mean"}),
    "uda": (("method.name=uda",), {"loss_sup", "loss_unlabeled", "mask_rate"}),
    "flexmatch": (("method.name=flexmatch",), {"loss_sup", "loss_unlabeled", "mask_rate", "selected_fraction"}),
}


@pytest.mark.slow
class LoopContract:
    fit = None  # the framework's loop.fit
    backend = None  # its CLI backend
    checkpoints = None  # its checkpoints module
    cli_module = ""

    def test_fit_writes_the_run_directory(self, tmp_path):
        """... and evaluates with the paper's 8 test-time views (eval.tta=8)."""
        summary = self.fit(tiny("eval.tta=8"), tmp_path / "run", show_progress=False)
        run = RunDir(tmp_path / "run")
        assert run.read_config() == tiny("eval.tta=8")
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
        training_s = training_seconds(metrics, images_per_step(tiny("eval.tta=8")))
        assert run.read_summary()["training_s"] == pytest.approx(training_s) and training_s > 0
        assert self.checkpoints.latest_step(run.checkpoints) == 24
        assert {"grad_norm", "param_norm", "update_norm"} <= set(losses[0])
        assert all(m["grad_norm"] > 0 and m["param_norm"] > 0 and m["update_norm"] > 0 for m in losses)
        # Beside metrics.jsonl: the same scalars in TensorBoard, and the views at step 0 and each evaluation
        assert event_scalars(run.path) == jsonl_scalars(run.path)
        assert sorted(p.name for p in run.views.iterdir()) == ["step_000000.png", "step_000012.png", "step_000024.png"]
        assert [e.step for e in event_accumulator(run.path).Images("views")] == [0, 12, 24]


    def test_the_paper_preset_trains(self, tmp_path):
        """`--config paper` with a tiny override: convnet13, GCN + ZCA, input noise, dropout, decay
        1e-3 for two steps on 16x16 digits (a 768 x 768 ZCA), and an evaluation. The preset's 8
        test-time views would make that evaluation 8 convnet13 passes over the test set (+40 s on
        this CPU in each framework); test_fit_writes_the_run_directory evaluates with them."""
        config = Config.load("paper")
        assert config.eval.tta == 8
        # TINY's resnet8 would replace the preset's backbone: keep convnet13
        config = apply_overrides(config, [*TINY, "model.backbone=convnet13", "train.steps=2", "train.eval_every=2",
                                          "train.checkpoint_every=2", "eval.tta=1"])
        assert (config.model.backbone, config.augment.normalize, config.augment.noise_std) == ("convnet13", "zca", 0.15)
        summary = self.fit(config, tmp_path / "run", show_progress=False)
        split = RunDir(tmp_path / "run").read_split()
        assert split["zca_matrix"].shape == (768, 768)
        losses = [m for m in RunDir(tmp_path / "run").read_metrics() if "loss" in m]
        assert losses and all(np.isfinite(m["loss"]) for m in losses)
        assert 0.0 <= summary["final_test_accuracy"] <= 1.0

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
            logits = load_classifier(self.backend, run, config)[0](np.zeros((2, 16, 16, 3), np.uint8))
            assert np.isfinite(logits).all()


    def test_bf16_training_stays_finite_and_moves_the_loss(self, tmp_path):
        """train.precision=bf16 (docs/DESIGN.md section 8) on tiny digits: a finite, falling loss, and
        float32 weights in the run's model.npz (what evaluation used)."""
        self.fit(tiny("train.precision=bf16", "train.steps=8", "train.log_every=1", "train.eval_every=8",
                      "train.checkpoint_every=8"), tmp_path / "run", show_progress=False)
        run = RunDir(tmp_path / "run")
        losses = [m["loss"] for m in run.read_metrics() if "loss" in m]
        assert len(losses) == 8 and np.isfinite(losses).all()
        assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses  # one step's loss alone is noisy (its own batch)
        state_dict, _ = run_weights.read(run_weights.final_file(run))
        assert {v.dtype for v in state_dict.values() if v.dtype.kind == "f"} == {np.dtype(np.float32)}

    def test_fixmatch_trains_from_the_shipped_config_on_digits(self, tmp_path):
        """`cli train --config docs/fixmatch.json` with the paper's settings, shrunk to 4 steps on digits."""
        run_training(self.cli_module, tmp_path / "run", "--config", str(FIXMATCH_CONFIG),
                     "data.dataset=digits", "data.image_size=32", "data.n_labels=100", "model.backbone=resnet20",
                     "train.steps=4", "train.batch_labeled=8", "train.batch_unlabeled=8", "train.log_every=2",
                     "train.eval_every=4", "train.checkpoint_every=4", "train.eval_batch_size=256",
                     tiny=False, timeout=600)
        run = RunDir(tmp_path / "run")
        config = run.read_config()
        assert (config.method.name, config.optim.schedule, config.train.ema_decay) == ("fixmatch", "fixmatch_cosine", 0.999)
        losses = [m for m in run.read_metrics() if "loss" in m]
        assert [m["step"] for m in losses] == [2, 4]
        for m in losses:  # lambda_u = 1
            assert m["loss"] == pytest.approx(m["loss_sup"] + m["loss_unlabeled"], rel=1e-5)
            assert 0.0 <= m["mask_rate"] <= 1.0 and 0.0 <= m["pseudo_label_accuracy"] <= 1.0

    def test_sigkill_then_resume_is_exact(self, tmp_path):
        run_uninterrupted(self.cli_module, tmp_path / "straight")
        run_killed_then_resumed(self.cli_module, tmp_path / "killed", kill_after_step=12)
        assert comparable_metrics(tmp_path / "killed") == comparable_metrics(tmp_path / "straight")
        # TensorBoard continues the curves: the steps the killed run logged after its checkpoint
        # (8) are purged, none is missing or twice
        assert len(list((tmp_path / "killed").glob("events.out.tfevents.*"))) == 2
        assert event_scalars(tmp_path / "killed") == jsonl_scalars(tmp_path / "killed")
        images = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
        config = RunDir(tmp_path / "straight").read_config()
        straight = load_classifier(self.backend, RunDir(tmp_path / "straight"), config)[0](images)
        killed = load_classifier(self.backend, RunDir(tmp_path / "killed"), config)[0](images)
        np.testing.assert_array_equal(killed, straight)


@pytest.mark.slow
class MethodLoopContract:
    """Every method through the framework's loop: its own class (and file, tests/*/test_loop_methods.py)
    so that `pytest -n 2 --dist loadfile` runs it beside the rest of the loop contract."""

    fit = None  # as in LoopContract
    backend = None
    checkpoints = None
    cli_module = ""

    @pytest.mark.parametrize("method", METHODS)
    def test_every_method_writes_its_run_and_stops_on_nan(self, tmp_path, method):
        overrides, terms = METHODS[method]
        summary = self.fit(tiny("train.steps=8", "train.eval_every=8", "train.checkpoint_every=8", *overrides),
                           tmp_path / "run", show_progress=False)
        losses = [m for m in RunDir(tmp_path / "run").read_metrics() if "loss" in m]
        assert [m["step"] for m in losses] == [4, 8] and set(losses[-1]) >= terms
        assert summary["method"] == method and 0.0 <= summary["final_test_accuracy"] <= 1.0
        # The run's model.npz is what evaluation used: with train.eval_ema, the EMA variables of the checkpoint.
        run = RunDir(tmp_path / "run")
        state_dict, metadata = run_weights.read(run_weights.final_file(run))
        assert (metadata["framework"], metadata["step"], metadata["method"]) == (self.backend.name, 8, method)
        assert metadata["variables"] == ("ema" if "train.eval_ema=true" in overrides else "model")
        from_checkpoint, _ = self.backend.checkpoint_state_dict(run, run.read_config(), 10, None)
        assert state_dict.keys() == from_checkpoint.keys()
        for key, value in state_dict.items():
            np.testing.assert_array_equal(value, from_checkpoint[key], err_msg=key)
        with pytest.raises(NonFiniteLossError, match=r"loss became (nan|inf) at step \d+"):
            self.fit(tiny("optim.lr=1e30", "optim.schedule=constant", "train.view_images=0", *overrides),
                     tmp_path / "nan",
                     show_progress=False)

    # mean_teacher: the EMA teacher, saved and resumed exactly (and evaluated with: eval_ema);
    # softmatch: a method's state (its running mean and variance decide the logged mask_rate)
    # is checkpointed and resumed exactly. mean_teacher runs with train.ema_warmup, whose decay
    # depends on the step count: the resumed run must go on counting (JAX: the state's step;
    # PyTorch: AveragedModel's n_averaged, saved with the EMA). pi_model is not run here: its views
    # (pi_model.apply_views) and its ramped consistency loss (consistency_loss) are the very functions
    # mean_teacher calls, and a method without a teacher or state resumes as SESEMI does
    # (test_sigkill_then_resume_is_exact).
    @pytest.mark.parametrize("method", ["mean_teacher", "softmatch"])
    def test_every_method_resumes_exactly(self, tmp_path, method):
        overrides = (*METHODS[method][0], *(("train.ema_warmup=true",) if method == "mean_teacher" else ()))
        run_uninterrupted(self.cli_module, tmp_path / "straight", overrides=overrides)
        run_killed_then_resumed(self.cli_module, tmp_path / "killed", kill_after_step=12, overrides=overrides)
        assert comparable_metrics(tmp_path / "killed") == comparable_metrics(tmp_path / "straight")
        images = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
        config = RunDir(tmp_path / "straight").read_config()
        straight = load_classifier(self.backend, RunDir(tmp_path / "straight"), config)[0](images)
        killed = load_classifier(self.backend, RunDir(tmp_path / "killed"), config)[0](images)
        np.testing.assert_array_equal(killed, straight)  # with eval_ema: the EMA was saved and resumed exactly
