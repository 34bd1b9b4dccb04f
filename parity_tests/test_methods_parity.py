"""Rung "methods" (docs/DESIGN.md section 5): for every registered method, its views from the same
numpy-drawn parameters (exact, as the transforms rung), and its loss, each named term and the
gradient of the total with respect to every logit it reads, from identical logits (rtol 1e-6,
as the losses rung; a few ulps absolute where a gradient cancels to ~0).

RandAugment views (FixMatch's strong view) are exact for the images whose drawn ops are all
exact ones; the blend and resampling ops have their own bounds, with their causes, in
parity_tests/test_randaugment_parity.py, and a 1-level blend difference can grow through a
second op (posterize, equalize), so those images are left to that rung."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sesemi_common import methods as registry
from sesemi_common import randaugment
from sesemi_common.config import Config, apply_overrides
from sesemi_common.sampling import sample_view_params_numpy
from sesemi_jax import methods as jax_methods
from sesemi_torch import methods as torch_methods

from .test_randaugment_parity import EXACT_OPS

NUM_CLASSES, N_UNLABELED = 10, 5
WITH_VIEWS = [name for name in registry.method_names() if registry.get(name).views_per_image]


def _config(name: str) -> Config:
    # Mid-ramp-up, so the ramp-up weight itself is compared too.
    knobs = registry.get(name).knobs
    rampup = [f"method.{name}.rampup_steps=10"] if knobs and hasattr(knobs, "rampup_steps") else []
    return apply_overrides(Config(), [f"method.name={name}", *rampup])


@pytest.mark.parametrize("name", WITH_VIEWS)
def test_views_from_the_same_parameters_are_identical(name, np_rng):
    config, spec = _config(name), registry.get(name)
    images = np_rng.integers(0, 256, (N_UNLABELED, 32, 32, 3), dtype=np.uint8)
    params = sample_view_params_numpy(np_rng, spec.view_params, N_UNLABELED, padding=2)
    j_views, j_targets = jax_methods.load(config).apply_views(jnp.asarray(images), params, config)
    t_views, t_targets = torch_methods.load(config).apply_views(
        torch.from_numpy(images).permute(0, 3, 1, 2), {k: torch.from_numpy(v) for k, v in params.items()}, config)
    assert set(j_views) == set(t_views) == {b.view for b in spec.branches}
    total = sum(len(v) for v in j_views.values())
    assert total == N_UNLABELED * spec.views_per_image
    for view, batch in j_views.items():  # the trainers and this rung take every view to be one size
        assert len(batch) == total // len(j_views), f"view {view!r} holds {len(batch)} of {total} images: every " \
            "view must hold the same number (docs/ADDING_A_METHOD.md)"
    for view in j_views:
        compared = _exactly_comparable(spec, params, view)
        assert compared.any()
        np.testing.assert_array_equal(np.asarray(j_views[view])[compared],
                                      t_views[view].permute(0, 2, 3, 1).numpy()[compared])
    assert set(j_targets) == set(t_targets)
    for key in j_targets:
        np.testing.assert_array_equal(np.asarray(j_targets[key]), t_targets[key].numpy())


def _exactly_comparable(spec: registry.MethodSpec, params: dict, view: str) -> np.ndarray:
    """Images of `view` that must match exactly: all, unless the view's RandAugment drew an op
    with a bound of its own (see the module docstring). A view's parameters share its name's prefix."""
    ops = [params[p.name] for p in spec.view_params if p.kind == "randaugment_ops" and p.name.startswith(view)]
    exact = np.ones(N_UNLABELED * spec.views_per_image // len({b.view for b in spec.branches}), bool)
    for drawn in ops:
        exact &= np.isin(drawn, [randaugment.op_index(name) for name in EXACT_OPS]).all(axis=1)
    return exact


def _logits(spec: registry.MethodSpec, rng: np.random.Generator, view_sizes: dict[str, int]):
    """Random logits of every head of every branch, and the targets the loss reads."""
    classes = {"sup": NUM_CLASSES, **spec.heads}
    outputs = {b.name: {h: rng.normal(0, 2, (view_sizes[b.view], classes[h])).astype(np.float32) for h in b.heads}
               for b in spec.branches}
    targets = {h: rng.integers(0, classes[h], view_sizes[b.view])
               for b in spec.branches for h in b.heads if h != "sup"}
    if spec.views_per_image:  # the trainers pass the unlabeled images' labels, for logging only
        targets["true_labels"] = rng.integers(0, NUM_CLASSES, N_UNLABELED)
    return outputs, targets


@pytest.mark.parametrize("name", registry.method_names())
@pytest.mark.parametrize("step", [3, 40])
def test_loss_terms_and_logit_gradients_agree(name, step, np_rng):
    config, spec = _config(name), registry.get(name)
    per_view = N_UNLABELED * spec.views_per_image // max(len({b.view for b in spec.branches}), 1)
    outputs, targets = _logits(spec, np_rng, {b.view: per_view for b in spec.branches})
    sup = np_rng.normal(0, 2, (8, NUM_CLASSES)).astype(np.float32)
    labels = np_rng.integers(0, NUM_CLASSES, 8)
    knobs = registry.knobs(config)

    def jax_total(sup_logits, outs):
        inputs = jax_methods.LossInputs(sup_logits, jnp.asarray(labels), outs,
                                        {k: jnp.asarray(v) for k, v in targets.items()}, jnp.int32(step), knobs)
        return jax_methods.load(config).loss(inputs)

    (j_total, j_terms), j_grads = jax.value_and_grad(jax_total, argnums=(0, 1), has_aux=True)(
        jnp.asarray(sup), jax.tree_util.tree_map(jnp.asarray, outputs))
    t_sup = torch.from_numpy(sup).requires_grad_()
    t_outs = {b: {h: torch.from_numpy(v).requires_grad_() for h, v in heads.items()} for b, heads in outputs.items()}
    t_total, t_terms = torch_methods.load(config).loss(torch_methods.LossInputs(
        t_sup, torch.from_numpy(labels), t_outs, {k: torch.from_numpy(v) for k, v in targets.items()}, step, knobs))
    t_total.backward()

    np.testing.assert_allclose(float(j_total), float(t_total.detach()), rtol=1e-6)
    assert set(j_terms) == set(t_terms)
    for term in t_terms:
        np.testing.assert_allclose(float(j_terms[term]), float(torch.as_tensor(t_terms[term]).detach()), rtol=1e-6,
                                   err_msg=term)
    # Gradients of softmax-based losses cancel to ~0 for confident logits: a few float32 ulps of
    # the largest gradient absolute there (the losses rung's finding).
    j_sup_grad, j_out_grads = j_grads
    _assert_grad_close(np.asarray(j_sup_grad), t_sup.grad.numpy(), "sup logits")
    for branch, heads in t_outs.items():
        for head, tensor in heads.items():
            expected = np.zeros_like(outputs[branch][head]) if tensor.grad is None else tensor.grad.numpy()
            _assert_grad_close(np.asarray(j_out_grads[branch][head]), expected, f"{branch}/{head}")


def _assert_grad_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    atol = 4 * np.finfo(np.float32).eps * max(np.abs(expected).max(), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=atol, err_msg=what)
