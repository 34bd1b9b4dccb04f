from sesemi_common import cli, report
from sesemi_common.cli import main
from sesemi_common.report import markdown_table, plot_runs
from sesemi_common.runs import RunDir


def _fake_run(path, framework, accuracy, speeds, method="sesemi"):
    run = RunDir(path)
    for step, speed in zip((10, 20, 30), speeds):
        run.append_metrics({"step": step, "loss": 1.0 / step, "images_per_s": speed})
    run.append_metrics({"step": 30, "test_accuracy": accuracy})
    run.write_summary({"framework": framework, "method": method, "backbone": "resnet20", "n_labels": 40,
                       "steps": 30, "final_test_accuracy": accuracy})
    return path


def test_table_and_png(tmp_path):
    runs = [_fake_run(tmp_path / "a", "jax", 0.5123, [100, 300, 200]),
            _fake_run(tmp_path / "b", "torch", 0.25, [50, 60, 70])]
    table = markdown_table(runs).splitlines()
    assert table[2] == "| a | jax | sesemi | resnet20 | 40 | 30 | 51.23% | 200 |"
    assert table[3] == "| b | torch | sesemi | resnet20 | 40 | 30 | 25.00% | 60 |"
    png = plot_runs(runs, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_command_refuses_unfinished_runs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r.png")]) == 2
    assert "has no summary.json: pass finished run directories" in capsys.readouterr().err


def test_report_to_a_missing_folder_is_one_line_before_any_work(tmp_path, capsys):
    run = _fake_run(tmp_path / "a", "jax", 0.5, [1, 2, 3])
    assert main(["report", str(run), "--out", str(tmp_path / "missing_dir" / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: --out {tmp_path}/missing_dir/x.png: folder {tmp_path}/missing_dir does not exist: "
                   "create it or choose another path\n")


def test_a_bad_metrics_line_is_one_line(tmp_path, capsys):
    run = _fake_run(tmp_path / "a", "jax", 0.5, [1, 2, 3])
    with open(run / "metrics.jsonl", "a") as f:
        f.write("garbage\n{\"step\": 40}\n")
    assert main(["report", str(run), "--out", str(tmp_path / "r.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run}/metrics.jsonl line 5 is not JSON") and err.count("\n") == 1
    assert err.rstrip().endswith("fix or delete that line")


def test_missing_packages_are_named_before_any_work(tmp_path, capsys, monkeypatch):
    installed = {"jax", "flax", "optax", "orbax", "torch", "torchvision"}
    monkeypatch.setattr(cli, "_installed", lambda package: package in installed)
    monkeypatch.setattr(cli, "FRAMEWORKS", {})  # any training attempt would fail loudly
    assert main(["demo", "--out-dir", str(tmp_path / "demo")]) == 2
    assert capsys.readouterr().err == ("error: the report's curves need matplotlib, which is not installed: "
                                       "pip install matplotlib\n")
    installed -= {"optax", "orbax"}
    assert main(["demo", "--out-dir", str(tmp_path / "demo")]) == 2
    assert capsys.readouterr().err == "error: jax is installed but optax, orbax are not: pip install 'sesemi[jax]'\n"
    run = _fake_run(tmp_path / "a", "jax", 0.5, [1, 2, 3])
    assert main(["report", str(run), "--out", str(tmp_path / "r.png")]) == 2
    assert "need matplotlib" in capsys.readouterr().err and not (tmp_path / "r.png").exists()
    assert not (tmp_path / "demo").exists()


def test_verification_column_only_when_a_run_was_verified(tmp_path):
    runs = [_fake_run(tmp_path / "a", "jax", 0.5, [1, 2, 3]), _fake_run(tmp_path / "b", "torch", 0.5, [1, 2, 3])]
    assert "verification" not in markdown_table(runs)
    RunDir(runs[0]).write_verification({"passed": True, "label_agreement": 1.0, "max_abs_logit_diff": 2.5e-6})
    table = markdown_table(runs).splitlines()
    assert table[0].endswith("| verification |")
    assert table[2].endswith("| PASS 100.00% agree, max diff 2.5e-06 |") and table[3].endswith("| - |")


def test_the_demo_ends_with_a_verification_of_its_jax_run(tmp_path, capsys, monkeypatch):
    """Wiring only (fake trainers and verdict): the real verification is parity_tests/test_verify.py."""
    import types

    monkeypatch.setattr(cli, "installed_frameworks", lambda: ["jax", "torch"])

    def fake_module(name):
        framework = "jax" if "jax" in name else "torch"
        return types.SimpleNamespace(fit=lambda config, run_dir: {"final_test_accuracy": 0.5, **RunDir(
            _fake_run(run_dir, framework, 0.5, [1, 2, 3])).read_summary()})
    monkeypatch.setattr(cli.importlib, "import_module", fake_module)
    verified = []
    result = {"run_dir": str(tmp_path / "demo" / "jax-sesemi"), "trained_by": "jax", "step": 100,
              "test_accuracy": {"jax": 0.5, "torch": 0.5}, "label_agreement": 1.0, "test_images": 364,
              "labels_differ": 0, "max_abs_logit_diff": 3e-6, "bound": 1e-4, "passed": True}
    monkeypatch.setattr(cli.verification, "verify", lambda run_dir: verified.append(run_dir) or result)
    assert main(["demo", "--out-dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert verified == [tmp_path / "demo" / "jax-sesemi"]
    assert out[-5].startswith("== verify ") and out[-4].startswith("| run | trained by | step | jax test acc")
    assert out[-1].startswith("demo took ") and out[-2] == ("| jax-sesemi | jax | 100 | 50.00% | 50.00% | 100.00% (364/364) | 3.00e-06 | 1.00e-04 | PASS |")


def test_the_sesemi_effect_line_says_what_these_runs_show_and_points_to_the_long_study(tmp_path):
    runs = [_fake_run(tmp_path / "js", "jax", 0.60, [1, 2, 3]),
            _fake_run(tmp_path / "jb", "jax", 0.75, [1, 2, 3], method="supervised"),
            _fake_run(tmp_path / "ts", "torch", 0.70, [1, 2, 3]),
            _fake_run(tmp_path / "tb", "torch", 0.65, [1, 2, 3], method="supervised")]
    line = report.sesemi_effect(runs)
    assert line.startswith("SESEMI minus baseline here (30 steps, 40 labels, one seed): jax -15.0, torch +5.0 points: "
                           "SESEMI needs long schedules")
    assert line.endswith(report.LONG_STUDY) and "\n" not in line
    ahead = report.sesemi_effect(runs[2:])
    assert ahead.startswith("SESEMI minus baseline here (30 steps, 40 labels, one seed): torch +5.0 points. ")
    assert "needs long schedules" not in ahead
    assert report.sesemi_effect(runs[:1]) == ""  # no pair: nothing to say
