from sesemi_torch import cli
from tests.cli_contract import CliContract


class TestTorchCli(CliContract):
    main = staticmethod(cli.main)
