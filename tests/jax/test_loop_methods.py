from sesemi_jax import checkpoints, loop
from sesemi_jax.cli import JaxBackend
from tests.loop_contract import MethodLoopContract


class TestJaxMethodLoops(MethodLoopContract):
    fit = staticmethod(loop.fit)
    backend = JaxBackend()
    checkpoints = checkpoints
    cli_module = "sesemi_jax.cli"
