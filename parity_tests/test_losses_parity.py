"""Parity rung "losses": joint loss, each term and the gradients w.r.t. both logits, rtol 1e-6.

Both sides get the same float32 logits (numpy-drawn), labels and weight. The losses run
jitted in JAX, as in the training step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sesemi_jax import losses as jl
from sesemi_torch import losses as tl

RTOL = 1e-6  # docs/DESIGN.md section 5, losses
NUM_CLASSES = 10
EPS = float(np.finfo(np.float32).eps)

# Finding: two kinds of entries cancel in float32, and only there does rtol 1e-6 fail, so only
# they get an absolute term (measured over 12 seeds x batches 1..96, logits ~ N(0, 2^2)):
# - a loss near 0: per example CE = log(sum_j exp(x_j - max)) - (x_y - max), and when the label
#   holds nearly all the mass the sum is 1 + tiny, rounded to float32 near 1 on each side (in a
#   different order): an absolute error of about eps, whatever the loss (seen: 1.19 eps on a
#   loss of 0.092, relative 1.5e-6). VALUE_ATOL = 2 eps, one per side.
# - the gradient at the label, scale * (p_y - 1), scale = weight / rows: when p_y -> 1 it is the
#   difference of two numbers of size `scale` whose roundings differ (exp, log, sums, and
#   p * scale) by up to about 1.5 eps * scale per side (seen: 1.76 eps * scale). Every other
#   gradient entry (p_j * scale, no cancellation) is held to rtol 1e-6 with no absolute term.
VALUE_ATOL = 2 * EPS
LABEL_GRAD_ATOL_EPS = 3


def _joint_total(sup, labels, self_logits, self_targets, weight):
    return jl.joint_loss(sup, labels, self_logits, self_targets, weight)


# value, terms and (d total / d sup_logits, d total / d self_logits); compiled once per shape.
jax_loss_and_grads = jax.jit(jax.value_and_grad(_joint_total, argnums=(0, 2), has_aux=True))


def torch_loss_and_grads(sup, labels, self_logits, self_targets, weight):
    sup = torch.tensor(sup, requires_grad=True)
    self_logits = torch.tensor(self_logits, requires_grad=True)
    value, terms = tl.joint_loss(sup, torch.as_tensor(labels), self_logits, torch.as_tensor(self_targets), weight)
    value.backward()
    return value, terms, (sup.grad, self_logits.grad)


def assert_value_close(jax_value, torch_value, name):
    np.testing.assert_allclose(float(jax_value), torch_value.item(), rtol=RTOL, atol=VALUE_ATOL, err_msg=name)


def assert_grad_close(jax_grad, torch_grad, labels, scale, name):
    jax_grad, torch_grad = np.asarray(jax_grad), torch_grad.numpy()
    at_label = np.zeros(jax_grad.shape, bool)
    at_label[np.arange(len(labels)), labels] = True
    np.testing.assert_allclose(jax_grad[~at_label], torch_grad[~at_label], rtol=RTOL, atol=0, err_msg=name)
    np.testing.assert_allclose(jax_grad[at_label], torch_grad[at_label], rtol=RTOL,
                               atol=LABEL_GRAD_ATOL_EPS * EPS * scale, err_msg=f"{name}, at the labels")


@pytest.mark.parametrize("n", [1, 3, 8, 17])
@pytest.mark.parametrize("num_proxy", [6, 4])
@pytest.mark.parametrize("weight", [1.0, 0.5, 0.0, float(np.float32(np.exp(-5 * 0.75 ** 2)))])
def test_joint_loss_and_grads_agree(np_rng, n, num_proxy, weight):
    sup = np_rng.normal(0.0, 2.0, (n, NUM_CLASSES)).astype(np.float32)
    labels = np_rng.integers(0, NUM_CLASSES, n)
    self_logits = np_rng.normal(0.0, 2.0, (n * num_proxy, num_proxy)).astype(np.float32)
    self_targets = np.tile(np.arange(num_proxy), n)
    (value_j, terms_j), grads_j = jax_loss_and_grads(sup, labels.astype(np.int32), self_logits,
                                                     self_targets.astype(np.int32), np.float32(weight))
    value_t, terms_t, grads_t = torch_loss_and_grads(sup, labels, self_logits, self_targets, weight)
    assert_value_close(value_j, value_t, "total")
    for name in ("loss_sup", "loss_self"):
        assert_value_close(terms_j[name], terms_t[name], name)
    assert_grad_close(grads_j[0], grads_t[0], labels, 1 / n, "d total / d sup_logits")
    assert_grad_close(grads_j[1], grads_t[1], self_targets, weight / (n * num_proxy), "d total / d self_logits")


def test_joint_loss_without_self_batch_agrees(np_rng):
    sup = np_rng.normal(0.0, 2.0, (5, NUM_CLASSES)).astype(np.float32)
    labels = np_rng.integers(0, NUM_CLASSES, 5)
    value_j, terms_j = jl.joint_loss(jnp.asarray(sup), jnp.asarray(labels, jnp.int32), None, None, 1.0)
    value_t, terms_t = tl.joint_loss(torch.tensor(sup), torch.as_tensor(labels), None, None, 1.0)
    assert_value_close(value_j, value_t, "total")
    assert float(terms_j["loss_self"]) == terms_t["loss_self"].item() == 0.0


# Finding: the ramp-up is not inside rtol 1e-6. JAX evaluates exp(-5 u^2), u = (T - min(t, T)) / T,
# in float32 inside the jitted step; torch evaluates it in Python float64. The float32 exponent,
# up to 5 in size, carries half an ulp (2.4e-7) plus the rounding of u (relative 6e-8, times 2 * 5 u^2)
# plus exp's own ulp: 1.05e-6 measured (T = 1e3 .. 1e5). 2e-6 bounds that sum. The joint loss
# itself takes the weight as an input, so the rung above feeds both sides the same float32 weight.
RAMPUP_RTOL = 2e-6


@pytest.mark.parametrize("rampup_steps", [1, 7, 100, 1000, 12345])
def test_sigmoid_rampup_agrees(rampup_steps):
    steps = np.unique(np.linspace(0, rampup_steps + 3, 2000).astype(np.int32))
    jax_values = np.asarray(jax.jit(jax.vmap(lambda t: jl.sigmoid_rampup(t, rampup_steps)))(steps))
    torch_values = np.array([tl.sigmoid_rampup(int(t), rampup_steps) for t in steps])
    np.testing.assert_allclose(jax_values, torch_values, rtol=RAMPUP_RTOL, atol=0)
    assert jax_values[-1] == torch_values[-1] == 1.0
