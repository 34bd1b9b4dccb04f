from sesemi_jax import checkpoints, loop
from sesemi_jax.cli import JaxBackend
from tests.loop_contract import LoopContract


class TestJaxLoop(LoopContract):
    """Resuming after SIGKILL is bit-exact in JAX on the CPU: every step's randomness is a
    function of (seed, step), and the checkpoint holds the whole state."""

    fit = staticmethod(loop.fit)
    backend = JaxBackend()
    checkpoints = checkpoints
    cli_module = "sesemi_jax.cli"
