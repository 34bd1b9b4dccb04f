from sesemi_torch import cli
from tests.run_safety_contract import RunSafetyContract, tmpfs  # noqa: F401 (a fixture)


class TestTorchRunSafety(RunSafetyContract):
    main = staticmethod(cli.main)
    framework = "torch"
