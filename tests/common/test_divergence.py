"""What a diverged run says and keeps (issue 30.4): the checkpoint that really is good, the knob to blame."""

import pytest

from sesemi_common.config import Config, TrainConfig, apply_overrides
from sesemi_common.progress import NonFiniteLossError, NonFiniteWeightsError, TrainingLog
from sesemi_common.runs import RunDir
from tests.fake_loop import fake_fit

NAN = float("nan")


def _drive(tmp_path, losses, *overrides, finite_until=None):
    """6 steps, a (fake, torch-named) checkpoint and weights file every 2; the weights of a save
    after `finite_until` steps are not finite."""
    run = RunDir(tmp_path / "run")
    run.write_config(apply_overrides(Config(), list(overrides)))
    log = TrainingLog(run, 6, 0, images_per_step=10, steps_per_epoch=2.0, show_progress=False)

    def save(done):
        if finite_until is not None and done > finite_until:
            raise NonFiniteWeightsError(done)
        run.checkpoints.mkdir(exist_ok=True)
        (run.checkpoints / f"step_{done}.pt").write_bytes(b"x")
        (run.path / "weights").mkdir(exist_ok=True)
        (run.path / "weights" / f"step_{done}.npz").write_bytes(b"x")

    with pytest.raises(NonFiniteLossError) as err:
        fake_fit(log, TrainConfig(steps=6, log_every=1, eval_every=6, checkpoint_every=2), range(6),
                 lambda s: {"loss": losses[s]}, save=save)
    return run, str(err.value)


def test_the_checkpoint_whose_weights_gave_the_nan_is_removed_and_the_one_before_named(tmp_path):
    # Step 5 runs with the weights of checkpoint 4 (saved after steps 1-4 had finite losses): they are
    # finite but useless, and a --resume from them would stop again whatever the lr.
    run, message = _drive(tmp_path, [1.0, 0.9, 0.8, 0.7, NAN, NAN])
    assert message == (f"loss became nan at step 5 (checkpoint 4, whose weights gave it, is removed): lower optim.lr "
                       f"or check the data; the last good checkpoint is step 2: continue from it with a lower lr, "
                       f"`train --run-dir {run.path} --resume optim.lr=<lower>`")
    assert run.checkpoint_steps() == [2] and sorted(p.name for p in (run.path / "weights").iterdir()) == ["step_2.npz"]


def test_a_nan_between_checkpoints_keeps_them_all(tmp_path):
    run, message = _drive(tmp_path, [1.0, 0.9, 0.8, 0.7, 0.6, NAN])
    assert message.startswith("loss became nan at step 6: lower optim.lr") and "last good checkpoint is step 4" in message
    assert run.checkpoint_steps() == [2, 4]


def test_weights_that_are_not_finite_are_never_saved(tmp_path):
    run, message = _drive(tmp_path, [1.0] * 6, finite_until=3)
    assert message.startswith("the weights became non-finite at step 4: lower optim.lr or check the data; the last "
                              "good checkpoint is step 2")
    assert run.checkpoint_steps() == [2]


def test_none_is_good_says_so(tmp_path):
    run, message = _drive(tmp_path, [1.0, 0.9, NAN, NAN, NAN, NAN])
    assert message == ("loss became nan at step 3 (checkpoint 2, whose weights gave it, is removed): lower optim.lr or "
                       "check the data; no good checkpoint was written before it, so train again with the fix (the "
                       "unfinished start in the run directory is replaced)")
    assert run.checkpoint_steps() == [] and run.state() == "unfinished"


def test_a_huge_weight_decay_is_blamed_not_the_learning_rate(tmp_path):
    _, message = _drive(tmp_path, [1.0, 1e8, 1e30, NAN, NAN, NAN], "optim.weight_decay=1e9")
    assert message == ("loss became nan at step 4: optim.weight_decay=1e+09 with optim.lr=0.05 scales the weights by "
                       "1 - 5e+07 every step, so they grow without bound: start the run again (--overwrite) with "
                       "optim.weight_decay below 20")
    _, message = _drive(tmp_path / "lr", [1.0, NAN, NAN, NAN, NAN, NAN], "optim.lr=1e30")
    assert "lower optim.lr" in message and "weight_decay" not in message
