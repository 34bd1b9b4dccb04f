"""sesemi_jax.randaugment against the hand-computed expectations of tests/randaugment_contract.py."""

import jax
import jax.numpy as jnp
import numpy as np

from sesemi_jax import randaugment as ra
from tests.randaugment_contract import RandAugmentContract


class TestJaxRandAugment(RandAugmentContract):
    @staticmethod
    def op(images, name, m):
        return np.asarray(ra.apply_op(jnp.asarray(images, jnp.uint8), name, np.full(len(images), m, np.float32)))

    @staticmethod
    def cutout(images, boxes):
        return np.asarray(ra.cutout(jnp.asarray(images), boxes))

    @staticmethod
    def apply(images, ops, magnitudes, cutout):
        return np.asarray(jax.jit(ra.apply)(jnp.asarray(images), ops, magnitudes, cutout))

    @staticmethod
    def sample_params(n):
        return tuple(np.asarray(a) for a in ra.sample_params(jax.random.key(0), n))

    @staticmethod
    def translate_pixels(m, size):
        return int(ra.translate_pixels(jnp.float32(m), size))
