"""The framework-free half of multi-process training: which chunk of a batch a process takes,
and that only process 0 writes (the processes themselves: tests/torch/test_distributed.py)."""

import numpy as np
import pytest

from sesemi_common.config import Config, ConfigError, apply_overrides
from sesemi_common.datasets import load_digits
from sesemi_common.distributed import Process, local_slice
from sesemi_common.experiment import prepare
from sesemi_common.progress import TrainingLog
from sesemi_common.runs import RunDir

TINY = ["data.image_size=16", "data.n_labels=20", "train.steps=8", "train.batch_labeled=8", "train.batch_unlabeled=2"]


def test_each_process_takes_its_contiguous_chunk():
    assert [local_slice(12, Process(i, 3)) for i in range(3)] == [slice(0, 4), slice(4, 8), slice(8, 12)]
    assert local_slice(0, Process(1, 2)) == slice(0, 0)  # the supervised baseline's empty unlabeled batch
    assert local_slice(7, Process()) == slice(0, 7)
    assert Process().writer and Process(0, 4).writer and not Process(3, 4).writer
    with pytest.raises(ConfigError, match=r"^train.batch_labeled \(10\) must be divisible by the 4 processes"):
        local_slice(10, Process(0, 4), "train.batch_labeled")


def test_a_process_other_than_0_prepares_the_same_run_and_writes_nothing(tmp_path):
    config, digits = apply_overrides(Config(), TINY), load_digits(16)
    other = prepare(config, tmp_path / "run", dataset=digits, process=Process(1, 2))
    assert not (tmp_path / "run").exists()
    writer = prepare(config, tmp_path / "run", dataset=digits, process=Process(0, 2))
    assert RunDir(tmp_path / "run").state() == "unfinished"
    np.testing.assert_array_equal(other.labeled, writer.labeled)
    np.testing.assert_array_equal(other.mean, writer.mean)
    (tmp_path / "run" / "checkpoints" / "4").mkdir(parents=True)  # a stopped run, resumed by both
    resumed = prepare(apply_overrides(config, ["optim.lr=0.01"]), tmp_path / "run", resume=True, dataset=digits,
                      process=Process(1, 2))
    np.testing.assert_array_equal(resumed.labeled, writer.labeled)
    assert RunDir(tmp_path / "run").read_config().optim.lr == config.optim.lr  # process 0 records changes


def test_a_training_log_other_than_process_0s_records_nothing(tmp_path):
    run = RunDir(tmp_path / "run")
    log = TrainingLog(run, 4, 0, images_per_step=10, steps_per_epoch=2.0, writer=False)
    record = log.log_steps([0, 1], [{"loss": 1.0}, {"loss": 0.5}])
    log.log_eval(2, None)
    log.close()
    assert record["step"] == 2 and record["loss"] == 0.5
    assert log.bar.disable and not (tmp_path / "run").exists()
