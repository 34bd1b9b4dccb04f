"""The torch loader on a pool of its own: unlabeled images come from the pool's indices, and a pool
whose images have no labels gives the methods none (no pseudo-label accuracy is logged)."""

import numpy as np
import torch

from sesemi_common.config import Config, apply_overrides
from sesemi_common.pool import NO_LABEL
from sesemi_torch import methods, train
from sesemi_torch.data import SpecBatches, SpecSampler

IMAGES = np.random.default_rng(0).integers(0, 256, (14, 8, 8, 3), dtype=np.uint8)  # 6 training + 8 pool images
LABELS = np.array([0, 1, 2, 0, 1, 2] + [NO_LABEL] * 8)
POOL = np.arange(6, 14)


def _batch(unlabeled: str, step: int = 2):
    config = apply_overrides(Config(), ["method.name=fixmatch", "train.batch_labeled=4", "train.batch_unlabeled=4",
                                        "data.image_size=8", f"data.unlabeled={unlabeled}"])
    spec = SpecSampler(np.arange(6), POOL, config).spec(step)
    return config, spec, SpecBatches(IMAGES, LABELS)[spec]


def test_the_unlabeled_batch_is_drawn_from_the_pool():
    for step in range(6):
        _, spec, batch = _batch("folder", step)
        assert set(spec.unlabeled.tolist()) <= set(POOL.tolist())
        np.testing.assert_array_equal(batch["unlabeled_images"].permute(0, 2, 3, 1).numpy(), IMAGES[spec.unlabeled])
        # Their pool positions, which a per-image method state (FlexMatch) is indexed by, reach the loss.
        np.testing.assert_array_equal(POOL[spec.unlabeled_positions], spec.unlabeled)
        assert batch["unlabeled_index"].tolist() == spec.unlabeled_positions.tolist()


def test_a_pool_without_labels_gives_the_methods_none():
    config, _, batch = _batch("folder")
    _, _, targets = train.model_inputs(batch, methods.load(config), config, *_stats())
    assert "true_labels" not in targets
    config, _, batch = _batch("train")
    _, _, targets = train.model_inputs(batch, methods.load(config), config, *_stats())
    assert targets["true_labels"].tolist() == batch["unlabeled_labels"].tolist()
    assert targets["unlabeled_index"].tolist() == batch["unlabeled_index"].tolist()


def _stats():
    return torch.full((3,), 0.5), torch.full((3,), 0.25)
