"""Bad input at the command line of either framework: exit code 2 and one line that says what to fix."""

TINY = ["data.image_size=16", "data.n_labels=20", "train.steps=2", "train.batch_labeled=8", "train.batch_unlabeled=2"]


class CliContract:
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
        assert code == 2 and "config.json" in err and len(err.splitlines()) == 1

    def test_missing_weights_file(self, capsys, tmp_path):
        code, err = self.run(capsys, "train", *TINY, f"model.weights={tmp_path / 'missing.npz'}",
                             "--run-dir", str(tmp_path / "r"))
        assert code == 2 and "missing.npz does not exist" in err

    def test_eval_of_a_missing_run(self, capsys, tmp_path):
        code, err = self.run(capsys, "eval", str(tmp_path / "nothing"))
        assert code == 2 and len(err.splitlines()) == 1
