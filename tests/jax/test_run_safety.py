from sesemi_jax import cli
from tests.run_safety_contract import RunSafetyContract, tmpfs  # noqa: F401 (a fixture)


class TestJaxRunSafety(RunSafetyContract):
    main = staticmethod(cli.main)
    framework = "jax"
