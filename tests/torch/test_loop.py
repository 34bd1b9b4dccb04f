import numpy as np
import pytest
import torch

from sesemi_common import run_weights
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


def test_compile_trains_and_saves_the_plain_model(tmp_path, monkeypatch):
    """`--compile` on tiny digits: the first step's loss is eager's, and checkpoints and weights
    files carry the model's own names (no `_orig_mod.`). Inductor's C++ build of this step took
    2.5 minutes on the loaded 2-core machine (cold cache), so the test compiles with the
    aot_eager backend: the same Dynamo capture and AOTAutograd graphs, run by eager kernels."""
    compile_calls = []
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model: compile_calls.append(model) or
                        real_compile(model, backend="aot_eager"))
    config = tiny("train.steps=3", "train.log_every=1", "train.eval_every=3", "train.checkpoint_every=3")
    loop.fit(config, tmp_path / "compiled", show_progress=False, compile_model=True)
    assert len(compile_calls) == 1
    loop.fit(config, tmp_path / "eager", show_progress=False)
    runs = {name: RunDir(tmp_path / name) for name in ("compiled", "eager")}
    losses = {name: [m["loss"] for m in run.read_metrics() if "loss" in m] for name, run in runs.items()}
    assert len(losses["compiled"]) == 3 and np.isfinite(losses["compiled"]).all()
    assert losses["compiled"][0] == pytest.approx(losses["eager"][0], rel=1e-5)
    saved = {name: checkpoints.restore(run.checkpoints)["model"] for name, run in runs.items()}
    assert list(saved["compiled"]) == list(saved["eager"])
    weights = {name: run_weights.read(run_weights.final_file(run))[0] for name, run in runs.items()}
    assert weights["compiled"].keys() == weights["eager"].keys()
