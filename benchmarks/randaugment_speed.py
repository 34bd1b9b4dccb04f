"""Time FixMatch's strong augmentation alone (RandAugment, 2 ops, then Cutout) per 1,000 32x32
images: JAX jitted on a batch, the torchvision twin (sesemi_torch.randaugment) on a batched
uint8 tensor, and a PIL-per-image pipeline as USB runs it (torchvision v2 RandAugment on PIL
images, then a cutout of up to half the side). Median of `--repeats` timings; prints the load
average, since the machine may be shared.

    python benchmarks/randaugment_speed.py [--n 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np
import PIL.Image
import torch
from torchvision.transforms import v2

from sesemi_common import randaugment as spec
from sesemi_jax import randaugment as jr
from sesemi_torch import randaugment as tr


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n, 32, 32, 3), dtype=np.uint8)
    ops, magnitudes, cutout = spec.sample_numpy(rng, args.n)

    apply = jax.jit(jr.apply)
    device_images = jax.device_put(images)
    apply(device_images, ops, magnitudes, cutout).block_until_ready()  # compile
    jax_s = _median_seconds(lambda: apply(device_images, ops, magnitudes, cutout).block_until_ready(), args.repeats)

    nchw = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    t_params = [torch.from_numpy(a) for a in (ops, magnitudes, cutout)]
    twin_s = _median_seconds(lambda: tr.apply(nchw, *t_params), args.repeats)

    pil_images = [PIL.Image.fromarray(image) for image in images]
    randaugment = v2.RandAugment(num_ops=2, fill=spec.FILL)
    erase = v2.Compose([v2.PILToTensor(), v2.RandomErasing(p=1.0, scale=(0.0, 0.25), ratio=(1.0, 1.0), value=spec.FILL)])
    pil_s = _median_seconds(lambda: [erase(randaugment(image)) for image in pil_images], args.repeats)

    per_1000 = 1000 / args.n
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, {os.cpu_count()} CPUs, "
          f"jax {jax.default_backend()}, torch threads {torch.get_num_threads()}")
    print("| pipeline | ms per 1,000 images |\n|---|---|")
    print(f"| JAX, jitted, one batch ({jax.default_backend()}) | {1000 * jax_s * per_1000:.1f} |")
    print(f"| torchvision twin, batched uint8 tensor (a loop over images) | {1000 * twin_s * per_1000:.1f} |")
    print(f"| torchvision v2 RandAugment on PIL images, one by one (USB) | {1000 * pil_s * per_1000:.1f} |")


if __name__ == "__main__":
    main()
