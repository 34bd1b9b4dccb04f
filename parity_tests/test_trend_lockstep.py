"""Rung "trend", lockstep (issue 5): whole runs on the real CIFAR-10 fed the very same stream.

Same split, same initial weights (PyTorch's, converted to Flax), same batches and augmentation
parameters (drawn once with numpy), accuracy on the full 10,000 test images.

Finding: lockstep runs do not stay in lockstep, in either framework and in either precision. In
float32 the first step's loss agrees to 1e-7, the second's only to 1e-4, the third's to 3e-3:
every step a few of the ~4.5 M ReLU inputs fall within rounding of 0 and land on different
sides of the kink (parity_tests/test_step_parity.py), and training amplifies that. Two PyTorch
runs that differ only in memory layout (contiguous against channels_last, so only summation
order differs) diverge just as fast. Measured on this config: at step 50 PyTorch and PyTorch
channels_last differed by 5.3 points while JAX was 0.2 from PyTorch; at step 100 the same pair
differed by 0.7 while JAX was 2.3 from PyTorch. Float64 does not cure it: a float64 JAX run and
a float64 PyTorch run from the same weights and stream were 4.2 points apart at step 50 (and
the float64 JAX step ran at 11 images/s against PyTorch's 116-135). A fixed 1.5-point bound at
every evaluation therefore tests rounding noise, and one noise sample per evaluation
underestimates it.

So the test measures the noise of this very run: two PyTorch references whose only difference
from the PyTorch run is rounding (channels_last; the initial weights moved by one float32 ulp).
Measured: their gaps to PyTorch reached 5.3 and 4.2 points at step 50 and 0.6 and 2.2 at step
200, while JAX's were 0.2 and 0.05 (one more reference, both changes, gave up to 4.6; left out
to keep the test under 8 minutes: 477 s with three, one fewer run now). The noise is the
largest gap between a reference and the PyTorch run at any evaluation, and JAX's gap to PyTorch
may exceed it by at most 1.5 points at every evaluation. The implementations themselves are
compared tightly by the step and K-step rungs.
"""

from pathlib import Path

import pytest
import torch

from sesemi_common.config import Config, apply_overrides
from sesemi_common.datasets import load_dataset
from sesemi_common.runs import RunDir
from sesemi_common.sampling import HostStream
from sesemi_common.splits import labeled_indices
from sesemi_jax import convert as jax_convert
from sesemi_jax import loop as jax_loop
from sesemi_torch import loop as torch_loop
from sesemi_torch import models as torch_models

CIFAR10_JPEG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg"
MAX_GAP_POINTS = 1.5
# Sized to finish in under 8 minutes on 2 CPU cores (3 PyTorch runs + 1 JAX run: 308 s measured).
LOCKSTEP = ["data.dataset=imagefolder", f"data.root={CIFAR10_JPEG}", "data.n_labels=1000",
            "model.backbone=resnet20", "method.name=sesemi", "train.steps=200", "train.batch_labeled=32",
            "train.batch_unlabeled=8", "train.log_every=50", "train.eval_every=50",
            "train.checkpoint_every=200", "train.eval_batch_size=1000"]
EVALS = [50, 100, 150, 200]


def _curve(run_dir: Path) -> dict[int, float]:
    return {m["step"]: 100 * m["test_accuracy"] for m in RunDir(run_dir).read_metrics() if "test_accuracy" in m}


@pytest.mark.slow
@pytest.mark.realdata
def test_lockstep_accuracy_curves_agree(tmp_path):
    if not CIFAR10_JPEG.is_dir():
        pytest.skip(f"real CIFAR-10 not found at {CIFAR10_JPEG}")
    config = apply_overrides(Config(), LOCKSTEP)
    dataset = load_dataset(config.data)
    labeled = labeled_indices(dataset.train_labels, config.data.n_labels, 10, config.data.split_seed)
    stream = HostStream(labeled, len(dataset.train_images), config.train.batch_labeled,
                        config.train.batch_unlabeled, config.augment, seed=config.train.seed)
    torch.manual_seed(config.train.seed)
    initial = torch_models.make_model("resnet20", 10, {"self": 6}, 0.0).state_dict()
    initial_numpy = {k: v.numpy().copy() for k, v in initial.items()}

    runs = {"torch": (initial, False), "torch_cl": (initial, True),
            "torch_ulp": (_nudged_by_one_ulp(initial), False)}
    for name, (weights, channels_last) in runs.items():
        torch_loop.fit(config, tmp_path / name, dataset=dataset, initial_state_dict=weights,
                       stream=stream, show_progress=False, channels_last=channels_last)
    jax_loop.fit(config, tmp_path / "jax", dataset=dataset, stream=stream, show_progress=False,
                 initial_variables=jax_convert.variables_from_state_dict(initial_numpy, "resnet20"))

    curves = {name: _curve(tmp_path / name) for name in [*runs, "jax"]}
    torch_curve, jax_curve = curves["torch"], curves["jax"]
    references = [curves[name] for name in runs if name != "torch"]
    print("\nstep  torch acc %  jax acc %  jax-torch  | references-torch (rounding noise): cl, ulp")
    for step in EVALS:
        print(f"{step:4d}  {torch_curve[step]:10.2f}  {jax_curve[step]:9.2f}  {jax_curve[step] - torch_curve[step]:+9.2f}"
              "  | " + "  ".join(f"{ref[step] - torch_curve[step]:+6.2f}" for ref in references))
    assert all(list(curve) == EVALS for curve in curves.values())
    assert min(torch_curve[200], jax_curve[200]) > 20.0, "SESEMI should clearly beat chance (10%) after 200 steps"
    noise = max(abs(ref[step] - torch_curve[step]) for ref in references for step in EVALS)
    for step in EVALS:
        gap = abs(jax_curve[step] - torch_curve[step])
        assert gap <= noise + MAX_GAP_POINTS, (step, gap, noise, curves)


def _nudged_by_one_ulp(state_dict: dict) -> dict:
    """The same weights, each float moved one float32 ulp up: a perturbation at rounding level."""
    return {k: torch.nextafter(v, torch.full_like(v, float("inf"))) if v.is_floating_point() else v.clone()
            for k, v in state_dict.items()}
