import json
import os
import stat

import numpy as np
import pytest

from sesemi_common.config import Config, apply_overrides
from sesemi_common.runs import RunDir, RunDirError


def test_reading_never_creates_the_folder_writing_does(tmp_path):
    run = RunDir(tmp_path / "a" / "run")
    assert not run.has_run() and run.state() == "empty" and run.checkpoint_steps() == []
    assert run.read_metrics() == [] and run.read_summary() == {}
    with pytest.raises(RunDirError, match="config.json does not exist"):
        run.read_config()
    assert not (tmp_path / "a").exists()
    assert run.checkpoints == tmp_path / "a" / "run" / "checkpoints" and not run.checkpoints.exists()
    run.write_config(Config())
    assert run.path.is_dir() and run.has_run()


def test_config_round_trip(tmp_path):
    config = apply_overrides(Config(), ["optim.lr=0.125", "data.dataset=cifar10", "train.steps=321",
                                        "model.joint_forward=true", "method.name=rotation"])
    run = RunDir(tmp_path)
    run.write_config(config)
    assert run.has_run()
    again = run.read_config()
    assert again == config and again.optim.lr == 0.125 and again.model.joint_forward is True
    assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 321


def test_split_round_trip_with_extras(tmp_path):
    run = RunDir(tmp_path)
    mean, std = np.array([0.49, 0.48, 0.45], np.float32), np.array([0.25, 0.24, 0.26], np.float32)
    run.write_split([7, 3, 11], mean=mean, std=std)
    split = run.read_split()
    assert sorted(split) == ["labeled", "mean", "std"]
    assert split["labeled"].dtype == np.int64 and split["labeled"].tolist() == [7, 3, 11]
    assert split["mean"].dtype == np.float32
    np.testing.assert_array_equal(split["mean"], mean)
    np.testing.assert_array_equal(split["std"], std)


def test_missing_split_names_the_file(tmp_path):
    with pytest.raises(RunDirError, match=f"{tmp_path}/split.npz does not exist: is {tmp_path} a run directory"):
        RunDir(tmp_path).read_split()


def test_metrics_with_numpy_scalars(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_metrics() == []
    run.append_metrics({"step": np.int64(50), "lr": np.float32(0.05), "loss": np.float64(1.25),
                        "per_class": np.array([1, 2])})
    # readable while the run goes on: each line is flushed when written
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 1
    run.append_metrics({"step": 100, "test_accuracy": 0.5})
    records = run.read_metrics()
    assert records == [{"step": 50, "lr": float(np.float32(0.05)), "loss": 1.25, "per_class": [1, 2]},
                       {"step": 100, "test_accuracy": 0.5}]
    assert type(records[0]["step"]) is int


def test_a_torn_last_line_is_skipped_a_bad_middle_line_is_an_error(tmp_path):
    run = RunDir(tmp_path)
    run.append_metrics({"step": 1, "loss": 2.0})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "lo')
    assert run.read_metrics() == [{"step": 1, "loss": 2.0}]
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match=f"{tmp_path}/metrics.jsonl line 2 is not JSON"):
        run.read_metrics()


def test_truncate_metrics_keeps_records_up_to_the_step(tmp_path):
    run = RunDir(tmp_path)
    for step in (10, 20, 20, 30):
        run.append_metrics({"step": step, "loss": step / 10})
    run.truncate_metrics(20)
    assert [r["step"] for r in run.read_metrics()] == [10, 20, 20]
    run.append_metrics({"step": 30, "loss": 9.0})
    assert run.read_metrics()[-1] == {"step": 30, "loss": 9.0}


def test_summary_round_trip_and_atomic_overwrite(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_summary() == {}
    run.write_summary({"final_test_accuracy": np.float32(0.75), "class_names": ["a", "b"], "steps": np.int64(5)})
    run.write_summary({"final_test_accuracy": 0.8125, "class_names": ["a", "b"], "steps": 6})
    assert run.read_summary() == {"final_test_accuracy": 0.8125, "class_names": ["a", "b"], "steps": 6}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temporary files left


def test_the_life_of_a_run_directory(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_config(Config())
    run.write_split([1, 2])
    run.append_metrics({"step": 4, "loss": 1.0})
    assert run.state() == "unfinished"
    (run.checkpoints / ".8.orbax-checkpoint-tmp-123").mkdir(parents=True)  # a save cut short
    (run.checkpoints / ".step_8.pt.tmp").write_bytes(b"half")
    assert run.state() == "unfinished" and run.checkpoint_steps() == []
    (run.checkpoints / "8").mkdir()  # orbax
    (run.checkpoints / "step_16.pt").write_bytes(b"x")  # torch
    assert run.state() == "stopped" and run.checkpoint_steps() == [8, 16]
    run.write_summary({"final_test_accuracy": 0.5})
    assert run.state() == "finished"


def test_clear_removes_only_what_a_run_writes(tmp_path):
    run = RunDir(tmp_path)
    run.write_config(Config())
    run.write_split([1])
    run.append_metrics({"step": 1})
    run.write_summary({})
    (run.checkpoints / "8").mkdir(parents=True)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "step_8.npz").write_bytes(b"")
    (tmp_path / "model.npz").write_bytes(b"")
    run.write_verification({"passed": True})
    (tmp_path / "notes.txt").write_text("mine")
    run.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"] and run.state() == "empty"


def test_a_file_is_not_a_run_directory(tmp_path):
    (tmp_path / "f").write_text("x")
    run = RunDir(tmp_path / "f")
    with pytest.raises(RunDirError, match=f"--run-dir {tmp_path / 'f'} is a file, not a folder"):
        run.check_folder()
    with pytest.raises(RunDirError, match="is a file, not a folder"):
        run.write_config(Config())
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_respect_the_umask_like_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        run = RunDir(tmp_path / "run")
        run.write_config(Config())
        run.write_split([1, 2])
        run.write_summary({"steps": 1})
        run.append_metrics({"step": 1})
        run.truncate_metrics(1)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "run").iterdir()}
    assert modes == dict.fromkeys(["config.json", "split.npz", "summary.json", "metrics.jsonl"], 0o666 & ~umask)
