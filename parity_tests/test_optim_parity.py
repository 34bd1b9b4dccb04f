"""Parity rung "K steps": 50 optimizer steps on fixed synthetic gradients, JAX against PyTorch.

A tiny Conv(bias)+BatchNorm+Linear model exists in both frameworks with the same numbers; each
step feeds both optimizers the same seeded numpy gradients (transposed to each layout), so
the only things compared are the LR schedule, Nesterov momentum and the masked weight decay.
No matmul or conv runs here, so jax_default_matmul_precision and TF32 play no part; jax is
float32 by default (x64 off) and torch is kept float32 and deterministic by the fixture.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from sesemi_common.config import OptimConfig
from sesemi_jax import optim as jax_optim
from sesemi_torch import optim as torch_optim

STEPS = 50
RTOL = 1e-5  # docs/DESIGN.md section 5, K steps
# The libraries round differently per element: torch's `add(x, alpha=a)` (Nesterov term, lr step) is
# one fused multiply-add while optax writes two ops, which XLA may or may not contract, and torch's
# `buf.mul_(m).add_(g)` rounds twice. Each step thus differs by an ulp of the parameter's magnitude
# along its path (up to |p| ~ 7 here), and an entry that ends near zero keeps that absolute error
# (e.g. 2.2e-7 on 0.0126, relative 1.7e-5). ATOL is one float32 ulp at |p| = 4, 3x the largest
# excess over RTOL seen on seeds 0-7 (1.6e-7); with momentum 0 the two sides agree bit for bit (measured on this CPU).
ATOL = float(np.spacing(np.float32(4.0)))


@pytest.fixture(autouse=True)
def torch_float32_deterministic():
    dtype, deterministic = torch.get_default_dtype(), torch.are_deterministic_algorithms_enabled()
    torch.set_default_dtype(torch.float32)
    torch.use_deterministic_algorithms(True)
    yield
    torch.set_default_dtype(dtype)
    torch.use_deterministic_algorithms(deterministic)


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3, bias=True)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 3)


class FlaxNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.BatchNorm(use_running_average=False, name="bn")(nn.Conv(4, (3, 3), name="conv")(x))
        return nn.Dense(3, name="fc")(x.mean(axis=(1, 2)))


# torch state-dict name -> (flax path, torch-layout -> flax-layout transform)
TO_FLAX = {
    "conv.weight": (("conv", "kernel"), lambda a: a.transpose(2, 3, 1, 0)),  # OIHW -> HWIO
    "conv.bias": (("conv", "bias"), lambda a: a),
    "bn.weight": (("bn", "scale"), lambda a: a),
    "bn.bias": (("bn", "bias"), lambda a: a),
    "fc.weight": (("fc", "kernel"), lambda a: a.T),  # (out, in) -> (in, out)
    "fc.bias": (("fc", "bias"), lambda a: a),
}


def to_flax(arrays: dict) -> dict:
    tree = {}
    for name, array in arrays.items():
        (module, leaf), transform = TO_FLAX[name]
        tree.setdefault(module, {})[leaf] = jnp.asarray(transform(array))
    return tree


def synthetic(rng, shapes: dict, scale: float) -> dict:
    return {name: (scale * rng.standard_normal(shape)).astype(np.float32) for name, shape in shapes.items()}


def run_torch(cfg, init, grads):
    model = TorchNet()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.from_numpy(init[name]))
    optimizer = torch_optim.make_optimizer(model, cfg)
    scheduler = torch_optim.make_scheduler(optimizer, cfg, STEPS)
    lrs = []
    for step_grads in grads:
        for name, param in model.named_parameters():
            param.grad = torch.from_numpy(step_grads[name])
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return {name: p.detach().numpy() for name, p in model.named_parameters()}, np.array(lrs)


def run_jax(cfg, init, grads):
    params = to_flax(init)
    tx = jax_optim.make_optimizer(cfg, STEPS)

    @jax.jit
    def step(params, opt_state, step_grads):
        updates, opt_state = tx.update(step_grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    opt_state = tx.init(params)
    for step_grads in grads:
        params, opt_state = step(params, opt_state, to_flax(step_grads))
    lrs = jax_optim.lr_schedule(cfg, STEPS)(jnp.arange(STEPS))
    return params, np.asarray(lrs), int(optax.tree_utils.tree_get(opt_state, "count"))


@pytest.mark.parametrize("schedule", ["poly", "cosine", "fixmatch_cosine"])
def test_params_after_k_steps_match(schedule):
    cfg = dataclasses.replace(OptimConfig(), schedule=schedule, warmup_steps=5)
    shapes = {name: tuple(p.shape) for name, p in TorchNet().named_parameters()}
    rng = np.random.default_rng(0)
    init = synthetic(rng, shapes, scale=0.5)
    grads = [synthetic(rng, shapes, scale=1.0) for _ in range(STEPS)]

    torch_params, torch_lrs = run_torch(cfg, init, grads)
    jax_params, jax_lrs, count = run_jax(cfg, init, grads)

    assert count == STEPS
    np.testing.assert_allclose(jax_lrs, torch_lrs, rtol=RTOL, atol=0)
    assert jax_lrs[0] == torch_lrs[0] == 0.0 and torch_lrs[5] == pytest.approx(0.05)
    if schedule == "fixmatch_cosine":  # FixMatch's form: lr cos(7 pi k / 16 K) over the K = 45 steps after warm-up
        k = np.arange(5, STEPS)
        np.testing.assert_allclose(torch_lrs[5:], 0.05 * np.cos(7 * np.pi * (k - 5) / (16 * (STEPS - 5))), rtol=1e-12)
    expected = to_flax(torch_params)
    assert jax.tree.structure(jax_params) == jax.tree.structure(expected)
    for name, ((module, leaf), _) in TO_FLAX.items():
        np.testing.assert_allclose(jax_params[module][leaf], expected[module][leaf], rtol=RTOL, atol=ATOL,
                                   err_msg=f"{schedule}: {name}")


def test_decay_mask_and_param_groups_pick_the_same_tensors():
    flax_params = FlaxNet().init(jax.random.key(0), jnp.zeros((1, 8, 8, 2)))["params"]
    model = TorchNet()
    torch_shapes = {name: p.detach().numpy() for name, p in model.named_parameters()}
    assert jax.tree.map(jnp.shape, flax_params) == jax.tree.map(jnp.shape, to_flax(torch_shapes))

    names = {id(p): name for name, p in model.named_parameters()}
    decay_group = torch_optim.param_groups(model)[0]
    torch_decayed = {TO_FLAX[names[id(p)]][0] for p in decay_group["params"]}
    mask = jax_optim.decay_mask(flax_params)
    jax_decayed = {(module, leaf) for module, leaves in mask.items() for leaf, flag in leaves.items() if flag}
    assert torch_decayed == jax_decayed == {("conv", "kernel"), ("fc", "kernel")}
