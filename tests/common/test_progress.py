import json

import pytest

from sesemi_common.config import TrainConfig
from sesemi_common.config import Config, apply_overrides
from sesemi_common.methods import images_per_step
from sesemi_common.progress import (Due, NonFiniteLossError, TrainingLog, cadence, first_non_finite, summary,
                                    training_seconds)
from sesemi_common.runs import RunDir
from tests.fake_loop import fake_fit


def test_images_per_step_counts_every_view():
    assert images_per_step(Config()) == 192
    assert images_per_step(apply_overrides(Config(), ["method.name=rotation", "train.batch_labeled=64"])) == 128
    assert images_per_step(apply_overrides(Config(), ["method.name=supervised"])) == 96  # no unlabeled batch
    assert images_per_step(apply_overrides(Config(), ["method.name=pi_model"])) == 96 + 16 * 2


def test_first_non_finite():
    assert first_non_finite([0, 1, 2], [1.0, 2.0, 3.0]) is None
    assert first_non_finite([4, 5, 6], [1.0, float("nan"), float("inf")]) == 5


def _drive(tmp_path, losses, steps=6, log_every=2, checkpoint_every=3):
    run = RunDir(tmp_path / "run")
    log = TrainingLog(run, steps, 0, images_per_step=10, steps_per_epoch=2.0, show_progress=False)
    saved = []
    train = TrainConfig(steps=steps, log_every=log_every, eval_every=3, checkpoint_every=checkpoint_every)
    result = fake_fit(log, train, range(steps), lambda s: {"loss": losses[s]}, save=saved.append)
    return run, saved, result


def test_cadence_says_which_steps_log_evaluate_draw_and_save():
    train = TrainConfig(steps=10, log_every=2, eval_every=5, checkpoint_every=3)
    due = {done: cadence(done, train) for done in range(1, 11)}
    assert [d for d in due if due[d].log] == [2, 3, 4, 6, 8, 9, 10]  # every 2, before every save, at the end
    assert [d for d in due if due[d].evaluate] == [5, 10]
    assert [d for d in due if due[d].pictures] == [5, 10]  # with every evaluation
    assert [d for d in due if due[d].save] == [3, 6, 9, 10]  # and at the end
    assert due[7] == Due(log=False, evaluate=False, pictures=False, save=False)
    quiet = TrainConfig(steps=10, log_every=2, eval_every=5, checkpoint_every=3, view_images=0)
    assert cadence(10, quiet) == Due(log=True, evaluate=True, pictures=False, save=True)


def test_the_loop_logs_and_saves_at_the_cadence(tmp_path):
    run, saved, (record, accuracy) = _drive(tmp_path, [1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
    assert saved == [3, 6]
    assert accuracy == 0.5
    metrics = run.read_metrics()
    logged = [m["step"] for m in metrics if "loss" in m]
    assert logged == [2, 3, 4, 6]  # every log_every, and before every checkpoint
    assert record["loss"] == 0.5 and record["epoch"] == 3.0
    assert [m["test_accuracy"] for m in metrics if "test_accuracy" in m] == [0.5, 0.5]


def test_nan_stops_before_the_checkpoint_and_names_the_step(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 5: lower optim.lr .*last good checkpoint is step 3"):
        _drive(tmp_path, [1.0, 0.9, 0.8, 0.7, float("nan"), float("nan")])
    saved_steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert max(saved_steps) == 4


# A run stopped after step 4 and resumed from its checkpoint at step 2 logs steps 3-4 again.
RESUMED_METRICS = [{"step": 2, "images_per_s": 10.0}, {"step": 4, "images_per_s": 20.0},
                   {"step": 4, "test_accuracy": 0.5}, {"step": 4, "images_per_s": 40.0},
                   {"step": 6, "images_per_s": 5.0}]


def test_training_seconds_cover_every_call_and_count_a_rerun_window_once():
    # 5 images per step: windows 0-2 at 10/s (1 s), 2-4 at the rerun's 40/s (0.25 s), 4-6 at 5/s (2 s)
    assert training_seconds(RESUMED_METRICS, 5) == pytest.approx(3.25)
    assert training_seconds([{"step": 4, "test_accuracy": 0.5}], 5) == 0.0


def test_the_summary_of_a_resumed_run_holds_the_training_time_of_every_call(tmp_path):
    """wall_time_s is the last call's; training_s is read from the run's metrics, all calls."""
    config = apply_overrides(Config(), ["train.batch_labeled=4", "train.batch_unlabeled=1", "train.steps=6"])
    run = RunDir(tmp_path / "run")
    for record in RESUMED_METRICS:
        run.append_metrics(record)
    images = images_per_step(config)  # 4 labeled + 1 x 6 proxy views
    result = summary("jax", "sesemi", config, 10, ["a", "b"], {"loss": 1.0}, 0.5, 0.7, "cpu", run)
    assert images == 10
    assert result["wall_time_s"] == 0.7
    assert result["training_s"] == pytest.approx(2 * 10 / 10 + 2 * 10 / 40 + 2 * 10 / 5)
