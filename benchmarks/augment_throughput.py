"""Throughput of one step's augmentation pipeline, uint8 in, normalized float32 out, JAX vs PyTorch.

    python benchmarks/augment_throughput.py [--repeats 7] [--iters 20] [--torch-threads N] [--json PATH]

One step (DESIGN.md section 2): a labeled batch of 96 images gets the translation by up to
2 px (reflect), a random horizontal flip and normalization; an unlabeled batch of 16 gets the
same translation, is expanded into its 6 proxy views (96 images) and normalized. JAX runs the
whole step as one jitted function (timed with `block_until_ready`); PyTorch runs
`sesemi_torch.transforms` on tensors already in memory (no DataLoader). After a warm-up,
each repetition times `--iters` steps of each framework back to back, so that load from other
processes hits both alike; the table gives medians over the repetitions.

On a CPU shared with other busy processes, torch's intra-op threads wait for each other at
every parallel op (a 2-core machine at load 6 showed 15-30 ms per small op instead of 0.1-1 ms);
`--torch-threads 1` measures the same work without that wait.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sesemi_common.config import AugmentConfig  # noqa: E402
from sesemi_jax import transforms as jt  # noqa: E402
from sesemi_torch import transforms as tt  # noqa: E402

MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], np.float32)


def jax_step(augment: AugmentConfig):
    @jax.jit
    def step(key, labeled, unlabeled):
        sup_key, self_key = jax.random.split(key)
        x_sup = jt.normalize(jt.augment_supervised(sup_key, labeled, augment), MEAN, STD)
        views, targets = jt.proxy_views(jt.augment_self(self_key, unlabeled, augment))
        return x_sup, jt.normalize(views, MEAN, STD), targets

    def run(i, labeled, unlabeled):
        return jax.block_until_ready(step(jax.random.PRNGKey(i), labeled, unlabeled))

    return run


def torch_step(augment: AugmentConfig):
    generator = torch.Generator().manual_seed(0)

    @torch.no_grad()
    def run(i, labeled, unlabeled):
        x_sup = tt.normalize(tt.augment_supervised(generator, labeled, augment), MEAN, STD)
        views, targets = tt.proxy_views(tt.augment_self(generator, unlabeled, augment))
        return x_sup, tt.normalize(views, MEAN, STD), targets

    return run


def time_steps(run, inputs, iters: int) -> float:
    started = time.perf_counter()
    for i in range(iters):
        run(i, *inputs)
    return (time.perf_counter() - started) / iters


def measure(batch_labeled: int, batch_unlabeled: int, repeats: int, iters: int, warmup: int) -> list[dict]:
    rng = np.random.default_rng(0)
    labeled = rng.integers(0, 256, (batch_labeled, 32, 32, 3), dtype=np.uint8)
    unlabeled = rng.integers(0, 256, (batch_unlabeled, 32, 32, 3), dtype=np.uint8)
    augment = AugmentConfig()  # translate 2 px (reflect), hflip on the supervised branch
    frameworks = {
        "jax (jit)": (jax_step(augment), (jax.device_put(labeled), jax.device_put(unlabeled))),
        "pytorch (eager)": (torch_step(augment), (torch.from_numpy(labeled).permute(0, 3, 1, 2).contiguous(),
                                                   torch.from_numpy(unlabeled).permute(0, 3, 1, 2).contiguous())),
    }
    for run, inputs in frameworks.values():
        time_steps(run, inputs, warmup)
    seconds = {name: [] for name in frameworks}
    for _ in range(repeats):
        for name, (run, inputs) in frameworks.items():
            seconds[name].append(time_steps(run, inputs, iters))
    images_in = batch_labeled + batch_unlabeled
    images_out = batch_labeled + 6 * batch_unlabeled
    rows = []
    for name, ts in seconds.items():
        step_s = statistics.median(ts)
        rows.append({"framework": name, "step_ms": 1e3 * step_s, "step_ms_all": [1e3 * t for t in ts],
                     "input_images_per_s": images_in / step_s, "output_images_per_s": images_out / step_s})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| framework | ms / step (median) | input images/s | output images/s |", "|---|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['framework']} | {row['step_ms']:.3f} | {row['input_images_per_s']:,.0f} "
                     f"| {row['output_images_per_s']:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-labeled", type=int, default=96)
    parser.add_argument("--batch-unlabeled", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions (median reported), at least 5")
    parser.add_argument("--iters", type=int, default=20, help="steps per repetition")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (JAX compiles here)")
    parser.add_argument("--torch-threads", type=int, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--json", help="also write the rows and the setting to this file")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error(f"--repeats {args.repeats} is too few for a median: use 5 or more")
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    rows = measure(args.batch_labeled, args.batch_unlabeled, args.repeats, args.iters, args.warmup)
    setting = {"jax": jax.__version__, "jax_backend": jax.default_backend(), "torch": torch.__version__,
               "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
               "load_average_1min_after": os.getloadavg()[0]}
    print(f"steps: labeled {args.batch_labeled} (translate+flip+normalize), unlabeled {args.batch_unlabeled} "
          f"-> {6 * args.batch_unlabeled} proxy views (translate+normalize); {args.repeats} x {args.iters} steps")
    print(", ".join(f"{k}={v}" for k, v in setting.items()))
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "setting": setting, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
