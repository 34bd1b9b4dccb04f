from sesemi_torch import cli
from tests.run_safety_contract import RunSafetyContract


class TestTorchRunSafety(RunSafetyContract):
    main = staticmethod(cli.main)
    framework = "torch"
