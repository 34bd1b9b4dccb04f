"""Eval-mode forward throughput of the CIFAR backbones, JAX (jit) vs PyTorch (no_grad, eval).

    python benchmarks/forward_throughput.py [--backbones resnet20,wrn28_2] [--batch 128]
                                            [--repeats 7] [--iters 5] [--json PATH]

The network is SesemiNet with its supervised head (10 classes), as used at evaluation, on
float32 32x32x3 inputs. Both frameworks run the same weights: the PyTorch model's state dict
is converted with sesemi_jax.convert, so no JAX init is compiled. JAX is timed with
`block_until_ready` after a jitted apply (compiled during the warm-up); PyTorch runs
`model.eval()` under `torch.no_grad()` in NCHW. After the warm-up, each repetition times
`--iters` batches of each framework back to back, so load from other processes hits both
alike; the table gives medians over the repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import jax
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import timing  # noqa: E402  (benchmarks/timing.py: this script's folder is on sys.path)
from sesemi_jax import convert as jconvert  # noqa: E402
from sesemi_jax import models as jmodels  # noqa: E402
from sesemi_torch import models as tmodels  # noqa: E402

NUM_CLASSES = 10


def forward_fns(backbone: str, batch: int) -> dict:
    """{framework: (run, input)} with the same weights and the same images in both."""
    torch.manual_seed(0)
    model = tmodels.make_model(backbone, NUM_CLASSES).eval()
    state = {key: value.numpy() for key, value in model.state_dict().items()}
    flax_model = jmodels.make_model(backbone, NUM_CLASSES)
    variables = jax.device_put(jconvert.variables_from_state_dict(state, backbone))
    apply = jax.jit(lambda v, x: flax_model.apply(v, x, train=False)[0]["sup"])

    def run_jax(x):
        return jax.block_until_ready(apply(variables, x))

    @torch.no_grad()
    def run_torch(x):
        return model(x)[0]["sup"]

    x = np.random.default_rng(0).normal(size=(batch, 32, 32, 3)).astype(np.float32)
    return {"jax (jit)": (run_jax, jax.device_put(x)),
            "pytorch (eager)": (run_torch, torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))}


def measure(backbone: str, batch: int, repeats: int, iters: int, warmup: int) -> list[dict]:
    frameworks = forward_fns(backbone, batch)
    runs = {name: (lambda n, run=run, x=x: [run(x) for _ in range(n)]) for name, (run, x) in frameworks.items()}
    seconds = timing.interleaved(runs, repeats, iters, warmup)
    rows = []
    for name, ts in seconds.items():
        batch_s = statistics.median(ts)
        rows.append({"backbone": backbone, "framework": name, "batch": batch, "batch_ms": 1e3 * batch_s,
                     "batch_ms_all": [1e3 * t for t in ts], "images_per_s": batch / batch_s})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| backbone | framework | ms / batch (median) | images/s | ms / batch (min-max) |",
             "|---|---|---:|---:|---:|"]
    for row in rows:
        spread = f"{min(row['batch_ms_all']):.1f}-{max(row['batch_ms_all']):.1f}"
        lines.append(f"| {row['backbone']} | {row['framework']} | {row['batch_ms']:.1f} "
                     f"| {row['images_per_s']:,.0f} | {spread} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="resnet20,wrn28_2", help="comma-separated backbone names")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions (median reported), at least 5")
    parser.add_argument("--iters", type=int, default=5, help="batches per repetition")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first (JAX compiles here)")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="torch.set_num_threads (0: torch's default, one per core)")
    parser.add_argument("--json", help="also write the rows and the setting to this file")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error(f"--repeats {args.repeats} is too few for a median: use 5 or more")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    backbones = [name.strip() for name in args.backbones.split(",") if name.strip()]
    for name in backbones:
        if name not in tmodels.BACKBONES:
            parser.error(f"--backbones: unknown backbone '{name}': choose from {', '.join(tmodels.BACKBONES)}")
    load_before = os.getloadavg()[0]
    rows = [row for name in backbones for row in measure(name, args.batch, args.repeats, args.iters, args.warmup)]
    setting = {"jax": jax.__version__, "jax_backend": jax.default_backend(), "torch": torch.__version__,
               "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
               "load_average_1min_before": load_before, "load_average_1min_after": os.getloadavg()[0]}
    print(f"eval forward, batch {args.batch} x 32x32x3 float32, {args.repeats} x {args.iters} batches "
          f"after {args.warmup} warm-up batches")
    print(", ".join(f"{k}={v}" for k, v in setting.items()))
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "setting": setting, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
