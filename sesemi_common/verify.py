"""`sesemi verify RUN_DIR`: a run's model evaluated in JAX and in PyTorch on its test set.

Both frameworks read the run's weights file (sesemi_common/run_weights.py) through their
converter and classify every test image. The verdict:

- logits: max |jax - torch| <= RTOL * max(1, max |logit|). The model rung of the parity ladder
  (docs/DESIGN.md section 5) bounds eval logits by atol 1e-5 at unit-scale weights and logits;
  float32 rounding grows with the magnitude of what is summed, so for a trained model, whose
  logits reach tens, the same 1e-5 is read relative to the largest logit. (Measured values:
  docs/frameworks.md.)
- labels: the predicted labels agree on every image, except where the two labels' logits are
  within 2 * that bound of each other in both frameworks (a tie that rounding may break either way).
"""

from __future__ import annotations

import contextlib
import importlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import commands
from .config import replace_dotted
from .datasets import load_dataset
from .runs import RunDir

RTOL = 1e-5  # the model rung's eval-logit atol, relative to max(1, max |logit|)
FRAMEWORKS = ("jax", "torch")
_BACKENDS = {"jax": ("sesemi_jax.cli", "JaxBackend"), "torch": ("sesemi_torch.cli", "TorchBackend")}


def compare(logits: dict[str, np.ndarray], labels: np.ndarray, rtol: float = RTOL) -> dict[str, Any]:
    """The verdict on two frameworks' logits of the same images (see the module doc)."""
    a, b = (np.asarray(logits[name], np.float64) for name in FRAMEWORKS)
    scale = max(1.0, float(np.abs(a).max()), float(np.abs(b).max()))
    bound = rtol * scale
    diff = float(np.abs(a - b).max())
    pred_a, pred_b = a.argmax(-1), b.argmax(-1)
    differ = np.flatnonzero(pred_a != pred_b)
    gap_a = a[differ, pred_a[differ]] - a[differ, pred_b[differ]]  # how far each framework is from a tie
    gap_b = b[differ, pred_b[differ]] - b[differ, pred_a[differ]]
    unexplained = int(np.sum((gap_a > 2 * bound) | (gap_b > 2 * bound)))
    return {"test_images": len(labels),
            "test_accuracy": {name: float(np.mean(p == labels)) for name, p in zip(FRAMEWORKS, (pred_a, pred_b))},
            "label_agreement": float(np.mean(pred_a == pred_b)), "labels_differ": int(len(differ)),
            "labels_differ_beyond_ties": unexplained,
            "max_abs_logit_diff": diff, "max_abs_logit": scale, "relative_logit_diff": diff / scale,
            "rtol": rtol, "bound": bound, "passed": bool(diff <= bound and unexplained == 0)}


def _backend(framework: str):
    module, name = _BACKENDS[framework]
    return getattr(importlib.import_module(module), name)()


def _precise(framework: str):
    """JAX may run float32 convolutions in bfloat16 passes or TF32 on an accelerator; not here."""
    if framework == "jax":
        import jax
        return jax.default_matmul_precision("highest")
    return contextlib.nullcontext()


def verify(run_dir: str | Path, step: int | None = None) -> dict[str, Any]:
    """Evaluate the run's model (the final one, or checkpoint `step`) in both frameworks; write verify.json."""
    result = evaluate(run_dir, step)
    write(result)
    return result


def write(result: dict[str, Any]) -> None:
    """verify.json in the run directory (strict JSON, written atomically)."""
    RunDir(result["run_dir"]).write_verification(result)


def evaluate(run_dir: str | Path, step: int | None = None) -> dict[str, Any]:
    """The verdict on the run's model (the final one, or checkpoint `step`), written nowhere.
    A model with non-finite logits is refused (commands.NonFiniteOutputError), not compared."""
    started = time.perf_counter()
    run = commands.run_to_read(str(run_dir), "sesemi-<framework>")
    # The verdict reads logits (the model rung), so the run's test-time augmentation is left out.
    config = replace_dotted(run.read_config(), {"eval.tta": 1})
    dataset = load_dataset(config.data)
    logits, origin = {}, {}
    for framework in FRAMEWORKS:
        classify, origin = commands.load_classifier(_backend(framework), run, config, step)
        with _precise(framework):
            logits[framework] = classify(dataset.test_images)
    result = {"run_dir": str(run.path), "trained_by": origin["trained_by"], "step": origin["step"],
              "variables": origin["variables"], "weights": origin["weights"],
              **compare(logits, dataset.test_labels), "wall_time_s": time.perf_counter() - started}
    return result


HEADER = ("| run | trained by | step | jax test acc | torch test acc | labels agree | max abs logit diff "
          "| bound | verdict |\n|---|---|---|---|---|---|---|---|---|")


def row(result: dict[str, Any]) -> str:
    acc = result["test_accuracy"]
    return (f"| {Path(result['run_dir']).name} | {result['trained_by']} | {result['step']} | "
            f"{100 * acc['jax']:.2f}% | {100 * acc['torch']:.2f}% | "
            f"{100 * result['label_agreement']:.2f}% ({result['test_images'] - result['labels_differ']}/"
            f"{result['test_images']}) | {result['max_abs_logit_diff']:.2e} | {result['bound']:.2e} | "
            f"{verdict(result)} |")


def verdict(result: dict[str, Any]) -> str:
    return "PASS" if result["passed"] else "FAIL"


def table(result: dict[str, Any]) -> str:
    return f"{HEADER}\n{row(result)}"
