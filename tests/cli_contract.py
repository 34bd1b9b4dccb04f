"""Bad input at the command line of either framework: exit code 2 and one line that says what to fix."""

import json
import shutil
import stat

import numpy as np
import pytest
from PIL import Image

from sesemi_common import run_weights
from sesemi_common.runs import RunDir

TINY = ["data.image_size=16", "data.n_labels=20", "model.backbone=resnet8", "train.steps=2", "train.batch_labeled=8", "train.batch_unlabeled=2"]


# A run long enough to stop between checkpoints: a checkpoint every 2 of its 6 steps.
RUN = [*TINY, "train.steps=6", "train.log_every=1", "train.checkpoint_every=2", "train.eval_every=6",
       "train.eval_batch_size=128", "optim.schedule=constant"]


def _interrupt_at(monkeypatch, step):
    """Ctrl-C when the record of `step` is written, as a user would press it mid-run."""
    append = RunDir.append_metrics

    def append_or_interrupt(self, record):
        if record.get("step") == step and "loss" in record:
            raise KeyboardInterrupt
        append(self, record)
    monkeypatch.setattr(RunDir, "append_metrics", append_or_interrupt)


def _imagefolder(root, per_class=20):
    """3 classes of `per_class` 16x16 training PNGs and 2 test PNGs each; returns the train files."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", 2)):
        for name in ("ant", "bee", "cat"):
            (root / split / name).mkdir(parents=True)
            for k in range(count):
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / split / name / f"{k:02d}.png")
    return sorted((root / "train").rglob("*.png"))


class CliLifeContract:
    """The life of a run directory through the CLI (issue 18), for either framework."""

    main = None
    framework = ""  # jax | torch

    def invoke(self, capsys, *argv):
        code = self.main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err.strip()

    def train(self, capsys, run_dir, *argv):
        return self.invoke(capsys, "train", *argv, "--run-dir", str(run_dir), "--no-progress")

    def stopped_run(self, capsys, monkeypatch, run_dir, *overrides, at=5):
        """A run stopped by Ctrl-C at step `at` (checkpoints at the even steps before it)."""
        with monkeypatch.context() as patch:
            _interrupt_at(patch, at)
            code, _, err = self.train(capsys, run_dir, *RUN, *overrides)
        assert code == 130, err
        return err

    @pytest.mark.slow
    def test_1_resume_of_a_finished_run_leaves_its_result(self, capsys, tmp_path):
        assert self.train(capsys, tmp_path / "r", *RUN)[0] == 0
        files = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()}
        assert json.loads(files["summary.json"])["final_test_accuracy"] is not None
        code, out, err = self.train(capsys, tmp_path / "r", "--resume")
        assert code == 0 and err == f"note: {tmp_path / 'r'} is finished: nothing to resume, its summary.json is " \
                                    "left as it was"
        assert json.loads(out) == json.loads(files["summary.json"])
        assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()} == files
        # case 8: every file of the run is as readable as metrics.jsonl (the umask decides, not mkstemp)
        modes = {name: stat.S_IMODE((tmp_path / "r" / name).stat().st_mode) for name in files}
        assert set(modes.values()) == {modes["metrics.jsonl"]} and modes["config.json"] & 0o044 == 0o044

    @pytest.mark.slow
    def test_2_resume_refuses_data_that_changed(self, capsys, monkeypatch, tmp_path):
        monkeypatch.setenv("SESEMI_CACHE_DIR", str(tmp_path / "cache"))
        files = _imagefolder(tmp_path / "data")
        data = ["data.dataset=imagefolder", f"data.root={tmp_path / 'data'}", "data.n_labels=30"]
        self.stopped_run(capsys, monkeypatch, tmp_path / "r", *data, at=3)
        kept = {path: path.read_bytes() for path in files[-15:]}
        for path in kept:
            path.unlink()
        code, _, err = self.train(capsys, tmp_path / "r", "--resume")
        assert code == 2 and err == (f"error: the training data changed since {tmp_path / 'r'} started: it has 45 "
                                     "images, the run started with 60; put back the data the run started with, or "
                                     "start a new run (--overwrite or another --run-dir)")
        for path, content in kept.items():
            path.write_bytes(content)
        moved = tmp_path / "data" / "train" / "bee" / "99.png"
        moved.write_bytes(files[0].read_bytes())  # one image of ant out, one of bee in: the same count
        files[0].unlink()
        code, _, err = self.train(capsys, tmp_path / "r", "--resume")
        assert code == 2 and err.startswith(f"error: the training labels changed since {tmp_path / 'r'} started "
                                            "(same 60 images") and len(err.splitlines()) == 1
        assert RunDir(tmp_path / "r").read_summary() == {}

    @pytest.mark.slow
    def test_3_a_failed_start_never_traps_the_run_directory(self, capsys, monkeypatch, tmp_path):
        code, _, err = self.train(capsys, tmp_path / "r", *RUN, "train.batch_labeled=200")
        assert code == 2 and "train.batch_labeled (200) is larger than the labeled set" in err
        assert not (tmp_path / "r").exists()  # refused before anything was written
        code, _, err = self.train(capsys, tmp_path / "r", *RUN, f"model.weights={tmp_path / 'missing.npz'}")
        assert code == 2 and RunDir(tmp_path / "r").state() == "unfinished"
        code, _, err = self.train(capsys, tmp_path / "r", *RUN, "train.steps=4")  # the corrected command
        assert code == 0 and f"note: {tmp_path / 'r'} held an unfinished start (no checkpoint, no summary): " \
                             "replacing it" in err.splitlines()
        assert RunDir(tmp_path / "r").read_config().model.weights == ""
        err = self.stopped_run(capsys, monkeypatch, tmp_path / "k", at=1)  # Ctrl-C before the first checkpoint
        assert err == f"interrupted before the first checkpoint: nothing to resume in {tmp_path / 'k'}; run the " \
                      "same command again to start over"
        code, _, err = self.invoke(capsys, "eval", str(tmp_path / "k"))  # case 6: eval says how to get a checkpoint
        assert code == 2 and err == f"error: {tmp_path / 'k'} has no checkpoint yet (its training stopped before " \
                                    f"step 2): train it with `sesemi-{self.framework} train --run-dir " \
                                    f"{tmp_path / 'k'} --resume`"
        code, _, err = self.train(capsys, tmp_path / "k", "--resume")
        assert code == 0 and f"note: {tmp_path / 'k'} has no checkpoint yet: training from step 0 with its saved " \
                             "config" in err.splitlines()
        assert [m["step"] for m in RunDir(tmp_path / "k").read_metrics() if "loss" in m] == [1, 2, 3, 4, 5, 6]

    @pytest.mark.slow
    def test_3_overwrite_replaces_a_run_with_checkpoints_only_once_the_new_one_can_start(self, capsys, tmp_path):
        assert self.train(capsys, tmp_path / "r", *RUN, "train.steps=2")[0] == 0
        code, _, err = self.train(capsys, tmp_path / "r", *RUN, "--overwrite", "data.n_labels=55")
        assert code == 2 and "data.n_labels=55 is not a positive multiple" in err
        assert RunDir(tmp_path / "r").read_summary()["steps"] == 2  # a typo costs nothing
        code, _, err = self.train(capsys, tmp_path / "r", *RUN, "--overwrite")
        assert code == 0 and f"note: replacing the run in {tmp_path / 'r'} (--overwrite)" in err.splitlines()
        assert RunDir(tmp_path / "r").read_summary()["steps"] == 6

    @pytest.mark.slow
    def test_4_a_corrupt_latest_checkpoint_falls_back_to_the_one_before(self, capsys, monkeypatch, tmp_path):
        self.stopped_run(capsys, monkeypatch, tmp_path / "r", at=5)
        run = RunDir(tmp_path / "r")
        assert run.checkpoint_steps() == [2, 4]
        latest = next(p for p in run.checkpoints.iterdir() if p.name in ("4", "step_4.pt"))
        for path in [latest] if latest.is_file() else [p for p in latest.rglob("*") if p.is_file()]:
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2] + b"\0garbage")
        code, out, err = self.invoke(capsys, "eval", str(run.path))  # reads weights/step_4.npz, intact
        assert code == 0 and json.loads(out)["step"] == 4 and err == ""
        code, _, err = self.train(capsys, run.path, "--resume")
        warning = [line for line in err.splitlines() if "checkpoint" in line]
        assert len(warning) == 1 and warning[0].startswith("warning: skipped the checkpoint of step 4 (")
        assert warning[0].endswith("it cannot be read; restored step 2") and "Traceback" not in err
        assert code == 0
        assert [m["step"] for m in run.read_metrics() if "loss" in m] == [1, 2, 3, 4, 5, 6]
        assert run.read_summary()["final_test_accuracy"] is not None and run.checkpoint_steps() == [4, 6]
        assert run_weights.saved_steps(run) == [4, 6]  # the weights files follow the checkpoints
        assert self.invoke(capsys, "eval", str(run.path))[0] == 0  # the rewritten step 4 and step 6 load

    @pytest.mark.parametrize("argv, message", [
        (["data.n_labels=55"], "error: data.n_labels=55 is not a positive multiple of the 10 classes: use e.g. "
                               "data.n_labels=60"),
        (["data.n_labels=5000"], "error: class 0 has 142 training images but data.n_labels=5000 needs 500 per "
                                 "class: lower data.n_labels to at most 1390"),
        (["optim.momentum=0"], "error: optim.nesterov needs optim.momentum > 0, got 0.0: set a momentum or "
                               "optim.nesterov=false"),
    ])
    def test_5_user_errors_are_one_line(self, capsys, tmp_path, argv, message):
        code, _, err = self.train(capsys, tmp_path / "r", *TINY, *argv)
        assert (code, err) == (2, message)
        assert not (tmp_path / "r").exists()

    def test_5_files_in_the_wrong_place_are_one_line(self, capsys, tmp_path):
        (tmp_path / "list.json").write_text("[1, 2]")
        code, _, err = self.train(capsys, tmp_path / "r", "--config", str(tmp_path / "list.json"))
        assert code == 2 and err.startswith(f"error: config file {tmp_path / 'list.json'} holds a list (a JSON "
                                            "array), not a JSON object") and len(err.splitlines()) == 1
        (tmp_path / "file").write_text("precious")
        code, _, err = self.train(capsys, tmp_path / "file", *TINY)
        assert code == 2 and err == f"error: --run-dir {tmp_path / 'file'} is a file, not a folder: pass a " \
                                    "folder (it is created if missing)"
        assert (tmp_path / "file").read_text() == "precious"

    def test_6_overrides_may_follow_options(self, capsys, tmp_path):
        # Each error names an override that came after an option, so argparse let it through.
        code, _, err = self.invoke(capsys, "train", "--run-dir", str(tmp_path / "r"), *TINY, "--no-progress",
                                   "optim.lrr=0.1")
        assert (code, err) == (2, "error: unknown config key 'optim.lrr'; did you mean 'optim.lr'?")
        code, _, err = self.invoke(capsys, "train", "--run-dir", str(tmp_path / "r"), "train.steps=20",
                                   "--no-progress", "data.image_size=16", "data.n_labels=55")
        assert code == 2 and err.startswith("error: data.n_labels=55 is not a positive multiple")

    def test_6_resume_and_eval_of_nothing_say_so_and_create_nothing(self, capsys, tmp_path):
        (tmp_path / "empty").mkdir()
        for folder in ("empty", "missing"):
            code, _, err = self.train(capsys, tmp_path / folder, "--resume")
            assert code == 2 and err.startswith(f"error: {tmp_path / folder} ") and "nothing to resume; train " \
                "without --resume to start a run there" in err
            code, _, err = self.invoke(capsys, "eval", str(tmp_path / folder))
            assert code == 2 and err.endswith(f"pass the folder given to `sesemi-{self.framework} train --run-dir`")
        assert not (tmp_path / "missing").exists() and list((tmp_path / "empty").iterdir()) == []

    @pytest.mark.slow
    def test_5_6_ctrl_c_then_resume_with_a_lower_lr(self, capsys, monkeypatch, tmp_path):
        err = self.stopped_run(capsys, monkeypatch, tmp_path / "r", at=3)
        assert err == f"interrupted: {tmp_path / 'r'} stopped; its last checkpoint is step 2: continue with " \
                      f"`sesemi-{self.framework} train --run-dir {tmp_path / 'r'} --resume`"
        metrics = (tmp_path / "r" / "metrics.jsonl").read_text()
        (tmp_path / "r" / "metrics.jsonl").write_text(metrics + "not json\n")
        code, _, err = self.train(capsys, tmp_path / "r", "--resume")
        assert code == 2 and err.startswith(f"error: {tmp_path / 'r'}/metrics.jsonl line 3 is not JSON")
        assert len(err.splitlines()) == 1 and RunDir(tmp_path / "r").checkpoint_steps() == [2]
        (tmp_path / "r" / "metrics.jsonl").write_text(metrics)
        (tmp_path / "c.json").write_text("{}")
        code, _, err = self.train(capsys, tmp_path / "r", "--resume", "--config", str(tmp_path / "c.json"))
        assert code == 2 and err.startswith(f"error: --resume continues with {tmp_path / 'r' / 'config.json'}, "
                                            f"so --config {tmp_path / 'c.json'} would be ignored")
        code, _, err = self.train(capsys, tmp_path / "r", "--resume", "train.batch_labeled=4")
        assert code == 2 and err.startswith("error: --resume cannot change train.batch_labeled: the run started "
                                            "with train.batch_labeled=8, this command asks for 4; only optim.lr")
        code, _, err = self.train(capsys, tmp_path / "r", "--resume", "optim.weight_decay=nan")
        assert (code, err) == (2, "error: config key 'optim.weight_decay' must be a finite number, got nan")
        code, _, err = self.train(capsys, tmp_path / "r", "--resume", "optim.lr=0.01")
        assert code == 0 and f"note: resuming {tmp_path / 'r'} with optim.lr 0.05 -> 0.01 (recorded in its " \
                             "config.json)" in err.splitlines()
        run = RunDir(tmp_path / "r")
        assert run.read_config().optim.lr == 0.01
        lrs = {m["step"]: m["lr"] for m in run.read_metrics() if "loss" in m}
        assert lrs == pytest.approx({1: 0.05, 2: 0.05, 3: 0.01, 4: 0.01, 5: 0.01, 6: 0.01})

    @pytest.mark.slow
    def test_7_eval_predict_export_read_the_runs_weights_file(self, capsys, monkeypatch, tmp_path):
        """Issue 16: a weights file beside each checkpoint, which eval and predict read."""
        self.stopped_run(capsys, monkeypatch, tmp_path / "r", at=5)
        run = RunDir(tmp_path / "r")
        assert run_weights.saved_steps(run) == run.checkpoint_steps() == [2, 4]
        assert not run_weights.final_file(run).exists()  # written when the run ends
        step_4 = run.path / "weights" / "step_4.npz"
        state_dict, metadata = run_weights.read(step_4)
        assert metadata == {"framework": self.framework, "step": 4, "variables": "model", "backbone": "resnet8",
                            "method": "sesemi", "num_classes": 10, "heads": {"self": 6}}
        assert "self_head.weight" in state_dict and "backbone.bn1.running_var" in state_dict
        code, out, err = self.invoke(capsys, "eval", str(run.path))
        result = json.loads(out)
        assert code == 0 and (result["framework"], result["trained_by"], result["step"]) == (self.framework,) * 2 + (4,)
        assert result["weights"] == f"weights file {step_4}"
        code, out, _ = self.invoke(capsys, "eval", str(run.path), "--checkpoint", "2")
        assert code == 0 and json.loads(out)["step"] == 2
        code, _, err = self.invoke(capsys, "eval", str(run.path), "--checkpoint", "3")
        assert (code, err) == (2, f"error: {run.path} keeps no weights of step 3: its weights files are of steps "
                                  "2, 4 (pass one of them to --checkpoint)")
        image = tmp_path / "x.png"
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
        code, out, err = self.invoke(capsys, "predict", str(run.path), str(image), "--out", str(tmp_path / "p.csv"),
                                     "--checkpoint", "2")
        assert code == 0 and err == f"note: the model of step 2, trained by {self.framework} (weights file " \
                                    f"{run.path / 'weights' / 'step_2.npz'})"
        # Test-time augmentation (issue 15): the paper's 8 views, the run's eval.tta unless --tta says otherwise.
        assert result["tta"] == 1
        code, out, _ = self.invoke(capsys, "eval", str(run.path), "--tta", "8")
        with_tta = json.loads(out)
        assert code == 0 and with_tta["tta"] == 8 and with_tta["test_images"] == result["test_images"]
        assert 0.0 <= with_tta["test_accuracy"] <= 1.0
        code, _, _ = self.invoke(capsys, "predict", str(run.path), str(image), "--out", str(tmp_path / "p8.csv"),
                                 "--checkpoint", "2", "--tta", "8")
        plain, averaged = ((tmp_path / name).read_text().splitlines()[1].split(",") for name in ("p.csv", "p8.csv"))
        assert code == 0 and 0.0 < float(averaged[3]) <= 1.0 and averaged[3] != plain[3]
        code, _, err = self.invoke(capsys, "eval", str(run.path), "--tta", "3")
        assert (code, err) == (2, "error: config key 'eval.tta' must be 1 (one clean view) or 8 (the paper's 8 "
                                  "test-time views), got 3")
        # A run written before runs had weights files: its own framework reads the checkpoint, export writes the file.
        shutil.rmtree(run.path / "weights")
        code, out, _ = self.invoke(capsys, "eval", str(run.path))
        assert code == 0 and json.loads(out)["weights"] == f"checkpoint 4 of {run.path}"
        assert json.loads(out)["test_accuracy"] == result["test_accuracy"]
        code, out, _ = self.invoke(capsys, "export", str(run.path))
        assert (code, out.strip()) == (0, f"wrote {step_4}")
        exported, exported_metadata = run_weights.read(step_4)
        assert exported_metadata == metadata and exported.keys() == state_dict.keys()
        assert all(np.array_equal(exported[key], state_dict[key]) for key in state_dict)
        # A weights file broken on disk is one line, not a traceback.
        step_4.write_bytes(step_4.read_bytes()[:1000])
        code, _, err = self.invoke(capsys, "eval", str(run.path))
        assert code == 2 and err.startswith(f"error: weights file {step_4} is not a readable .npz (")
        assert len(err.splitlines()) == 1

    def test_6_a_section_given_as_a_value_is_named(self, capsys, tmp_path):
        (tmp_path / "c.json").write_text('{"train": 5}')
        code, _, err = self.train(capsys, tmp_path / "r", "--config", str(tmp_path / "c.json"))
        assert code == 2 and err == """error: config section 'train' must be a JSON object of its keys, e.g. """ \
                                    """{"train": {"steps": ...}}, got 5"""


class CliContract(CliLifeContract):
    main = None  # the framework's cli.main

    def run(self, capsys, *argv):
        code = self.main(list(argv))
        err = capsys.readouterr().err.strip()
        return code, err

    def test_typo_in_an_override(self, capsys, tmp_path):
        code, err = self.run(capsys, "train", "optim.lrr=0.1", "--run-dir", str(tmp_path / "r"))
        assert code == 2 and err == "error: unknown config key 'optim.lrr'; did you mean 'optim.lr'?"

    def test_batch_larger_than_the_labeled_set(self, capsys, tmp_path):
        code, err = self.run(capsys, "train", *TINY, "train.batch_labeled=32", "--run-dir", str(tmp_path / "r"))
        assert code == 2
        assert "train.batch_labeled (32) is larger than the labeled set (20 images)" in err
        assert len(err.splitlines()) == 1

    def test_resume_without_a_run(self, capsys, tmp_path):
        code, err = self.run(capsys, "train", "--resume", "--run-dir", str(tmp_path / "none"))
        assert code == 2 and "does not exist: nothing to resume" in err and len(err.splitlines()) == 1

    def test_missing_weights_file(self, capsys, tmp_path):
        code, err = self.run(capsys, "train", *TINY, f"model.weights={tmp_path / 'missing.npz'}",
                             "--run-dir", str(tmp_path / "r"))
        assert code == 2 and "missing.npz does not exist" in err

    def test_eval_of_a_missing_run(self, capsys, tmp_path):
        code, err = self.run(capsys, "eval", str(tmp_path / "nothing"))
        assert code == 2 and len(err.splitlines()) == 1
