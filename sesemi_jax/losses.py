"""Loss terms of SESEMI (docs/DESIGN.md section 2): batch-mean cross-entropies and the self-term weight."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of (N, K) logits against (N,) integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def sigmoid_rampup(step, rampup_steps: int) -> jax.Array:
    """float32 `exp(-5 (1 - min(t, T)/T)^2)`: 1.0 from step T on, and always 1.0 when T == 0 (no ramp-up)."""
    if rampup_steps < 0:
        raise ValueError(f"rampup_steps must be zero or positive, got {rampup_steps}")
    if rampup_steps == 0:
        return jnp.float32(1.0)
    # (T - min(t, T)) / T keeps the subtraction exact for integer steps; one rounding, in the division.
    remaining = (rampup_steps - jnp.minimum(jnp.asarray(step, jnp.float32), rampup_steps)) / rampup_steps
    return jnp.exp(-5.0 * remaining * remaining)


def joint_loss(sup_logits: jax.Array, labels: jax.Array, self_logits: jax.Array | None,
               self_targets: jax.Array | None, weight) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`CE(sup_logits, labels) + weight * CE(self_logits, self_targets)` and its named terms.

    `self_logits=None` (no self-supervised batch) makes the self term 0.
    """
    loss_sup = cross_entropy(sup_logits, labels)
    if self_logits is None:
        loss_self = jnp.zeros_like(loss_sup)
    else:
        loss_self = cross_entropy(self_logits, self_targets)
    return loss_sup + weight * loss_self, {"loss_sup": loss_sup, "loss_self": loss_self}


def softmax_mse(logits: jax.Array, target_logits: jax.Array) -> jax.Array:
    """Mean over batch and classes of (softmax(logits) - softmax(target_logits))^2: the
    consistency of the Pi-model and Mean Teacher (Tarvainen and Valpola's `softmax_mse_loss`
    divided by the batch size)."""
    return jnp.mean(jnp.square(jax.nn.softmax(logits) - jax.nn.softmax(target_logits)))


def entropy(logits: jax.Array) -> jax.Array:
    """Mean over the batch of the entropy -sum p log p of softmax(logits), in nats."""
    log_p = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.sum(jnp.exp(log_p) * log_p, axis=-1))


def masked_cross_entropy(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over the whole batch of `mask * CE(logits, labels)`: masked-out examples count as 0
    in the mean (FixMatch's unlabeled term divides by all mu*B images, not by the kept ones)."""
    return jnp.mean(mask * optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def sharpened_log_probs(logits: jax.Array, temperature: float) -> jax.Array:
    """log softmax(logits / T): the temperature-sharpened target distribution (UDA's T = 0.4,
    MixMatch's sharpening p^(1/T) / sum p^(1/T) in the log domain), as log-probabilities."""
    return jax.nn.log_softmax(logits / temperature)


def kl_divergence(target_log_probs: jax.Array, logits: jax.Array) -> jax.Array:
    """Per example, KL(p || softmax(logits)) = sum p (log p - log q) with log p = `target_log_probs`:
    (N,), so a method can mask and average it (UDA's consistency)."""
    return jnp.sum(jnp.exp(target_log_probs) * (target_log_probs - jax.nn.log_softmax(logits)), axis=-1)
