"""A method's state in the JAX train state (docs/DESIGN.md section 10): checkpointed exactly, and a
checkpoint written before methods carried state (no `method_state` field) still loads."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from sesemi_common.config import Config, apply_overrides
from sesemi_jax import checkpoints, methods, train


class StateBeforeMethodState(train_state.TrainState):
    """The TrainState as it was before method state."""

    batch_stats: Any
    rng: jax.Array
    ema: Any


def _state(**extra):
    return train.TrainState.create(apply_fn=None, params={"w": jnp.zeros(3)}, batch_stats={}, tx=optax.sgd(0.1),
                                   rng=jax.random.PRNGKey(1), ema={}, **extra)


def test_a_checkpoint_from_before_method_state_still_loads(tmp_path):
    old = StateBeforeMethodState.create(apply_fn=None, params={"w": jnp.arange(3.0)}, batch_stats={},
                                        tx=optax.sgd(0.1), rng=jax.random.PRNGKey(0), ema={})
    checkpoints.save(tmp_path, 3, old.replace(step=3))
    restored = checkpoints.restore(tmp_path, _state())
    assert int(restored.step) == 3 and restored.method_state == {}
    np.testing.assert_array_equal(restored.params["w"], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(restored.rng, jax.random.PRNGKey(0))


def test_a_method_state_is_checkpointed_exactly(tmp_path):
    config = apply_overrides(Config(), ["method.name=softmatch"])
    initial = methods.initial_state(config, 10)
    assert set(initial) == {"p_model", "prob_max_mu", "prob_max_var"}
    moved = {k: v + jnp.float32(1 / 3) for k, v in initial.items()}  # values no decimal print would keep
    checkpoints.save(tmp_path, 5, _state(method_state=moved))
    restored = checkpoints.restore(tmp_path, _state(method_state=initial))
    for key, value in moved.items():
        assert restored.method_state[key].dtype == jnp.float32
        np.testing.assert_array_equal(restored.method_state[key], value, err_msg=key)


def test_a_per_image_state_is_checkpointed_exactly(tmp_path):
    """FlexMatch's state: int32 selected labels, one per pool image, and float32 statuses."""
    config = apply_overrides(Config(), ["method.name=flexmatch"])
    initial = methods.initial_state(config, 10, pool_size=7)
    assert initial["selected_label"].shape == (7,) and initial["selected_label"].dtype == jnp.int32
    moved = {"selected_label": jnp.asarray([3, -1, 0, 9, -1, 2, 2], jnp.int32),
             "classwise_acc": jnp.arange(10, dtype=jnp.float32) / 3}
    checkpoints.save(tmp_path, 5, _state(method_state=moved))
    restored = checkpoints.restore(tmp_path, _state(method_state=initial))
    for key, value in moved.items():
        assert restored.method_state[key].dtype == value.dtype
        np.testing.assert_array_equal(restored.method_state[key], value, err_msg=key)
