from sesemi_common.cli import main
from sesemi_common.report import markdown_table, plot_runs
from sesemi_common.runs import RunDir


def _fake_run(path, framework, accuracy, speeds):
    run = RunDir(path)
    for step, speed in zip((10, 20, 30), speeds):
        run.append_metrics({"step": step, "loss": 1.0 / step, "images_per_s": speed})
    run.append_metrics({"step": 30, "test_accuracy": accuracy})
    run.write_summary({"framework": framework, "method": "sesemi", "backbone": "resnet20", "n_labels": 40,
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
