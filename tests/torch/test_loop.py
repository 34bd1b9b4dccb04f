import numpy as np

from sesemi_common.config import Config, apply_overrides
from sesemi_torch import checkpoints, loop
from sesemi_torch.cli import TorchBackend
from sesemi_torch.data import SpecSampler
from sesemi_common.runs import RunDir
from tests.loop_contract import LoopContract, tiny


class TestTorchLoop(LoopContract):
    """Resuming after SIGKILL is exact in PyTorch on the CPU: batches and augmentation come
    from generators seeded by (seed, step), and the checkpoint holds model, optimizer,
    scheduler and the global RNG state (dropout)."""

    fit = staticmethod(loop.fit)
    backend = TorchBackend()
    checkpoints = checkpoints
    cli_module = "sesemi_torch.cli"


def test_supervised_baseline_draws_no_unlabeled_batch():
    config = apply_overrides(Config(), ["method.name=supervised", "train.batch_unlabeled=0", "train.batch_labeled=4"])
    spec = SpecSampler(np.arange(10), 50, config).spec(3)
    assert spec.unlabeled.shape == (0,) and spec.views == {}
    assert spec.labeled.shape == (4,)



def test_the_device_option_on_cpu_changes_nothing_but_the_record(tmp_path):
    config = tiny("train.steps=4", "train.eval_every=4", "train.log_every=2")
    default = loop.fit(config, tmp_path / "default", show_progress=False)
    explicit = loop.fit(config, tmp_path / "explicit", show_progress=False, device="cpu")
    losses = [[m["loss"] for m in RunDir(tmp_path / name).read_metrics() if "loss" in m]
              for name in ("default", "explicit")]
    assert len(losses[0]) == 2 and losses[0] == losses[1]
    assert explicit["final_test_accuracy"] == default["final_test_accuracy"]
    assert explicit["device"] == "cpu"
