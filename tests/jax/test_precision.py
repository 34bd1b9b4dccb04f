"""train.precision in JAX (docs/DESIGN.md section 8): what computes in bfloat16 and what stays float32.

Everything here is traced (jax.make_jaxpr, jax.eval_shape), never compiled or run.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sesemi_common.config import Config, apply_overrides
from sesemi_common.sampling import HostStream
from sesemi_common.stats import channel_stats
from sesemi_jax import methods, optim, train
from sesemi_jax.models import init_variables, make_model

TWO_CALLS = (("sup",), ("self",))


def train_forward_jaxpr(backbone: str, precision: str):
    """(jaxpr, variables, outputs) of a train-mode forward of both calls, shapes only."""
    model = make_model(backbone, 10, {"self": 6}, precision=precision)
    variables = jax.eval_shape(lambda key: init_variables(model, key, 32), jax.random.key(0))
    x = jax.ShapeDtypeStruct((4, 32, 32, 3), jnp.float32)

    def forward(variables, x):
        return model.apply(variables, x, x, heads=TWO_CALLS, train=True, mutable=["batch_stats"])

    return jax.make_jaxpr(forward)(variables, x), variables, jax.eval_shape(forward, variables, x)


def dtypes(tree) -> set[str]:
    """The dtypes of the tree's floating-point leaves (an optimizer's step count is an integer)."""
    return {str(leaf.dtype) for leaf in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.floating)}


# resnet18 is resnet50's TorchvisionResNet with resnet20's BasicBlock: covered by those two.
@pytest.mark.parametrize("backbone", ["resnet20", "wrn28_2", "resnet50", "convnet13"])
def test_fp32_forward_has_no_cast_at_all(backbone):
    """The default path is the one that existed before train.precision: no bfloat16 and not one
    array cast in the traced network (leaky_relu's slope, a Python float, is the only conversion)."""
    text = str(train_forward_jaxpr(backbone, "fp32")[0])
    assert "bf16" not in text
    assert set(re.findall(r":\w+\[([^\]]*)\] = convert_element_type", text)) <= {""}  # scalars only


@pytest.mark.parametrize("backbone", ["resnet20", "wrn28_2"])
def test_bf16_convs_and_dense_layers_in_bfloat16_the_rest_float32(backbone):
    jaxpr, variables, ((sup, self_), updated) = train_forward_jaxpr(backbone, "bf16")
    by_primitive = {}
    for eqn in jaxpr.jaxpr.eqns:
        by_primitive.setdefault(eqn.primitive.name, set()).update(str(v.aval.dtype) for v in eqn.invars)
    assert by_primitive["conv_general_dilated"] == {"bfloat16"}
    assert by_primitive["dot_general"] == {"bfloat16"}  # the two heads
    assert by_primitive["reduce_sum"] == {"float32"}  # BatchNorm statistics and the pooling sum
    assert by_primitive["rsqrt"] == {"float32"}
    assert dtypes(variables) == {"float32"}  # master weights
    assert dtypes(updated) == {"float32"}  # running statistics
    assert dtypes((sup, self_)) == {"float32"}  # logits, as the losses read them


def test_bf16_train_step_keeps_state_grads_and_loss_float32():
    config = apply_overrides(Config(), ["train.batch_labeled=6", "train.batch_unlabeled=3", "train.steps=10",
                                        "train.precision=bf16"])
    method = methods.load(config)
    model = make_model("resnet20", 10, method.spec.heads, precision="bf16")
    variables = jax.eval_shape(lambda key: init_variables(model, key, 32), jax.random.key(0))
    state = jax.eval_shape(lambda v: train.create_state(model, v, optim.make_optimizer(config.optim, 10), 0), variables)
    images = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    data = train.device_data(images, np.arange(24) % 10, np.arange(12), *channel_stats(images))
    spec = jax.tree_util.tree_map(np.asarray, HostStream.for_config(np.arange(12), 24, config, seed=5)(1))
    step = lambda state: train.train_step_on_spec(state, data, spec, method=method, config=config,  # noqa: E731
                                                  schedule=optim.lr_schedule(config.optim, 10))
    new_state, metrics = jax.eval_shape(step, state)
    assert dtypes((new_state.params, new_state.opt_state, new_state.batch_stats)) == {"float32"}
    assert {k: str(v.dtype) for k, v in metrics.items()} == {k: "float32" for k in metrics}


def test_an_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="unknown precision 'fp16': choose one of fp32, bf16"):
        make_model("resnet20", 10, precision="fp16")
