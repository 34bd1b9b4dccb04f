from sesemi_torch import checkpoints, loop
from sesemi_torch.cli import TorchBackend
from tests.loop_contract import LoopContract


class TestTorchLoop(LoopContract):
    """Resuming after SIGKILL is exact in PyTorch on the CPU: batches and augmentation come
    from generators seeded by (seed, step), and the checkpoint holds model, optimizer,
    scheduler and the global RNG state (dropout)."""

    fit = staticmethod(loop.fit)
    backend = TorchBackend()
    checkpoints = checkpoints
    cli_module = "sesemi_torch.cli"
