"""Issue 30, framework-free: orphan temporaries, strict JSON, file-system errors as one line."""

import errno
import json
import math

import numpy as np
import pytest

from sesemi_common import cli, commands, run_weights, verify
from sesemi_common.config import Config, apply_overrides
from sesemi_common.runs import RunDir, to_json
from tests.common.test_run_weights import STATE_DICT


def test_a_weights_write_removes_the_temporaries_a_kill_left(tmp_path):
    run = RunDir(tmp_path)
    run_weights.folder(run).mkdir()
    orphans = [run_weights.folder(run) / ".step_4.npz.0123456789ab.tmp", tmp_path / ".model.npz.0123456789ab.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half a file")
    (tmp_path / "notes.tmp").write_text("a user's")
    run_weights.save(run, 6, STATE_DICT, "torch", apply_overrides(Config(), ["train.steps=8"]))
    assert not any(orphan.exists() for orphan in orphans) and (tmp_path / "notes.tmp").exists()


def test_every_json_written_is_strict():
    assert to_json({"loss": math.nan, "acc": np.float32(math.inf), "ok": [1.5, -math.inf]}) == \
        '{"loss": null, "acc": null, "ok": [1.5, null]}'


def test_the_summary_and_metrics_of_a_run_never_hold_a_bare_nan(tmp_path):
    run = RunDir(tmp_path)
    run.append_metrics({"step": 1, "loss": float("nan")})
    run.write_summary({"final_loss": float("inf")})
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "loss": null}\n'
    assert json.loads((tmp_path / "summary.json").read_text()) == {"final_loss": None}


class _Args:
    command = "train"

    def __init__(self, run_dir):
        self.run_dir = run_dir


@pytest.mark.parametrize("code, advice", [
    (errno.EROFS, "the file system is read-only: use a folder on a writable one"),
    (errno.ENOSPC, "the disk is full: free space there and run the command again"),
])
def test_a_file_system_error_is_one_line_with_what_to_do(tmp_path, code, advice):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step_4.pt").write_bytes(b"")
    (tmp_path / "config.json").write_text("{}")
    # torch.save on a full disk raises a RuntimeError while handling the OSError: the OSError is found
    try:
        try:
            raise OSError(code, __import__("os").strerror(code), str(tmp_path / "checkpoints" / ".step_6.pt.tmp"))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904 (torch chains it implicitly, as here)
    except RuntimeError as err:
        failed = commands.file_system_error(err)
    assert failed is not None and failed.errno == code
    message = commands.file_system_message(failed, _Args(str(tmp_path)), "sesemi-torch")
    resume = (f"; {tmp_path} keeps its checkpoint of step 4: continue with `sesemi-torch train --run-dir {tmp_path} "
              "--resume`") if code == errno.ENOSPC else ""  # after freeing space; a read-only copy is no place to go on
    assert message == f"error: {failed.strerror} at {tmp_path / 'checkpoints' / '.step_6.pt.tmp'}: {advice}{resume}"
    assert commands.file_system_error(RuntimeError("a bug")) is None


def test_verify_prints_its_verdict_before_a_write_that_fails(tmp_path, monkeypatch, capsys):
    result = {"run_dir": str(tmp_path / "r"), "trained_by": "jax", "step": 6, "variables": "model",
              "weights": "w", "test_images": 4, "test_accuracy": {"jax": 0.5, "torch": 0.5}, "label_agreement": 1.0,
              "labels_differ": 0, "labels_differ_beyond_ties": 0, "max_abs_logit_diff": 0.0, "max_abs_logit": 1.0,
              "relative_logit_diff": 0.0, "rtol": 1e-5, "bound": 1e-5, "passed": True, "wall_time_s": 1.0}
    monkeypatch.setattr(cli, "check_both_frameworks", lambda command: None)
    monkeypatch.setattr(verify, "evaluate", lambda run_dir, step: result)

    def read_only(self, verification):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "r" / ".verify.json.0123.tmp"))
    monkeypatch.setattr(RunDir, "write_verification", read_only)
    code = cli.main(["verify", str(tmp_path / "r")])
    out, err = capsys.readouterr()
    assert code == commands.FILE_SYSTEM_FAILED and "| r | jax | 6 | 50.00% | 50.00% |" in out and "PASS" in out
    assert err.strip() == (f"error: Read-only file system at {tmp_path / 'r' / '.verify.json.0123.tmp'}: the file "
                           "system is read-only: use a folder on a writable one")
