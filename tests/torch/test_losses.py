"""sesemi_torch.losses on hand-computed logits and ramp-up values."""

import math

import pytest
import torch

from sesemi_torch import losses

LN3 = math.log(3.0)


def test_cross_entropy_hand_values():
    # softmax([0, ln 3]) = [1/4, 3/4]
    assert losses.cross_entropy(torch.tensor([[0.0, LN3]]), torch.tensor([1])).item() == pytest.approx(math.log(4 / 3), rel=1e-6)
    assert losses.cross_entropy(torch.tensor([[0.0, LN3]]), torch.tensor([0])).item() == pytest.approx(math.log(4), rel=1e-6)
    batch = losses.cross_entropy(torch.tensor([[0.0, LN3], [5.0, 5.0]]), torch.tensor([1, 0]))
    assert batch.item() == pytest.approx((math.log(4 / 3) + math.log(2)) / 2, rel=1e-6)


def test_cross_entropy_gradient_is_softmax_minus_onehot_over_n():
    logits = torch.tensor([[0.0, LN3], [5.0, 5.0]], requires_grad=True)
    losses.cross_entropy(logits, torch.tensor([1, 0])).backward()
    torch.testing.assert_close(logits.grad, torch.tensor([[0.125, -0.125], [-0.25, 0.25]]), rtol=1e-6, atol=0)


@pytest.mark.parametrize("step, expected", [
    (0, math.exp(-5.0)), (50, math.exp(-1.25)), (100, 1.0), (150, 1.0), (1, math.exp(-5 * 0.99 ** 2)),
])
def test_sigmoid_rampup_values(step, expected):
    assert losses.sigmoid_rampup(step, 100) == pytest.approx(expected, rel=1e-12)


def test_sigmoid_rampup_off():
    assert losses.sigmoid_rampup(0, 0) == 1.0
    assert losses.sigmoid_rampup(123, 0) == 1.0
    with pytest.raises(ValueError, match="rampup_steps must be zero or positive, got -1"):
        losses.sigmoid_rampup(0, -1)


def test_joint_loss_terms_and_total():
    sup = torch.tensor([[0.0, LN3]])
    self_logits = torch.tensor([[5.0, 5.0], [0.0, LN3]])
    total, terms = losses.joint_loss(sup, torch.tensor([1]), self_logits, torch.tensor([0, 0]), 0.5)
    loss_self = (math.log(2) + math.log(4)) / 2
    assert terms["loss_sup"].item() == pytest.approx(math.log(4 / 3), rel=1e-6)
    assert terms["loss_self"].item() == pytest.approx(loss_self, rel=1e-6)
    assert total.item() == pytest.approx(math.log(4 / 3) + 0.5 * loss_self, rel=1e-6)


def test_joint_loss_without_self_batch():
    total, terms = losses.joint_loss(torch.tensor([[0.0, LN3]]), torch.tensor([0]), None, None, 1.0)
    assert terms["loss_self"].item() == 0.0
    assert total.item() == pytest.approx(math.log(4), rel=1e-6)
