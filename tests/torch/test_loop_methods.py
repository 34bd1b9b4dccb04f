from sesemi_torch import checkpoints, loop
from sesemi_torch.cli import TorchBackend
from tests.loop_contract import MethodLoopContract


class TestTorchMethodLoops(MethodLoopContract):
    fit = staticmethod(loop.fit)
    backend = TorchBackend()
    checkpoints = checkpoints
    cli_module = "sesemi_torch.cli"
