"""STL-10 and SVHN fixtures in their official formats train a few steps through either framework's CLI."""

import json

import numpy as np
import pytest

from sesemi_common.runs import RunDir
from tests.common.test_stl10 import stl10_files, write_stl10_folder
from tests.common.test_svhn import write_svhn

# Supervised: the method's unlabeled views add compile time and test nothing about the data here.
TINY = ["data.n_labels=10", "train.steps=2", "train.batch_labeled=4", "method.name=supervised",
        "train.batch_unlabeled=0", "train.eval_every=2", "train.log_every=1"]


class DatasetTrainingContract:
    main = None

    def train(self, capsys, run_dir, *argv):
        code = self.main(["train", *argv, *TINY, "--run-dir", str(run_dir), "--no-progress"])
        return code, capsys.readouterr().err

    def check_run(self, run_dir, train_labels):
        run = RunDir(run_dir)
        labeled = run.read_split()["labeled"]
        assert sorted(np.asarray(train_labels)[labeled].tolist()) == list(range(10))  # one image per class
        steps = [m["step"] for m in run.read_metrics() if "loss" in m]
        assert steps == [1, 2] and all(np.isfinite(m["loss"]) for m in run.read_metrics() if "loss" in m)
        accuracy = run.read_summary()["final_test_accuracy"]
        assert 0.0 <= accuracy <= 1.0

    @pytest.mark.slow
    def test_stl10_trains(self, capsys, tmp_path):
        root = write_stl10_folder(tmp_path / "data", stl10_files())
        code, err = self.train(capsys, tmp_path / "run", "data.dataset=stl10", f"data.root={root}",
                               "data.image_size=96")
        assert code == 0, err
        self.check_run(tmp_path / "run", [i % 10 for i in range(20)])
        assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["dataset"] == "stl10"

    @pytest.mark.slow
    def test_svhn_trains(self, capsys, tmp_path):
        root = write_svhn(tmp_path / "data", splits=("train", "test"))
        code, err = self.train(capsys, tmp_path / "run", "data.dataset=svhn", f"data.root={root}")
        assert code == 0, err
        self.check_run(tmp_path / "run", [1, 2, 3, 4, 5, 6, 7, 8, 9, 0] * 2)
