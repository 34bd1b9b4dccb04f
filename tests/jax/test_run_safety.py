from sesemi_jax import cli
from tests.run_safety_contract import RunSafetyContract


class TestJaxRunSafety(RunSafetyContract):
    main = staticmethod(cli.main)
    framework = "jax"
