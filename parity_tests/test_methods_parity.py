"""Rung "methods" (docs/DESIGN.md section 5): for every registered method, its views from the same
numpy-drawn parameters (exact, as the transforms rung), and its loss, each named term and the
gradient of the total with respect to every logit it reads, from identical logits (rtol 1e-6,
as the losses rung; a few ulps absolute where a gradient cancels to ~0).

RandAugment views (FixMatch's strong view) are exact for the images whose drawn ops are all
exact ones; the blend and resampling ops have their own bounds, with their causes, in
parity_tests/test_randaugment_parity.py, and a 1-level blend difference can grow through a
second op (posterize, equalize), so those images are left to that rung.

Confidence-masked losses (FixMatch's threshold, FreeMatch's self-adaptive one, SoftMatch's
truncated Gaussian) are compared where the mask keeps some images and drops others: the
stop-gradient branches' logits are confident on every other image, and a method with state
starts from `TRAINED_STATE`; the rung asserts the logged `mask_rate` is strictly between 0 and 1, since a
mask of all 0 would zero the very term under test (a planted error would pass). A method's state
(docs/DESIGN.md section 10) is compared after every one of K steps, each from its own logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sesemi_common import methods as registry
from sesemi_common.methods import STOP_GRADIENT, stacking
from sesemi_common import randaugment
from sesemi_common.config import Config, apply_overrides
from sesemi_common.sampling import sample_view_params_numpy
from sesemi_jax import methods as jax_methods
from sesemi_torch import methods as torch_methods

from .test_randaugment_parity import EXACT_OPS

NUM_CLASSES, N_UNLABELED = 10, 5
# Stacked methods (methods/stacking.py), composed from registered parts: views of different
# sizes (SESEMI's 6n beside entmin's n), CE_sup counted once, each part's terms under its name.
# sesemi+softmatch: a part with state (renamed `softmatch.<name>`) and a masked term;
# entmin+flexmatch: a part with state per unlabeled image (sized by the pool, indexed by positions).
STACKED = ["sesemi+entmin", "sesemi+softmatch", "entmin+flexmatch"]
WITH_VIEWS = [name for name in registry.method_names() if registry.get(name).views_per_image] + STACKED
WITH_STATE = [name for name in [*registry.method_names(), *STACKED] if registry.get(name).initial_state is not None]
# FixMatch's default threshold 0.95 keeps the confident images `_logits` makes and drops the
# others. The running statistics of FreeMatch and SoftMatch start at 1/C, where every image
# passes, so their rungs start from the state of a network trained for a while (entries of
# `initial_state` replaced), at their default knobs.
# FlexMatch's status starts at 0 (threshold 0: every image passes); its rung starts from a pool of
# POOL images nearly all selected, about evenly over the classes (status ~0.9: thresholds ~0.8),
# with a status per class between 0.8 and 1 (thresholds 0.63 to 0.95) for the first step.
POOL = 100
TRAINED_STATE = {"freematch": {"time_p": 0.9}, "softmatch": {"prob_max_mu": 0.7, "prob_max_var": 0.05},
                 "sesemi+softmatch": {"softmatch.prob_max_mu": 0.7, "softmatch.prob_max_var": 0.05},
                 "flexmatch": {"selected_label": np.where(np.arange(POOL) % 20 == 7, -1, np.arange(POOL) % NUM_CLASSES),
                               "classwise_acc": np.linspace(0.8, 1.0, NUM_CLASSES)}}
TRAINED_STATE["entmin+flexmatch"] = {f"flexmatch.{key}": value for key, value in TRAINED_STATE["flexmatch"].items()}
# UDA's targets are sharpened: on the confident images they are one-hot to float32 at any
# temperature, so its threshold (0.8) moves between the other two images' confidences (0.594
# and 0.588 here), whose sharpened targets depend on the temperature (a 1% error in it fails).
MIXED_KNOBS = {"uda": ["method.uda.threshold=0.59"]}
K_STEPS = 5
CONFIDENT = 10.0  # added to one logit of every other target image: its softmax is ~0.999 there


def _config(name: str) -> Config:
    # Mid-ramp-up, so the ramp-up weight itself is compared too.
    parts = registry.get(name).parts or (name,)
    rampup = [f"method.{part}.rampup_steps=10" for part in parts
              if registry.get(part).knobs and hasattr(registry.get(part).knobs, "rampup_steps")]
    return apply_overrides(Config(), [f"method.name={name}", *rampup, *MIXED_KNOBS.get(name, [])])


def _trained_states(name: str, config: Config) -> tuple[dict, dict]:
    """(JAX state, PyTorch state): the method's initial state with `TRAINED_STATE`'s entries."""
    initial = registry.initial_method_state(config, NUM_CLASSES, POOL)
    trained = {key: np.asarray(value, initial[key].dtype) for key, value in TRAINED_STATE.get(name, {}).items()}
    return ({**jax_methods.initial_state(config, NUM_CLASSES, POOL), **{k: jnp.asarray(v) for k, v in trained.items()}},
            {**torch_methods.initial_state(config, NUM_CLASSES, pool_size=POOL),
             **{k: torch.tensor(v) for k, v in trained.items()}})


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
    for view, per_image in registry.view_images(spec).items():  # the sizes the trainers and this rung expect
        assert len(j_views[view]) == len(t_views[view]) == N_UNLABELED * per_image, \
            f"view {view!r} holds {len(j_views[view])} images, its entry says {per_image} per unlabeled image " \
            "(view_images, docs/ADDING_A_METHOD.md)"
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
    exact = np.ones(N_UNLABELED * registry.view_images(spec)[view], bool)
    for drawn in ops:
        exact &= np.isin(drawn, [randaugment.op_index(name) for name in EXACT_OPS]).all(axis=1)
    return exact


def _logits(spec: registry.MethodSpec, rng: np.random.Generator, view_sizes: dict[str, int]):
    """Random logits of every head of every branch, and the targets the loss reads."""
    classes = {"sup": NUM_CLASSES, **spec.heads}
    outputs = {b.name: {h: rng.normal(0, 2, (view_sizes[b.view], classes[h])).astype(np.float32) for h in b.heads}
               for b in spec.branches}
    # Pseudo-label sources (the branches a mask reads): confident on every other image. Not the
    # teacher's: Mean Teacher's loss is not masked, and the gradient through a softmax at 0.9999
    # cancels (1 - p), which the rung compares only to a few ulps of the largest gradient.
    for branch in (b for b in spec.branches if b.mode == STOP_GRADIENT):
        for logits in outputs[branch.name].values():
            rows = np.arange(0, len(logits), 2)
            logits[rows, rng.integers(0, logits.shape[1], len(rows))] += CONFIDENT
    targets = {_target_key(spec, b, h): rng.integers(0, classes[h], view_sizes[b.view])
               for b in spec.branches for h in b.heads if h != "sup"}
    if spec.views_per_image:  # the trainers pass the unlabeled images' labels, for logging only
        targets["true_labels"] = rng.integers(0, NUM_CLASSES, N_UNLABELED)
    return outputs, targets


def _target_key(spec: registry.MethodSpec, branch: registry.Branch, head: str) -> str:
    """A head's targets are named by the head (SESEMI's `self`); in a stack, by the part's name too."""
    if not spec.parts:
        return head
    return stacking.prefixed(branch.name.split(stacking.NAME_SEPARATOR)[0], head)


def _loss_problem(name: str, rng: np.random.Generator):
    """Random logits of one step: (supervised logits, labels, {branch: {head: logits}}, targets)."""
    spec = registry.get(name)
    sizes = {view: N_UNLABELED * per_image for view, per_image in registry.view_images(spec).items()}
    outputs, targets = _logits(spec, rng, sizes)
    sup = rng.normal(0, 2, (8, NUM_CLASSES)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, 8)
    # The trainers pass every method the unlabeled images' pool positions (a repeat is possible);
    # drawn (last) only for the one that reads them, so the others' draws are as they were.
    if spec.state_per_image:
        targets["unlabeled_index"] = rng.integers(0, POOL, N_UNLABELED)
    return sup, labels, outputs, targets


def _both_losses(config: Config, problem, step: int, j_state: dict, t_state: dict):
    """Each framework's (total, terms, next state, gradients of the total w.r.t. the logits)."""
    sup, labels, outputs, targets = problem
    knobs = registry.knobs(config)

    def jax_total(sup_logits, outs):
        inputs = jax_methods.LossInputs(sup_logits, jnp.asarray(labels), outs,
                                        {k: jnp.asarray(v) for k, v in targets.items()}, jnp.int32(step), knobs,
                                        j_state)
        total, terms, state = jax_methods.loss_with_state(jax_methods.load(config), inputs)
        return total, (terms, state)

    (j_total, (j_terms, j_next)), j_grads = jax.value_and_grad(jax_total, argnums=(0, 1), has_aux=True)(
        jnp.asarray(sup), jax.tree_util.tree_map(jnp.asarray, outputs))
    t_sup = torch.from_numpy(sup).requires_grad_()
    t_outs = {b: {h: torch.from_numpy(v).requires_grad_() for h, v in heads.items()} for b, heads in outputs.items()}
    t_total, t_terms, t_next = torch_methods.loss_with_state(torch_methods.load(config), torch_methods.LossInputs(
        t_sup, torch.from_numpy(labels), t_outs, {k: torch.from_numpy(v) for k, v in targets.items()}, step, knobs,
        t_state))
    t_total.backward()
    t_grads = (t_sup.grad.numpy(), {b: {h: np.zeros_like(outputs[b][h]) if t.grad is None else t.grad.numpy()
                                        for h, t in heads.items()} for b, heads in t_outs.items()})
    return (j_total, j_terms, j_next, j_grads), (t_total.detach(), t_terms, t_next, t_grads)


@pytest.mark.parametrize("name", [*registry.method_names(), *STACKED])
@pytest.mark.parametrize("step", [0, 3, 40])
def test_loss_terms_and_logit_gradients_agree(name, step, np_rng):
    config = _config(name)
    problem = _loss_problem(name, np_rng)
    jax_side, torch_side = _both_losses(config, problem, step, *_trained_states(name, config))
    (j_total, j_terms, _, j_grads), (t_total, t_terms, _, t_grads) = jax_side, torch_side
    np.testing.assert_allclose(float(j_total), float(t_total), rtol=1e-6)
    assert set(j_terms) == set(t_terms)
    for term in t_terms:
        np.testing.assert_allclose(float(j_terms[term]), float(torch.as_tensor(t_terms[term]).detach()), rtol=1e-6,
                                   err_msg=term)
    for term in _mask_rates(t_terms):  # a masked loss: compared where its mask keeps some images and drops others
        assert 0.0 < float(t_terms[term]) < 1.0, f"{name}: {term} {float(t_terms[term])}"
    # Gradients of softmax-based losses cancel to ~0 for confident logits: a few float32 ulps of
    # the largest gradient absolute there (the losses rung's finding).
    (j_sup_grad, j_out_grads), (t_sup_grad, t_out_grads) = j_grads, t_grads
    _assert_grad_close(np.asarray(j_sup_grad), t_sup_grad, "sup logits")
    for branch, heads in t_out_grads.items():
        for head, expected in heads.items():
            _assert_grad_close(np.asarray(j_out_grads[branch][head]), expected, f"{branch}/{head}")


@pytest.mark.parametrize("name", WITH_STATE)
def test_state_after_k_steps_agrees(name, np_rng):
    """The method's state after each of K steps, each from its own logits, carried by each
    framework from its own previous state (as the EMA rung carries the EMA)."""
    config = _config(name)
    j_initial = jax_methods.initial_state(config, NUM_CLASSES, POOL)
    t_initial = torch_methods.initial_state(config, NUM_CLASSES, pool_size=POOL)
    for key in t_initial:
        np.testing.assert_array_equal(np.asarray(j_initial[key]), t_initial[key].numpy(), err_msg=key)
    j_state, t_state = _trained_states(name, config)
    before = dict(t_state)
    mask_rates = []
    for step in range(K_STEPS):
        (_, j_terms, j_state, _), (_, t_terms, t_state, _) = _both_losses(config, _loss_problem(name, np_rng), step,
                                                                          j_state, t_state)
        assert set(j_state) == set(t_state)
        for key in t_state:
            assert np.asarray(j_state[key]).dtype == t_state[key].numpy().dtype == t_initial[key].numpy().dtype, key
            assert t_initial[key].numpy().dtype in (np.float32, np.int32), key
            np.testing.assert_allclose(np.asarray(j_state[key]), t_state[key].numpy(), rtol=1e-6,
                                       err_msg=f"{key} after step {step}")
        mask_rates += [float(t_terms[term]) for term in _mask_rates(t_terms)]
    assert 0.0 < min(mask_rates) and max(mask_rates) < 1.0, mask_rates
    assert all(not torch.equal(t_state[key], before[key]) for key in before)  # every entry did move


def _mask_rates(terms: dict) -> list[str]:
    """The logged mask rates: `mask_rate`, or a stacked part's `<part>/mask_rate`."""
    return [term for term in terms if term.split(stacking.TERM_SEPARATOR)[-1] == "mask_rate"]


def _assert_grad_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    atol = 4 * np.finfo(np.float32).eps * max(np.abs(expected).max(), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=atol, err_msg=what)
