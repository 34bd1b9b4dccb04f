"""FlexMatch's state update in both frameworks against a plain transcription of USB's
FlexMatchThresholdingHook (Counter over `selected_label`), on cases the random rungs rarely
reach: the start (all -1), thresh_warmup on and off, a pool holding one class only, and an image
twice in one batch. Exact: the status is a ratio of counts."""

from collections import Counter

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sesemi_jax.methods import flexmatch as jax_flexmatch
from sesemi_torch.methods import flexmatch as torch_flexmatch

NUM_CLASSES, THRESHOLD = 4, 0.95


def usb_update(selected: list[int], acc: list[float], confidence, pseudo, index, warmup: bool):
    """USB's hook, written out: each image over the threshold writes its class in batch order
    (so a later copy wins), then the status is each class's count over the largest count (the
    -1s counted with warm-up), unless one value fills the whole pool."""
    selected = list(selected)
    for conf, label, position in zip(confidence, pseudo, index):
        if conf >= THRESHOLD:
            selected[position] = label
    counts = Counter(selected)
    if max(counts.values()) < len(selected):
        largest = max(counts.values()) if warmup else max(v for k, v in counts.items() if k != -1)
        acc = [np.float32(counts[c]) / np.float32(largest) for c in range(NUM_CLASSES)]
    return np.asarray(selected, np.int32), np.asarray(acc, np.float32)


CASES = {
    # name: (selected_label before, classwise_acc before, confidences, predicted classes, pool positions)
    "start, nothing selected": ([-1] * 6, [0.0] * 4, [0.5, 0.9], [1, 2], [0, 3]),
    "start, two selected": ([-1] * 6, [0.0] * 4, [0.97, 0.99, 0.2], [1, 2, 3], [0, 3, 5]),
    "mostly selected": ([0, 1, 1, 2, -1, 3, 3, 3], [0.5, 1.0, 0.3, 0.2], [0.96, 0.951, 0.94], [2, 2, 0], [4, 0, 7]),
    "one class fills the pool": ([2] * 5, [0.25, 0.5, 0.75, 1.0], [0.99], [2], [1]),
    "an image twice": ([-1, 0, 1, -1, 2], [0.0] * 4, [0.99, 0.3, 0.98, 0.97], [3, 0, 1, 0], [3, 3, 0, 3]),
}


@pytest.mark.parametrize("warmup", [True, False])
@pytest.mark.parametrize("case", CASES)
def test_the_update_is_usb_s(case, warmup):
    selected, acc, confidence, pseudo, index = CASES[case]
    expected_selected, expected_acc = usb_update(selected, acc, confidence, pseudo, index, warmup)
    state = {"selected_label": np.asarray(selected, np.int32), "classwise_acc": np.asarray(acc, np.float32)}
    conf, labels, positions = np.float32(confidence), np.asarray(pseudo), np.asarray(index)
    j = jax_flexmatch.update_state({k: jnp.asarray(v) for k, v in state.items()}, jnp.asarray(conf),
                                   jnp.asarray(labels), jnp.asarray(positions), THRESHOLD, warmup)
    t = torch_flexmatch.update_state({k: torch.from_numpy(v.copy()) for k, v in state.items()}, torch.from_numpy(conf),
                                     torch.from_numpy(labels), torch.from_numpy(positions), THRESHOLD, warmup)
    for side in (j, t):
        np.testing.assert_array_equal(np.asarray(side["selected_label"]), expected_selected)
        np.testing.assert_array_equal(np.asarray(side["classwise_acc"]), expected_acc)
        assert np.asarray(side["selected_label"]).dtype == np.int32
        assert np.asarray(side["classwise_acc"]).dtype == np.float32


def test_the_mask_reads_the_status_from_before_the_step():
    """From a status of 0 every image passes (threshold 0), though the step's update raises it;
    with status 0.5 the threshold is 0.95 * 0.5 / 1.5 = 0.3167."""
    from sesemi_common.methods import FlexMatchKnobs
    weak = np.log(np.asarray([[0.99, 0.01 / 3, 0.01 / 3, 0.01 / 3], [0.32, 0.68 / 3, 0.68 / 3, 0.68 / 3],
                              [0.31, 0.69 / 3, 0.69 / 3, 0.69 / 3]], np.float32))
    strong = np.zeros((3, NUM_CLASSES), np.float32)
    for acc, expected in ((0.0, [1, 1, 1]), (0.5, [1, 1, 0])):
        state = {"selected_label": np.full(6, -1, np.int32), "classwise_acc": np.full(NUM_CLASSES, acc, np.float32)}
        targets = {"unlabeled_index": np.arange(3)}
        j = jax_flexmatch.loss(jax_flexmatch.LossInputs(
            jnp.zeros((2, NUM_CLASSES)), jnp.zeros(2, jnp.int32), {"weak": {"sup": jnp.asarray(weak)},
                                                                   "strong": {"sup": jnp.asarray(strong)}},
            {k: jnp.asarray(v) for k, v in targets.items()}, jnp.int32(0), FlexMatchKnobs(),
            {k: jnp.asarray(v) for k, v in state.items()}))
        t = torch_flexmatch.loss(torch_flexmatch.LossInputs(
            torch.zeros(2, NUM_CLASSES), torch.zeros(2, dtype=torch.int64),
            {"weak": {"sup": torch.from_numpy(weak)}, "strong": {"sup": torch.from_numpy(strong)}},
            {k: torch.from_numpy(v) for k, v in targets.items()}, 0, FlexMatchKnobs(),
            {k: torch.from_numpy(v) for k, v in state.items()}))
        for terms in (j[1], t[1]):
            assert float(terms["mask_rate"]) == pytest.approx(np.mean(expected))
        for next_state in (j[2], t[2]):  # only the first image reached 0.95: selected, so class 0's status is 1/5
            np.testing.assert_array_equal(np.asarray(next_state["selected_label"]), [0, -1, -1, -1, -1, -1])
            np.testing.assert_allclose(np.asarray(next_state["classwise_acc"]), [0.2, 0, 0, 0])
