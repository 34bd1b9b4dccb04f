"""sesemi_jax.losses on hand-computed logits and ramp-up values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sesemi_jax import losses

LN3 = math.log(3.0)


def test_cross_entropy_hand_values():
    # softmax([0, ln 3]) = [1/4, 3/4]
    assert float(losses.cross_entropy(jnp.array([[0.0, LN3]]), jnp.array([1]))) == pytest.approx(math.log(4 / 3), rel=1e-6)
    assert float(losses.cross_entropy(jnp.array([[0.0, LN3]]), jnp.array([0]))) == pytest.approx(math.log(4), rel=1e-6)
    # batch mean of ln(4/3) and ln 2
    batch = losses.cross_entropy(jnp.array([[0.0, LN3], [5.0, 5.0]]), jnp.array([1, 0]))
    assert float(batch) == pytest.approx((math.log(4 / 3) + math.log(2)) / 2, rel=1e-6)


def test_cross_entropy_gradient_is_softmax_minus_onehot_over_n():
    grad = jax.grad(losses.cross_entropy)(jnp.array([[0.0, LN3], [5.0, 5.0]]), jnp.array([1, 0]))
    np.testing.assert_allclose(np.asarray(grad), [[0.125, -0.125], [-0.25, 0.25]], rtol=1e-6)


@pytest.mark.parametrize("step, expected", [
    (0, math.exp(-5.0)), (50, math.exp(-1.25)), (100, 1.0), (150, 1.0), (1, math.exp(-5 * 0.99 ** 2)),
])
def test_sigmoid_rampup_values(step, expected):
    # float32: an exponent near -5 carries ~half an ulp (2.4e-7) plus the rounding of (T - t)/T.
    assert float(losses.sigmoid_rampup(step, 100)) == pytest.approx(expected, rel=2e-6)


def test_sigmoid_rampup_off_and_traced():
    assert float(losses.sigmoid_rampup(0, 0)) == 1.0
    assert float(losses.sigmoid_rampup(123, 0)) == 1.0
    ramp = jax.jit(losses.sigmoid_rampup, static_argnums=1)
    assert float(ramp(jnp.int32(50), 100)) == pytest.approx(math.exp(-1.25), rel=1e-6)
    assert ramp(jnp.int32(50), 100).dtype == jnp.float32
    with pytest.raises(ValueError, match="rampup_steps must be zero or positive, got -1"):
        losses.sigmoid_rampup(0, -1)


def test_joint_loss_terms_and_total():
    sup = jnp.array([[0.0, LN3]])
    self_logits = jnp.array([[5.0, 5.0], [0.0, LN3]])
    total, terms = jax.jit(losses.joint_loss)(sup, jnp.array([1]), self_logits, jnp.array([0, 0]), 0.5)
    loss_self = (math.log(2) + math.log(4)) / 2
    assert float(terms["loss_sup"]) == pytest.approx(math.log(4 / 3), rel=1e-6)
    assert float(terms["loss_self"]) == pytest.approx(loss_self, rel=1e-6)
    assert float(total) == pytest.approx(math.log(4 / 3) + 0.5 * loss_self, rel=1e-6)


def test_joint_loss_without_self_batch():
    total, terms = losses.joint_loss(jnp.array([[0.0, LN3]]), jnp.array([0]), None, None, 1.0)
    assert float(terms["loss_self"]) == 0.0
    assert float(total) == pytest.approx(math.log(4), rel=1e-6)
