"""Run in a process with 2 forced host devices by test_data_parallel.py: one SESEMI step on the
same state and batch with and without the batch mesh, and a float64 reference of that step on
one device; prints the differences as JSON.

x64 is enabled only so the reference can be computed: the two steps under test keep float32
parameters and batch statistics, as in training."""

import json
import sys
import tempfile
from functools import partial

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from sesemi_common.config import Config, apply_overrides  # noqa: E402
from sesemi_common.experiment import prepare  # noqa: E402
from sesemi_jax import train  # noqa: E402
from sesemi_jax.loop import _initial_state  # noqa: E402
from sesemi_jax import methods  # noqa: E402
from sesemi_jax.models import make_model  # noqa: E402
from sesemi_jax.optim import make_optimizer  # noqa: E402
from tests.kill_resume import TINY  # noqa: E402


def max_difference(a, b) -> float:
    return max(float(jnp.max(jnp.abs(x.astype(jnp.float64) - y.astype(jnp.float64))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def as_float64(tree):
    return jax.tree.map(lambda x: x.astype(jnp.float64), tree)


def main() -> None:
    config = apply_overrides(Config(), [*TINY, *sys.argv[1:]])
    with tempfile.TemporaryDirectory() as tmp:
        exp = prepare(config, f"{tmp}/run")
    method = methods.load(config)
    model = make_model(config.model.backbone, exp.num_classes, method.spec.heads, config.model.dropout)
    state = _initial_state(exp, model, make_optimizer(config.optim, config.train.steps), None)
    data = train.device_data(exp.dataset.train_images, exp.dataset.train_labels, exp.labeled, exp.mean, exp.std)
    spec = jax.jit(partial(train.sample_spec, config=config, method=method))(jax.random.PRNGKey(7), state.step, data)
    exact_state = state.replace(params=as_float64(state.params), batch_stats=as_float64(state.batch_stats))
    runs = {}
    for name, run_state, mesh in (("one", state, None), ("mesh", state, train.batch_mesh()),
                                  ("exact", exact_state, None)):
        step = jax.jit(partial(train.loss_and_grads, method=method, config=config, mesh=mesh))
        runs[name] = step(run_state, data, spec)
    (loss_1, grads_1, stats_1, terms_1, *_), (loss_2, grads_2, stats_2, terms_2, *_) = runs["one"], runs["mesh"]
    loss_exact, grads_exact = runs["exact"][:2]
    print(json.dumps({"devices": len(jax.devices()), "mesh_size": train.batch_mesh().size,
                      "dtypes": sorted({str(g.dtype) for g in jax.tree.leaves((grads_1, grads_2, stats_2))}),
                      "loss": [float(loss_1), float(loss_2), float(loss_exact)],
                      "terms": max_difference(terms_1, terms_2),
                      "grads": max_difference(grads_1, grads_2),
                      "grads_one_error": max_difference(grads_1, grads_exact),
                      "grads_mesh_error": max_difference(grads_2, grads_exact),
                      "grad_scale": max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads_exact)),
                      "batch_stats": max_difference(stats_1, stats_2)}))


if __name__ == "__main__":
    main()
