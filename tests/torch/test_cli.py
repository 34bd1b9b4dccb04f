from sesemi_torch import cli
from tests.cli_contract import TINY, CliContract


class TestTorchCli(CliContract):
    main = staticmethod(cli.main)
    framework = "torch"


def test_a_device_this_machine_lacks_is_refused_before_training(capsys, tmp_path):
    code = cli.main(["train", *TINY, "--device", "cuda:7", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: device 'cuda:7'") and "CUDA GPU" in err
    assert not (tmp_path / "r").exists()


def test_a_misspelt_device_names_the_choices(capsys, tmp_path):
    code = cli.main(["train", *TINY, "--device", "gpu0", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "'gpu0' is not a torch device: use cpu, cuda or cuda:N" in err


def test_compile_without_a_compiler_is_refused_before_training(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "no-such-c++")
    code = cli.main(["train", *TINY, "--compile", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--compile needs a C++ compiler for torch.compile, and 'no-such-c++' is not on PATH" in err
    assert not (tmp_path / "r").exists()
