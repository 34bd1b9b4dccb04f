"""sesemi_torch.randaugment against the hand-computed expectations of tests/randaugment_contract.py."""

import numpy as np
import torch

from sesemi_torch import randaugment as ra
from tests.randaugment_contract import RandAugmentContract


def _nchw(images):
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)


def _nhwc(images):
    return images.permute(0, 2, 3, 1).numpy()


class TestTorchRandAugment(RandAugmentContract):
    @staticmethod
    def op(images, name, m):
        return _nhwc(ra.apply_op(_nchw(images), name, torch.full((len(images),), m, dtype=torch.float32)))

    @staticmethod
    def cutout(images, boxes):
        return _nhwc(ra.cutout(_nchw(images), torch.from_numpy(boxes)))

    @staticmethod
    def apply(images, ops, magnitudes, cutout):
        return _nhwc(ra.apply(_nchw(images), *(torch.from_numpy(a) for a in (ops, magnitudes, cutout))))

    @staticmethod
    def sample_params(n):
        return tuple(a.numpy() for a in ra.sample_params(torch.Generator().manual_seed(0), n))

    @staticmethod
    def translate_pixels(m, size):
        return int(ra.translate_pixels(np.float32(m), size))
