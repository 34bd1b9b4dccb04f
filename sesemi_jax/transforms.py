"""Image transforms on uint8 NHWC batches, split into `sample_*` (random) and pure `apply_*`.

Random numbers differ across frameworks by design (docs/DESIGN.md section 5), so every random
transform draws its parameters with `sample_*` and applies them with a pure `apply_*`; the
parity tests feed this module and `sesemi_torch.transforms` the same numpy-drawn parameters.
Everything here is jit-compatible and vectorized over the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sesemi_common.stats import normalization_table
from sesemi_common.whitening import GCN_SCALE

# Views per proxy task, in target order: k quarter turns (k = 0..3), left-right flip, up-down flip.
PROXY_VIEWS = {"rotate_flip": 6, "rotation": 4}
PAD_MODES = ("reflect", "constant")


def _check_batch(images: jax.Array) -> None:
    if images.ndim != 4:
        raise ValueError(f"images of shape {images.shape} are not a batch: pass (N, H, W, C) NHWC")


def proxy_views(images: jax.Array, proxy: str = "rotate_flip") -> tuple[jax.Array, jax.Array]:
    """All proxy views of every image, image-major `[img0 t0..t5, img1 t0..t5, ...]`, and int32 targets."""
    if proxy not in PROXY_VIEWS:
        raise ValueError(f"unknown proxy '{proxy}': use one of {', '.join(PROXY_VIEWS)}")
    _check_batch(images)
    n, height, width, _ = images.shape
    if height != width:
        raise ValueError(f"proxy views need square images (quarter turns swap H and W), got {height}x{width}")
    num_views = PROXY_VIEWS[proxy]
    rotations = [jnp.rot90(images, k, axes=(1, 2)) for k in range(4)]
    flips = [images[:, :, ::-1], images[:, ::-1]]  # width axis, then height axis
    views = jnp.stack((rotations + flips)[:num_views], axis=1)  # (N, views, H, W, C)
    targets = jnp.tile(jnp.arange(num_views, dtype=jnp.int32), n)
    return views.reshape((n * num_views,) + images.shape[1:]), targets


def sample_crop_params(rng: jax.Array, n: int, max_offset: int) -> jax.Array:
    """int32 (n, 2) crop offsets (dy, dx), uniform in [0, 2 * max_offset]; max_offset is the shift."""
    return jax.random.randint(rng, (n, 2), 0, 2 * max_offset + 1, dtype=jnp.int32)


def apply_crop(images: jax.Array, offsets: jax.Array, padding: int, mode: str) -> jax.Array:
    """Pad H and W by `padding` (reflect or zero) and crop the original size at each image's offsets.

    Offsets (dy, dx) lie in [0, 2 * padding]; offset == padding is the identity. Traced offsets
    cannot be checked, and `lax.dynamic_slice` clamps out-of-range ones to the border.
    """
    if mode not in PAD_MODES:
        raise ValueError(f"unknown pad mode '{mode}': use 'reflect' (translate) or 'constant' (pad_crop)")
    _check_batch(images)
    _, height, width, channels = images.shape
    if mode == "reflect" and padding >= min(height, width):
        raise ValueError(f"reflect padding {padding} needs images larger than it, got {height}x{width}")
    if padding == 0:
        return images
    # jnp.pad's 'reflect' mirrors without repeating the edge pixel, as torch's reflect padding does.
    pad_width = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    padded = jnp.pad(images, pad_width, mode=mode)

    def crop_one(image: jax.Array, offset: jax.Array) -> jax.Array:
        start = (offset[0], offset[1], jnp.zeros((), offset.dtype))  # one index dtype, also under x64
        return jax.lax.dynamic_slice(image, start, (height, width, channels))

    return jax.vmap(crop_one)(padded, jnp.asarray(offsets, jnp.int32))


def sample_flip_params(rng: jax.Array, n: int) -> jax.Array:
    """bool (n,): flip image i left-right where True, each with probability 1/2."""
    return jax.random.bernoulli(rng, 0.5, (n,))


def apply_hflip(images: jax.Array, flags: jax.Array) -> jax.Array:
    """Flip the width axis of the images whose flag is True."""
    _check_batch(images)
    flags = jnp.asarray(flags, jnp.bool_)[:, None, None, None]
    return jnp.where(flags, images[:, :, ::-1], images)


def normalize(images: jax.Array, mean, std) -> jax.Array:
    """float32 `(x / 255 - mean) / std` per channel (last axis); mean and std on the 0..1 scale.

    mean and std are host values (numpy or concrete arrays): the 256 levels per channel are
    normalized once with numpy (`normalization_table`) and looked up, which makes the result
    bit-identical to PyTorch's. Inside a jitted function, pass the table to `lookup_normalized`.
    """
    if isinstance(mean, jax.core.Tracer) or isinstance(std, jax.core.Tracer):
        raise ValueError("normalize needs host mean and std, got traced arrays: inside jit, pass "
                         "sesemi_common.stats.normalization_table(mean, std) to lookup_normalized")
    return lookup_normalized(images, normalization_table(np.asarray(mean), np.asarray(std)))


def lookup_normalized(images: jax.Array, table: jax.Array) -> jax.Array:
    """Normalize uint8 NHWC images with a (C, 256) table from `normalization_table`."""
    channels = jnp.arange(table.shape[0])
    return jnp.asarray(table)[channels, images.astype(jnp.int32)]


def gcn_zca(images: jax.Array, zca_mean: jax.Array, zca_matrix: jax.Array) -> jax.Array:
    """float32 NHWC: global contrast normalization, then ZCA whitening, of uint8 NHWC images
    (`sesemi_common.whitening`; statistics flattened H, W, C). The matmul asks for full float32
    precision: on GPU/TPU the default may round its inputs to TF32/bfloat16."""
    _check_batch(images)
    x = images.reshape(images.shape[0], -1).astype(jnp.float32)
    centered = x - jnp.sum(x, axis=1, keepdims=True) / x.shape[1]  # the sum of uint8 levels is exact
    norm = jnp.sqrt(jnp.sum(centered * centered, axis=1, keepdims=True))
    gcn = centered * (GCN_SCALE / jnp.where(norm > 0, norm, 1.0))  # a constant image stays 0
    white = jnp.dot(gcn - zca_mean, zca_matrix, precision=jax.lax.Precision.HIGHEST)
    return white.reshape(images.shape)


def normalize_inputs(images: jax.Array, norm_table: jax.Array, zca: tuple[jax.Array, jax.Array] | None) -> jax.Array:
    """The trainer's one normalization: the per-channel table, or GCN + ZCA when the run has
    ZCA statistics (`augment.normalize=zca`); which one is fixed by `zca` being None or not."""
    return lookup_normalized(images, norm_table) if zca is None else gcn_zca(images, *zca)


def sample_noise_params(key: jax.Array, shape: tuple[int, ...], std: float) -> jax.Array:
    """float32 additive Gaussian noise of standard deviation `std` (the paper's input noise)."""
    return std * jax.random.normal(key, shape, jnp.float32)


def apply_noise(x: jax.Array, noise: jax.Array) -> jax.Array:
    """Normalized inputs plus the sampled noise: one float32 addition, exact across frameworks."""
    return x + noise
