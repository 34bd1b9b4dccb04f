"""Re-test the YNNPACK choice of `sesemi_jax.train.compiler_options()` after a jaxlib upgrade.

    python benchmarks/ynnpack_check.py [--batch 128] [--size 32] [--channels 16] [--repeats 7]

Times the weight gradient of one 3x3 convolution (the op jaxlib 0.10's YNNPACK fusions ran
7.6x slower than XLA's Eigen kernels: 149 ms against 19.6 ms for 32x32 16->16 on 128 images, one
core) jitted with jaxlib's defaults and with the trainer's options, interleaved, and checks the
two compute the same gradient. If the trainer's options stop being faster, revisit them.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

import timing  # benchmarks/timing.py: this script's folder is on sys.path
from sesemi_jax.train import compiler_options


def weight_gradient(x: jax.Array, kernel: jax.Array) -> jax.Array:
    def loss(k):
        y = jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(y * y)
    return jax.grad(loss)(kernel)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(args.batch, args.size, args.size, args.channels)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 3, args.channels, args.channels)), jnp.float32)
    variants = {"jaxlib defaults": jax.jit(weight_gradient),
                "compiler_options()": jax.jit(weight_gradient, compiler_options=compiler_options())}
    runs = {name: (lambda n, f=f: [jax.block_until_ready(f(x, kernel)) for _ in range(n)])
            for name, f in variants.items()}
    seconds = timing.interleaved(runs, args.repeats, steps=3, warmup=2)
    a, b = variants["jaxlib defaults"](x, kernel), variants["compiler_options()"](x, kernel)
    gap = float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))  # relative to the gradient's scale
    medians = {name: timing.median_ms(s) for name, s in seconds.items()}
    print(f"jax {jax.__version__}, {jax.default_backend()}, options {compiler_options()}, load {os.getloadavg()[0]:.1f}")
    for name, ms in medians.items():
        print(f"  {name:20s} {ms:8.1f} ms")
    print(f"  speed-up {medians['jaxlib defaults'] / medians['compiler_options()']:.2f}x, "
          f"largest gradient difference {gap:.2g} of its scale")
    return medians


if __name__ == "__main__":
    main()
