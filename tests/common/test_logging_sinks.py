"""The sinks beside metrics.jsonl (TensorBoard, W&B) and the picture of the views, without training."""

import json
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from sesemi_common import logging_sinks
from sesemi_common.config import Config, ConfigError, apply_overrides
from sesemi_common.progress import TrainingLog
from sesemi_common.runs import RunDir
from sesemi_common.view_grid import picture_spec, view_grid, view_rows
from tests.fake_loop import fake_fit
from tests.kill_resume import event_accumulator, event_scalars, jsonl_scalars


def _log(run: RunDir, config: Config, start_step: int) -> TrainingLog:
    return TrainingLog(run, config.train.steps, start_step, images_per_step=10, steps_per_epoch=2.0,
                       show_progress=False, config=config)


def _train(log: TrainingLog, config: Config, start: int, stop: int, pictures=None) -> None:
    """Steps start..stop-1 whose loss is 1/(step+1) and accuracy step/10."""
    fake_fit(log, config.train, range(start, stop), lambda s: {"loss": 1.0 / (s + 1), "lr": 0.1}, pictures=pictures)
    log.close()


def _config(*overrides) -> Config:
    return apply_overrides(Config(), ["train.steps=12", "train.log_every=2", "train.eval_every=6",
                                      "train.checkpoint_every=4", *overrides])


def test_event_files_hold_the_scalars_of_metrics_jsonl_across_a_resume(tmp_path):
    run, config = RunDir(tmp_path / "run"), _config()
    _train(_log(run, config, 0), config, 0, 10)  # killed after logging step 10; its checkpoint is step 8
    run.truncate_metrics(8)  # what --resume does to metrics.jsonl
    _train(_log(run, config, 8), config, 8, 12)
    assert [r["step"] for r in run.read_metrics() if "loss" in r] == [2, 4, 6, 8, 10, 12]
    tags = event_scalars(run.path)
    assert tags == jsonl_scalars(run.path)
    assert [step for step, _ in tags["loss"]] == [2, 4, 6, 8, 10, 12]  # 10 once: the killed run's was purged
    assert tags["test_accuracy"] == [(6, 0.5), (12, 0.5)]
    assert tags["loss"][0] == (2, pytest.approx(1 / 2))


def test_views_are_a_png_and_a_tensorboard_image_at_step_0_and_each_evaluation(tmp_path):
    run, config = RunDir(tmp_path / "run"), _config()
    rows = {"labeled": np.zeros((2, 8, 8, 3), np.uint8), "weak": np.full((2, 8, 8, 3), 200, np.uint8)}
    asked = []
    _train(_log(run, config, 0), config, 0, 12, pictures=lambda step: asked.append(step) or rows)
    assert asked == [0, 6, 12]
    assert sorted(p.name for p in run.views.iterdir()) == ["step_000000.png", "step_000006.png", "step_000012.png"]
    images = event_accumulator(run.path).Images("views")
    assert [image.step for image in images] == [0, 6, 12]
    assert images[0].encoded_image_string == (run.views / "step_000000.png").read_bytes()


def test_no_sink_and_no_picture_where_switched_off(tmp_path):
    run, config = RunDir(tmp_path / "run"), _config("train.tensorboard=false", "train.view_images=0")
    _train(_log(run, config, 0), config, 0, 4, pictures=lambda step: pytest.fail("pictured"))
    assert not logging_sinks.event_files(run.path) and not run.views.exists()
    assert len(run.read_metrics()) == 2


def test_a_missing_tensorboard_is_one_note_and_metrics_jsonl_still_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(logging_sinks, "tensorboard_available", lambda: False)
    run, config = RunDir(tmp_path / "run"), _config()
    _train(_log(run, config, 0), config, 0, 4)
    note = capsys.readouterr().err.strip().splitlines()
    assert len(note) == 1 and "pip install 'sesemi[tensorboard]'" in note[0]
    assert not logging_sinks.event_files(run.path) and len(run.read_metrics()) == 2


def test_only_the_writer_process_opens_sinks(tmp_path):
    run, config = RunDir(tmp_path / "run"), _config()
    log = TrainingLog(run, 12, 0, 10, 2.0, show_progress=False, writer=False, config=config)
    assert log.sinks == []
    log.log_views(0, lambda step: {"labeled": np.zeros((1, 4, 4, 3), np.uint8)})
    assert not run.path.exists()


def test_scalar_values_are_the_numbers_of_a_record_but_its_step():
    record = {"step": 4, "epoch": 2.0, "loss": np.float32(0.5), "flag": True, "name": "x", "per_class": [1, 2]}
    assert logging_sinks.scalar_values(record) == {"epoch": 2.0, "loss": 0.5}


def test_wandb_without_the_package_is_a_one_line_config_error(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'sesemi\[wandb\]'"):
        apply_overrides(Config(), ["train.wandb=myproject"])


def test_clear_removes_the_event_files_views_and_wandb_files(tmp_path):
    run, config = RunDir(tmp_path / "run"), _config()
    _train(_log(run, config, 0), config, 0, 4, pictures=lambda step: {"labeled": np.zeros((1, 4, 4, 3), np.uint8)})
    (run.path / "wandb").mkdir()
    (run.path / logging_sinks.WANDB_ID_FILE).write_text("abc\n")
    (run.path / "mine.txt").write_text("kept")
    run.clear()
    assert sorted(p.name for p in run.path.iterdir()) == ["mine.txt"]


def test_view_rows_split_each_view_image_major_and_follow_the_branches():
    config = apply_overrides(Config(), ["method.name=fixmatch"])
    unlabeled = np.arange(2)[:, None, None, None] * np.ones((2, 4, 4, 3), np.uint8)
    rows = view_rows(config, unlabeled, unlabeled, {"strong": unlabeled + 2, "weak": unlabeled + 1})
    assert list(rows) == ["labeled", "unlabeled", "weak", "strong"]  # the branches' order, not the dict's
    proxy = np.repeat(unlabeled, 6, axis=0) + np.tile(np.arange(6), 2)[:, None, None, None].astype(np.uint8)
    rows = view_rows(apply_overrides(Config(), ["method.name=sesemi"]), unlabeled, unlabeled, {"proxy": proxy})
    assert list(rows)[2:] == [f"proxy {k}" for k in range(6)]
    assert [int(rows["proxy 3"][i, 0, 0, 0]) for i in range(2)] == [3, 4]  # image 0's view 3, image 1's view 3


def test_view_grid_lays_rows_out_enlarged_and_takes_gray_and_float_images():
    gray = np.full((3, 16, 16, 1), 10, np.uint8)
    grid = view_grid({"labeled": gray, "strong": np.full((3, 16, 16, 3), 99.6, np.float32)})
    assert grid.dtype == np.uint8 and grid.shape == (2 * (64 + 2) + 2, 96 + 3 * (64 + 2) + 2, 3)
    assert (grid[2:66, 98:162] == 10).all()  # first tile, 16 px enlarged 4x
    assert (grid[68:132, 98:162] == 100).all()  # float rounded
    assert (grid[2:66, :90] < 255).any()  # the row's name is drawn left of it


def test_picture_spec_is_a_function_of_seed_and_step():
    config = apply_overrides(Config(), ["method.name=fixmatch", "train.view_images=3"])
    a, b = (picture_spec(config, np.arange(10), 50, 7) for _ in range(2))
    assert len(a.labeled) == len(a.unlabeled) == 3 and set(a.views) == set(b.views)
    for name in a.views:
        np.testing.assert_array_equal(a.views[name], b.views[name])
    assert not np.array_equal(picture_spec(config, np.arange(10), 50, 8).unlabeled, a.unlabeled)


def _wandb_history(run_file) -> list[dict]:
    """The history rows of an offline run's .wandb file: a LevelDB-style log of 32 KiB blocks,
    each record a 7-byte header (crc, little-endian length, kind: 1 full, 2 first, 3 middle,
    4 last) and a serialized wandb Record (wandb ships no reader of its own any more)."""
    from wandb.proto import wandb_internal_pb2
    data, rows, pending, pos = run_file.read_bytes(), [], b"", 7  # past the ':W&B' file header
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or (length == 0 and kind == 0):  # block padding
            pos += left
            continue
        pending, pos = pending + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                row = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                       for item in record.history.item}
                rows.append({"_step": record.history.step.num, **row})
    return rows


@pytest.mark.slow
def test_wandb_offline_run_holds_the_metrics_and_resumes_into_the_same_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    (tmp_path / "wandb_dir").mkdir()
    run, config = RunDir(tmp_path / "run"), _config("train.wandb=sesemi-test", "train.tensorboard=false")
    run.write_config(config)
    _train(_log(run, config, 0), config, 0, 10)
    run.truncate_metrics(8)
    time.sleep(1.1)  # wandb names an offline run's folder by the second it starts; a resume is never that quick
    _train(_log(run, config, 8), config, 8, 12)
    run_id = (run.path / logging_sinks.WANDB_ID_FILE).read_text().strip()
    offline = sorted((tmp_path / "wandb_dir" / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(p.name.endswith(f"-{run_id}") for p in offline), offline  # one W&B run, resumed
    logged: dict[int, dict] = {}
    for path in offline:
        for row in _wandb_history(next(path.glob("*.wandb"))):
            logged.setdefault(row["_step"], {}).update(row)
    for record in run.read_metrics():
        for tag, value in logging_sinks.scalar_values(record).items():
            assert logged[record["step"]][tag] == pytest.approx(value), (record["step"], tag)


@pytest.mark.slow
def test_the_jax_trainer_and_the_sinks_import_neither_torch_nor_tensorflow(tmp_path):
    code = ("import sys, numpy as np; import sesemi_jax.loop; from sesemi_common import logging_sinks as s; "
            f"w = s.TensorBoardSink(__import__('pathlib').Path({str(tmp_path)!r}), 0); "
            "w.scalars(1, {'loss': 1.0}); w.image('views', 1, np.zeros((4, 4, 3), np.uint8)); w.close(); "
            "print(sorted(m for m in ('torch', 'tensorflow', 'tensorboardX') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]"
    assert len(logging_sinks.event_files(tmp_path)) == 1
