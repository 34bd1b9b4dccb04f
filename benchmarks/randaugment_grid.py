"""Draw every RandAugment op (and Cutout) at three magnitudes, JAX beside PyTorch, on a few
CIFAR-10 test images: docs/randaugment.png. A look at what FixMatch's strong view does, and a
visual check that the twins agree (tests/…/test_randaugment*.py prove it).

    python benchmarks/randaugment_grid.py [--data /work/shared/data/cifar10-jpeg] [--out docs/randaugment.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from sesemi_common import randaugment as spec  # noqa: E402
from sesemi_common.datasets import read_images  # noqa: E402
from sesemi_jax import randaugment as jr  # noqa: E402
from sesemi_torch import randaugment as tr  # noqa: E402

MAGNITUDES = (0.0, 0.5, 0.999)
CLASSES = ("automobile", "bird", "ship")


def grid_rows(images: np.ndarray):
    """(label, JAX images, PyTorch images) per op and magnitude, and Cutout last."""
    as_torch = torch.from_numpy(images).permute(0, 3, 1, 2)
    for name in spec.OPS:
        for m in MAGNITUDES:
            ms = np.full(len(images), m, np.float32)
            yield (f"{name} {m:.1f}", np.asarray(jax.jit(jr.apply_op, static_argnums=1)(jnp.asarray(images), name, ms)),
                   tr.apply_op(as_torch, name, torch.from_numpy(ms)).permute(0, 2, 3, 1).numpy())
    cut = np.tile(np.array([[0.5, 0.5, 0.999]], np.float32), (len(images), 1))  # the largest square, centred
    yield ("cutout", np.asarray(jr.cutout(jnp.asarray(images), cut)),
           tr.cutout(as_torch, torch.from_numpy(cut)).permute(0, 2, 3, 1).numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data/cifar10-jpeg")
    parser.add_argument("--out", default="docs/randaugment.png")
    args = parser.parse_args()
    _, images = read_images([Path(args.data, "test", c, "0000.jpg") for c in CLASSES], 32)
    rows = list(grid_rows(images))
    n = len(images)
    per_row = 3  # rows of the figure: three (op, magnitude) entries side by side
    fig_rows = -(-len(rows) // per_row)
    fig, axes = plt.subplots(fig_rows, per_row, figsize=(per_row * 2 * n * 0.42 + 1, fig_rows * 0.5))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, j, t) in zip(axes.flat, rows):
        gap = np.full((32, 4, 3), 255, np.uint8)
        strip = np.concatenate([*j, gap, *t], axis=1)  # JAX images | PyTorch images
        ax.imshow(strip, interpolation="nearest")
        ax.set_title(label, fontsize=6, pad=1)
        worst = int(np.abs(j.astype(int) - t.astype(int)).max())
        if worst:
            ax.set_title(f"{label} (max diff {worst})", fontsize=6, pad=1)
    fig.suptitle("RandAugment ops at magnitudes 0, 0.5, 1: JAX (left of each gap) | PyTorch (right)", fontsize=7)
    fig.tight_layout(pad=0.2, h_pad=0.3, w_pad=0.3, rect=(0, 0, 1, 0.975))
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
