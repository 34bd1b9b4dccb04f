"""Test-time augmentation (`eval.tta=8`): the paper's 8 views of every test image, framework-free.

The paper's evaluator (vuptran/sesemi utils.py `DenseEvaluator(oversample=True)`, read at commit
ff6db67) classifies each test image x in 8 views, in this order:

    x, t, x + n1, t + n2, flip(x), flip(t), flip(x) + n3, flip(t) + n4

where t is x shifted by (dy, dx), each drawn from {-2, -1, 1, 2} (its `jitter`: never 0), with
reflect fill; flip is left-right; n1..n4 are independent Gaussian noise added to the normalized
view. It averages the 8 softmax outputs and predicts their argmax. `VIEWS` spells the order out.

The random half follows docs/DESIGN.md section 5: `sample_params` draws (shift, noise) with numpy once,
and each framework's `tta.py` applies them with pure functions. Each image's parameters come from
a generator seeded by (`SEED`, a hash of the image's own pixels), so a prediction depends on the
image alone: JAX and PyTorch see the same views, and an image gets the same views whatever the
batch size, its place in the list (`predict a.png b.png` and `predict b.png` agree on b.png) and
the evaluation (every evaluation of a run uses the same views, as the paper's were drawn once
before training). Two identical images get identical views, as they should. The noise is
`augment.noise_std` when the run trains with noise (the level its inputs had), else the paper's
0.15; it is added after normalization, as in training.

The softmax and the average are computed here, in float32 with numpy, from the per-view logits
either framework returns, so both average with the same code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .config import Config

SHIFTS = np.array([-2, -1, 1, 2], np.int32)  # the paper's jitter: a shift by 1 or 2 px, never 0
MAX_SHIFT = 2  # reflect padding of the shifted views (translate crops with offsets shift + 2)
PAPER_NOISE_STD = 0.15  # gaussian_noise(stddev=0.15), utils.py
SEED = 0  # with the hash of each image's pixels: fixed views, the same in both frameworks and every evaluation


@dataclass(frozen=True)
class View:
    shifted: bool
    noisy: bool
    flipped: bool


# The paper's order: bit 0 shifted, bit 1 noisy, bit 2 flipped.
VIEWS = tuple(View(shifted=bool(v & 1), noisy=bool(v & 2), flipped=bool(v & 4)) for v in range(8))
NOISY = tuple(i for i, view in enumerate(VIEWS) if view.noisy)


@dataclass(frozen=True)
class TTAParams:
    shifts: np.ndarray  # int32 (n, 2): (dy, dx) of each image's shifted views, each in SHIFTS
    noise: np.ndarray  # float32 (n * 8, H, W, C): added to each normalized view, image-major; 0 for clean views

    def crop_offsets(self) -> np.ndarray:
        """The shifts as offsets of the transforms' reflect crop with padding MAX_SHIFT (shift 0 = offset 2)."""
        return self.shifts + np.int32(MAX_SHIFT)


def noise_std(config: Config) -> float:
    """The noise of the noisy views: the run's training noise if it has one, else the paper's."""
    return config.augment.noise_std or PAPER_NOISE_STD


def images_per_batch(eval_batch_size: int) -> int:
    """Test images per forward pass: `train.eval_batch_size` counts the network's inputs, here views,
    so evaluation holds as many activations in memory with eval.tta=8 as with 1."""
    return max(1, eval_batch_size // len(VIEWS))


def image_seed(image: np.ndarray) -> list[int]:
    """Four 32-bit words of the SHA-256 of the image's shape and uint8 pixels: its views' seed."""
    image = np.ascontiguousarray(image)
    digest = hashlib.sha256(str(image.shape).encode() + image.tobytes()).digest()
    return np.frombuffer(digest[:16], np.uint32).tolist()


def sample_params(images: np.ndarray, std: float, seed: int = SEED) -> TTAParams:
    """The views' parameters of uint8 `images` (n, H, W, C): a pure function of (seed, pixels) per image."""
    images = np.asarray(images)
    image_shape = images.shape[1:]
    shifts = np.empty((len(images), 2), np.int32)
    noise = np.zeros((len(images), len(VIEWS), *image_shape), np.float32)
    for row, image in enumerate(images):
        rng = np.random.default_rng([seed, *image_seed(image)])
        shifts[row] = SHIFTS[rng.integers(0, len(SHIFTS), 2)]
        noise[row, NOISY] = np.float32(std) * rng.standard_normal((len(NOISY), *image_shape), np.float32)
    return TTAParams(shifts, noise.reshape(-1, *image_shape))


def average_probs(view_logits: np.ndarray) -> np.ndarray:
    """float32 (n, K): the softmax of each of the 8 views' logits (image-major, (n * 8, K)), averaged."""
    z = np.asarray(view_logits, np.float32)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    probs = e / e.sum(axis=-1, keepdims=True)
    return probs.reshape(-1, len(VIEWS), z.shape[-1]).mean(axis=1, dtype=np.float32)


def class_probabilities(scores: np.ndarray, tta: int) -> np.ndarray:
    """Class probabilities from a classifier's scores: the softmax of logits (eval.tta=1), or the
    averaged probabilities themselves (eval.tta=8)."""
    if tta > 1:
        return np.asarray(scores)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    return probs / probs.sum(-1, keepdims=True)
