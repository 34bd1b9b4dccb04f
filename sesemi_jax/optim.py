"""SGD with Nesterov momentum, masked coupled weight decay and the LR schedules (docs/DESIGN.md section 2).

Step convention, shared with `sesemi_torch.optim`: the k-th update (k = 0, 1, ...) uses
`lr_schedule(cfg, T)(k)`; optax's `scale_by_schedule` counts from 0, as torch's `LambdaLR`
does after k `scheduler.step()` calls.

Schedule with W = warmup_steps and peak lr:
  t < W:  lr * t / W                         (linear warm-up from 0, so the first update has lr 0
                                              when W > 0; it still fills the momentum buffer)
  t >= W: lr * decay((t - W) / (T - W))      (the decay spans the T - W steps after warm-up)
  poly: (1 - s)^poly_power, cosine: (1 + cos(pi s)) / 2, constant: 1; s is clipped to [0, 1].
  fixmatch_cosine: cos(7 pi s / 16), FixMatch's lr cos(7 pi k / (16 K)): it ends at 0.195 lr, not 0.

optax's `trace` starts from a zero buffer, so its first step gives buf = g, the same as torch's
`buf = g.clone()`; nesterov then uses g + momentum * buf in both (optax/transforms/_accumulation.py,
torch/optim/sgd.py), so `optax.sgd` reproduces `torch.optim.SGD` without a custom optimizer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from sesemi_common.config import OptimConfig, check_optim


def _as_float(count):
    # JAX's default float: float32, or float64 under x64 (the float64 lockstep rung,
    # parity_tests/test_long_horizon.py, where a float32 lr alone moved the run 1e-7 a step).
    return jnp.asarray(count).astype(jax.dtypes.canonicalize_dtype(jnp.float64))


def _decay_schedule(optim_cfg: OptimConfig, decay_steps: int) -> optax.Schedule:
    # Not optax.polynomial_schedule / cosine_decay_schedule: in float32 their `1 - t/T` and
    # `1 + cos(pi t/T)` cancel near the end of training (relative lr error 4e-5 for poly and 1.5e-2
    # for cosine at T = 2000). Counting the remaining steps exactly in integers keeps every value
    # within a few float32 ulps of the float64 reference (torch), using (1+cos(pi s))/2 = sin^2(pi(1-s)/2).
    lr, power = optim_cfg.lr, optim_cfg.poly_power

    def remaining_fraction(count):
        return _as_float(jnp.clip(decay_steps - count, 0, decay_steps)) / decay_steps

    if optim_cfg.schedule == "poly":
        return lambda count: lr * remaining_fraction(count) ** power
    if optim_cfg.schedule == "cosine":
        return lambda count: lr * jnp.sin(0.5 * jnp.pi * remaining_fraction(count)) ** 2
    if optim_cfg.schedule == "fixmatch_cosine":
        # No cancellation to guard against: the factor stays above cos(7 pi / 16) = 0.195.
        return lambda count: lr * jnp.cos((7 * jnp.pi / 16) * (1 - remaining_fraction(count)))
    return optax.constant_schedule(lr)


def lr_schedule(optim_cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Learning rate of update t (t = 0 for the first update); see the module docstring."""
    check_optim(optim_cfg, total_steps)
    warmup = optim_cfg.warmup_steps
    decay = _decay_schedule(optim_cfg, total_steps - warmup)
    if warmup == 0:
        return decay
    lr = optim_cfg.lr
    return optax.join_schedules([lambda count: lr * _as_float(count) / warmup, decay], [warmup])


def _leaf_name(path) -> str:
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


def decay_mask(params):
    """True for conv and dense kernels (flax leaf name 'kernel'); False for biases and BN scale/bias."""
    return jax.tree_util.tree_map_with_path(lambda path, _: _leaf_name(path) == "kernel", params)


def make_optimizer(optim_cfg: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    """Coupled weight decay on kernels, added to the gradient before Nesterov SGD (torch semantics)."""
    schedule = lr_schedule(optim_cfg, total_steps)
    return optax.chain(
        optax.add_decayed_weights(optim_cfg.weight_decay, mask=decay_mask),
        optax.sgd(schedule, momentum=optim_cfg.momentum, nesterov=optim_cfg.nesterov),
    )
