"""Issue 30, for either framework: run directories two processes cannot corrupt, divergence that is
recoverable and never scored, file-system errors as one line (docs/runs.md)."""

import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sesemi_common import run_lock, run_weights
from sesemi_common.runs import RunDir
from sesemi_common.weights import read_npz_with_metadata, write_npz
from tests.cli_contract import TINY
from tests.kill_resume import hold_lock

# A checkpoint at steps 2 and 4 of 4.
SHORT = [*TINY, "train.steps=4", "train.log_every=1", "train.checkpoint_every=2", "train.eval_every=4",
         "train.eval_batch_size=128", "optim.schedule=constant"]


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, read_only) -> a folder on a small tmpfs of its own (a full disk, a read-only
    mount: the real errors, not a patched write); skipped where this user may not mount."""
    mounted = []

    def mount(size: str, read_only: bool = False) -> Path:
        folder = tmp_path / f"mnt{len(mounted)}"
        folder.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True).returncode:
            pytest.skip("mounting a tmpfs needs root with CAP_SYS_ADMIN")
        mounted.append(folder)
        return folder
    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], capture_output=True)


class RunSafetyContract:
    main = None
    framework = ""

    def invoke(self, capsys, *argv):
        code = self.main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err.strip()

    def train(self, capsys, run_dir, *argv):
        return self.invoke(capsys, "train", *argv, "--run-dir", str(run_dir), "--no-progress")

    def test_1_a_second_trainer_is_refused_and_a_dead_holder_blocks_nothing(self, capsys, tmp_path):
        run_dir = tmp_path / "r"
        run_dir.mkdir()
        (run_dir / "config.json").write_text("{}")  # a start in progress: a second `train` would replace it
        (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
        before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != ".sesemi.lock"}
        holder = hold_lock(run_dir)
        try:
            for extra in ((), ("--resume",), ("--overwrite",)):
                code, out, err = self.train(capsys, run_dir, *SHORT, *extra)
                assert code == 2 and out == "" and len(err.splitlines()) == 1, err
                assert err.startswith(f"error: {run_dir} is in use by pid {holder.pid} on ")
                assert "sesemi train (the first)" in err and "wait for it to end or stop it" in err
            assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != ".sesemi.lock"} == before
        finally:
            holder.kill()
            holder.wait()
        # kill -9 released the lock with the process; its record stays behind and blocks nothing
        assert (run_dir / ".sesemi.lock").is_file()
        lock = run_lock.acquire(run_dir)
        assert lock.held and json.loads((run_dir / ".sesemi.lock").read_text())["pid"] == os.getpid()
        lock.release()
        assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "metrics.jsonl"]

    @pytest.mark.parametrize("override, message", [
        ("method.fixmatch.threshold=1.5", "error: config key 'method.fixmatch.threshold' must be in [0, 1], got 1.5"),
        ("data.image_size=2", "error: augment.translate=2 needs data.image_size > 2"),
        ("augment.translate=40", "error: augment.translate=40 needs data.image_size > 40"),
    ])
    def test_2_5_a_knob_out_of_range_or_a_padding_too_large_is_refused_before_anything(self, capsys, tmp_path,
                                                                                       override, message):
        code, _, err = self.train(capsys, tmp_path / "r", *SHORT, "method.name=fixmatch", override)
        assert code == 2 and err.startswith(message) and len(err.splitlines()) == 1
        assert not (tmp_path / "r").exists()

    @pytest.mark.slow
    def test_3_4_a_diverged_run_names_a_checkpoint_that_resumes_and_nan_is_never_scored(self, capsys, tmp_path):
        run_dir, run = tmp_path / "r", RunDir(tmp_path / "r")
        # The step that overflows at lr 1000 is resnet20's (TINY's resnet8 diverges elsewhere)
        every_step = [*SHORT, "model.backbone=resnet20", "train.steps=6", "train.checkpoint_every=1",
                      "train.eval_every=6"]
        code, _, err = self.train(capsys, run_dir, *every_step, "optim.lr=1000")
        assert code == 2 and len(err.splitlines()) == 1, err
        # The step that overflowed ran from the newest checkpoint: it is removed, the one before is named
        # and is the one --resume takes (before issue 30 the resume stopped again at once).
        assert err.startswith("error: the weights became non-finite at step 4 (checkpoint 3, whose weights gave it, "
                              "is removed): lower optim.lr or check the data; the last good checkpoint is step 2")
        assert run.checkpoint_steps() == [2] and run_weights.saved_steps(run) == [2]
        code, _, err = self.train(capsys, run_dir, "--resume", "optim.lr=1e-12")
        assert code == 0, err
        assert RunDir(run_dir).read_summary()["steps"] == 6
        # A model with NaN weights: eval, predict and verify say so, exit non-zero, and score nothing.
        state_dict, record = read_npz_with_metadata(run_weights.final_file(run))
        write_npz({k: v * np.float32("nan") if v.dtype.kind == "f" else v for k, v in state_dict.items()},
                  run_weights.final_file(run), record)
        code, out, err = self.invoke(capsys, "eval", str(run_dir))
        assert code == 2 and out == "" and err == (
            f"error: the model of step 6 (weights file {run_weights.final_file(run)}) gives non-finite logits for 364 "
            "of 364 images: it diverged, so it is not scored; evaluate an earlier one (--checkpoint 5), or train "
            "again with a lower optim.lr")
        if self.framework != "torch":  # predict and verify read the model through the same path: once is enough
            return
        image = tmp_path / "x.png"
        from PIL import Image
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
        code, _, err = self.invoke(capsys, "predict", str(run_dir), str(image), "--out", str(tmp_path / "p.csv"))
        assert code == 2 and "gives non-finite logits for 1 of 1 images" in err and not (tmp_path / "p.csv").exists()
        from sesemi_common import cli as sesemi_cli
        code = sesemi_cli.main(["verify", str(run_dir)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "non-finite logits" in err and len(err.splitlines()) == 1
        assert not (run_dir / "verify.json").exists()
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():  # strict JSON: no bare NaN
            json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in metrics.jsonl"))

    @pytest.mark.slow
    def test_8_sigterm_says_how_to_resume_and_a_lost_weights_file_names_export(self, capsys, monkeypatch, tmp_path):
        run_dir, run = tmp_path / "r", RunDir(tmp_path / "r")
        append = RunDir.append_metrics

        six = [*SHORT, "train.steps=6", "train.eval_every=6"]

        def append_or_terminate(self, record):
            if record.get("step") == 5 and "loss" in record:
                os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler preempting the job would
            append(self, record)
        with monkeypatch.context() as patch:
            patch.setattr(RunDir, "append_metrics", append_or_terminate)
            code, _, err = self.train(capsys, run_dir, *six)
        assert code == 143 and err == (f"terminated (SIGTERM): {run_dir} stopped; its last checkpoint is step 4: "
                                       f"continue with `sesemi-{self.framework} train --run-dir {run_dir} --resume`")
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the command's only
        # issue 30.7: an image's TTA prediction is the same alone and second in the list
        from PIL import Image
        rng = np.random.default_rng(0)
        for name in ("a", "b"):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
        rows = {}
        for inputs in (("a.png", "b.png"), ("b.png",)):
            out = tmp_path / f"{len(inputs)}.csv"
            code, _, err = self.invoke(capsys, "predict", str(run_dir), *(str(tmp_path / i) for i in inputs),
                                       "--tta", "8", "--out", str(out))
            assert code == 0, err
            rows[len(inputs)] = out.read_text().splitlines()[-1]  # b.png's row
        assert rows[1] == rows[2] and rows[1].startswith(str(tmp_path / "b.png"))
        # A kill while weights/step_4.npz was being written: the checkpoint is whole, the file is not there.
        run_weights.step_file(run, 4).unlink()
        code, _, err = self.invoke(capsys, "eval", str(run_dir), "--checkpoint", "4")
        assert code == 2 and err == (f"error: {run_dir} has checkpoint 4 but no weights file of it: write it with "
                                     f"`sesemi-{self.framework} export {run_dir} --checkpoint 4`")
        code, _, err = self.train(capsys, run_dir, "--resume", "optim.nesterov=false")  # spelled as typed
        assert code == 2 and "the run started with optim.nesterov=true, this command asks for false;" in err
        # (the next weights write removes the orphan: tests/common/test_run_files.py)

    def test_6_a_read_only_folder_is_one_line_for_train_and_resume(self, capsys, tmpfs):
        folder = tmpfs("1m", read_only=True)
        code, out, err = self.train(capsys, folder / "r", *SHORT)
        assert code == 1 and out == "" and err == (f"error: Read-only file system at {folder / 'r'}: the file system "
                                                   "is read-only: use a folder on a writable one")
        code, _, err = self.train(capsys, folder, "--resume")  # a mount with no run: said as for any folder
        assert code == 2 and "holds no run (no config.json): nothing to resume" in err

    @pytest.mark.slow
    def test_6_a_full_disk_at_a_checkpoint_is_one_line_and_leaves_no_partial_file(self, capsys, tmpfs):
        folder = tmpfs("1m")  # room for the config, split and metrics, not for a resnet20 checkpoint
        code, out, err = self.train(capsys, folder / "r", *SHORT, "model.backbone=resnet20")
        assert code == 1 and out == "" and len(err.splitlines()) == 1, err
        assert err.startswith("error: No space left on device") and err.endswith(
            "the disk is full: free space there and run the command again")
        run = RunDir(folder / "r")
        assert run.checkpoint_steps() == []
        assert not run.checkpoints.is_dir() or [p.name for p in run.checkpoints.iterdir()] == []  # no partial file
        assert [m["step"] for m in run.read_metrics() if "loss" in m] == [1, 2]
