"""RandAugment and Cutout on uint8 NHWC batches, on the device (FixMatch's strong augmentation).

The ops, their magnitude ranges and the parameter layout are in `sesemi_common.randaugment`.
Every op here is a pure function of the images and one float32 magnitude per image, vectorized
over the batch and jittable, and computes what `torchvision.transforms.v2.functional` computes
on a uint8 tensor (the twin, `sesemi_torch.randaugment`, calls it): the same float32 formulas,
truncation to uint8 where torchvision casts, rounding half to even where it rounds. Not dm-pix:
its contrast blends with each channel's own mean and its sharpness has no 13-weight kernel,
where torchvision (and PIL) use the grayscale mean and the 1-1-1/1-5-1/1-1-1 kernel with the
border kept.

A layer runs every op on the whole batch and each image keeps the one it drew: 14 cheap ops
on small images cost less on an accelerator than a per-image branch would.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sesemi_common import randaugment as spec

_F32 = jnp.float32


def sample_ops(key: jax.Array, n: int) -> jax.Array:
    return jax.random.randint(key, (n, spec.NUM_LAYERS), 0, len(spec.OPS), dtype=jnp.int32)


def sample_magnitudes(key: jax.Array, n: int) -> jax.Array:
    return jax.random.uniform(key, (n, spec.NUM_LAYERS), _F32)


def sample_cutout(key: jax.Array, n: int) -> jax.Array:
    return jax.random.uniform(key, (n, 3), _F32)


# The registry's view-parameter kinds (sesemi_common.methods.ViewParam) drawn here.
SAMPLERS = {"randaugment_ops": sample_ops, "randaugment_magnitudes": sample_magnitudes, "cutout": sample_cutout}


def sample_params(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(ops int32 (n, 2), magnitudes float32 (n, 2) in [0, 1), cutout float32 (n, 3) in [0, 1))."""
    ops_key, magnitude_key, cutout_key = jax.random.split(key, 3)
    return sample_ops(ops_key, n), sample_magnitudes(magnitude_key, n), sample_cutout(cutout_key, n)


def apply(images: jax.Array, ops: jax.Array, magnitudes: jax.Array, cutout_params: jax.Array) -> jax.Array:
    """Both drawn ops of each image, in order, then its Cutout."""
    for layer in range(ops.shape[1]):
        images = apply_layer(images, ops[:, layer], magnitudes[:, layer])
    return cutout(images, cutout_params)


def apply_layer(images: jax.Array, ops: jax.Array, magnitudes: jax.Array) -> jax.Array:
    """Op `ops[i]` with magnitude `magnitudes[i]` on image i."""
    candidates = jnp.stack([OP_FUNCTIONS[name](images, magnitudes) for name in spec.OPS])  # (ops, N, H, W, C)
    return jnp.take_along_axis(candidates, ops[None, :, None, None, None], axis=0)[0]


def apply_op(images: jax.Array, name: str, magnitudes: jax.Array) -> jax.Array:
    """One op on every image, with each image's magnitude (the unit and parity tests' entry)."""
    return OP_FUNCTIONS[name](images, jnp.asarray(magnitudes, _F32))


# -- magnitude to argument (sesemi_common.randaugment's table), float32 -----------------------

def enhance_factor(m):
    return spec.ENHANCE_MIN + spec.ENHANCE_SPAN * m


def posterize_bits(m):
    return 8 - jnp.minimum(jnp.floor(spec.POSTERIZE_STEPS * m), 8 - spec.MIN_POSTERIZE_BITS).astype(jnp.int32)


def solarize_threshold(m):
    return jnp.minimum(jnp.floor(256 * (1 - m)), 255).astype(jnp.int32)


def signed(m, largest):
    """`largest * (2m - 1)`: m in [0, 1) spans [-largest, largest)."""
    return largest * (2 * m - 1)


def translate_pixels(m, size: int):
    return jnp.floor(signed(m, spec.MAX_TRANSLATE) * size + 0.5).astype(jnp.int32)


# -- ops ---------------------------------------------------------------------------------------

def _per_image(x):
    return jnp.asarray(x)[:, None, None, None]


def _to_uint8(x):
    """torchvision's `.clamp_(0, 255).to(torch.uint8)`: clamp, then truncate toward zero."""
    return jnp.clip(x, 0, 255).astype(jnp.uint8)


def _blend(image, other, ratio):
    """torchvision's `_blend`: `image * ratio + other * (1 - ratio)` in float32, clamped, truncated."""
    ratio = _per_image(ratio)
    return _to_uint8(image.astype(_F32) * ratio + other * (1 - ratio))


def _grayscale_floor(images):
    """float32 (N, H, W, 1) `floor(0.2989 r + 0.587 g + 0.114 b)`, as torchvision's saturation and contrast use."""
    x = images.astype(_F32)
    return jnp.floor(x[..., 0:1] * 0.2989 + x[..., 1:2] * 0.587 + x[..., 2:3] * 0.114)


def identity(images, m):
    return images


def autocontrast(images, m):
    """Stretch each channel to 0..255: `(x - min) / ((max - min) / 255)`; a flat channel stays."""
    x = images.astype(_F32)
    low, high = x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
    flat = high == low
    inv_scale = jnp.where(flat, 1.0, (high - low) * _F32(1.0 / 255))
    # XLA turns a division by a broadcast value into a multiplication by its reciprocal, one more
    # rounding that moved 33 of 196,608 pixels by a level; the barrier keeps torch's true division.
    inv_scale = jax.lax.optimization_barrier(jnp.broadcast_to(inv_scale, x.shape))
    return _to_uint8((x - jnp.where(flat, 0.0, low)) / inv_scale)


def _equalize_channel(levels):
    """PIL's equalization of one channel's flat int32 levels (torchvision's `equalize_image`)."""
    hist = jnp.bincount(levels, length=256)
    cumulative = jnp.cumsum(hist)
    # The image's largest level is the first at which the cumulative count peaks.
    num_non_max = levels.shape[0] - hist[jnp.argmax(cumulative)]
    step = num_non_max // 255
    lut = jnp.clip((cumulative[:-1] + step // 2) // jnp.maximum(step, 1), 0, 255)
    lut = jnp.concatenate([jnp.zeros(1, lut.dtype), lut])
    return jnp.where(step != 0, lut[levels], levels)


def equalize(images, m):
    n, height, width, channels = images.shape
    levels = images.reshape(n, height * width, channels).transpose(0, 2, 1).astype(jnp.int32)
    out = jax.vmap(jax.vmap(_equalize_channel))(levels)
    return out.transpose(0, 2, 1).reshape(images.shape).astype(jnp.uint8)


def solarize(images, m):
    threshold = _per_image(solarize_threshold(m))
    return jnp.where(images >= threshold, 255 - images, images)


def posterize(images, m):
    mask = (255 << (8 - _per_image(posterize_bits(m)))) & 255
    return images & mask.astype(jnp.uint8)


def color(images, m):
    return _blend(images, _grayscale_floor(images), enhance_factor(m))


def contrast(images, m):
    return _blend(images, _grayscale_floor(images).mean(axis=(1, 2, 3), keepdims=True), enhance_factor(m))


def brightness(images, m):
    return _to_uint8(images.astype(_F32) * _per_image(enhance_factor(m)))


def sharpness(images, m):
    """Blend with the 3x3 smoothing (1s around a 5, over 13, rounded) on the interior; the border stays."""
    x = images.astype(_F32)
    _, height, width, _ = x.shape
    a, b = _F32(1.0 / 13.0), _F32(5.0 / 13.0)
    window = lambda dy, dx: x[:, dy:dy + height - 2, dx:dx + width - 2]  # noqa: E731
    blurred = jnp.round(sum(window(dy, dx) * (b if (dy, dx) == (1, 1) else a) for dy in range(3) for dx in range(3)))
    interior = x[:, 1:-1, 1:-1]
    # torchvision: interior + (1 - factor) * (blurred - interior), the same blend rearranged.
    sharpened = interior + _per_image(1 - enhance_factor(m)) * (blurred - interior)
    return _to_uint8(x.at[:, 1:-1, 1:-1].set(sharpened))


def affine_nearest(images, inverse):
    """Resample with per-image inverse affine maps `inverse` (N, 6): output pixel (x, y), in
    coordinates centred on the image, reads input (i0 x + i1 y + i2, i3 x + i4 y + i5) at the
    nearest pixel centre, FILL where that lies outside. The arithmetic is torchvision's:
    `_affine_grid` then `grid_sample(mode="nearest", align_corners=False)`."""
    _, height, width, _ = images.shape
    inverse = inverse.astype(_F32)
    xs = jnp.arange(width, dtype=_F32) - (width - 1) * 0.5
    ys = (jnp.arange(height, dtype=_F32) - (height - 1) * 0.5)[:, None]
    half_w, half_h = _F32(0.5 * width), _F32(0.5 * height)
    row = lambda k, half: (inverse[:, k] / half)[:, None, None]  # noqa: E731
    grid_x = xs * row(0, half_w) + ys * row(1, half_w) + row(2, half_w)  # normalized to [-1, 1]
    grid_y = xs * row(3, half_h) + ys * row(4, half_h) + row(5, half_h)
    source_x = jnp.round(((grid_x + 1) * width - 1) / 2).astype(jnp.int32)  # nearbyint: half to even
    source_y = jnp.round(((grid_y + 1) * height - 1) / 2).astype(jnp.int32)
    inside = (source_x >= 0) & (source_x < width) & (source_y >= 0) & (source_y < height)
    gathered = jax.vmap(lambda image, sy, sx: image[sy, sx])(
        images, jnp.clip(source_y, 0, height - 1), jnp.clip(source_x, 0, width - 1))
    return jnp.where(inside[..., None], gathered, jnp.uint8(spec.FILL))


def _maps(*entries):
    return jnp.stack([jnp.broadcast_to(jnp.asarray(e, _F32), entries[0].shape) for e in entries], axis=1)


def rotate(images, m):
    radians = signed(m, _F32(spec.MAX_ROTATE_DEGREES)) * _F32(jnp.pi / 180)
    cos, sin = jnp.cos(radians), jnp.sin(radians)
    return affine_nearest(images, _maps(cos, -sin, 0.0, sin, cos, 0.0))


def shear_x(images, m):
    c = signed(m, _F32(spec.MAX_SHEAR))
    return affine_nearest(images, _maps(jnp.ones_like(c), c, 0.0, 0.0, 1.0, 0.0))


def shear_y(images, m):
    c = signed(m, _F32(spec.MAX_SHEAR))
    return affine_nearest(images, _maps(jnp.ones_like(c), 0.0, 0.0, c, 1.0, 0.0))


def translate_x(images, m):
    shift = translate_pixels(m, images.shape[2]).astype(_F32)
    return affine_nearest(images, _maps(jnp.ones_like(shift), 0.0, -shift, 0.0, 1.0, 0.0))


def translate_y(images, m):
    shift = translate_pixels(m, images.shape[1]).astype(_F32)
    return affine_nearest(images, _maps(jnp.ones_like(shift), 0.0, 0.0, 0.0, 1.0, -shift))


OP_FUNCTIONS = {name: globals()[name] for name in spec.OPS}


def cutout_box(params, height: int, width: int):
    """int32 (top, left, bottom, right) per image, bottom and right exclusive, clipped to the image."""
    side = jnp.floor(params[:, 2] * _F32(spec.CUTOUT_MAX) * width).astype(jnp.int32)
    top = jnp.floor(params[:, 0] * height).astype(jnp.int32) - side // 2
    left = jnp.floor(params[:, 1] * width).astype(jnp.int32) - side // 2
    return (jnp.clip(top, 0, height), jnp.clip(left, 0, width),
            jnp.clip(top + side, 0, height), jnp.clip(left + side, 0, width))


def cutout(images, params):
    """Set each image's drawn square to FILL."""
    _, height, width, _ = images.shape
    top, left, bottom, right = (_per_image(v) for v in cutout_box(params, height, width))
    rows, cols = jnp.arange(height)[None, :, None, None], jnp.arange(width)[None, None, :, None]
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    return jnp.where(inside, jnp.uint8(spec.FILL), images)
