from sesemi_jax import cli
from tests.cli_contract import TINY, CliContract


class TestJaxCli(CliContract):
    main = staticmethod(cli.main)
    framework = "jax"

    def test_pytorch_weights_file_says_how_to_convert(self, capsys, tmp_path):
        code, err = self.run(capsys, "train", *TINY, f"model.weights={tmp_path / 'resnet18.pth'}",
                             "--run-dir", str(tmp_path / "r"))
        assert code == 2
        assert "is a PyTorch file, which sesemi_jax cannot read: convert it with " \
               f"`python -m sesemi_torch.convert {tmp_path / 'resnet18.pth'} OUT.npz`" in err
