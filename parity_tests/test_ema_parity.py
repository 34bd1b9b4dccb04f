"""Rung "K steps" for the EMA (docs/DESIGN.md sections 5 and 7): 50 updates of the exponential
moving average of params and BatchNorm statistics, JAX (`sesemi_jax.train.update_ema`,
optax's `incremental_update`) against PyTorch (`torch.optim.swa_utils.AveragedModel` with
`get_ema_multi_avg_fn`, `use_buffers=True`), fed the same sequence of synthetic weights.

rtol 1e-5 as the K-steps rung; optax rounds `(1 - d) new + d ema` and torch's lerp
`ema + (1 - d)(new - ema)`, so an average that lands near 0 carries the rounding of its
operands (|w| ~ 1, ulp 1.2e-7): a few ulps absolute (1e-6) there, as the K-steps rung allows.
"""

from types import SimpleNamespace

import jax
import numpy as np
import torch

from sesemi_common.config import Config, apply_overrides
from sesemi_jax import convert as jax_convert
from sesemi_jax import train as jax_train
from sesemi_torch import models as torch_models
from sesemi_torch import train as torch_train

DECAY, STEPS = 0.9, 50
WARMUP_STEPS = 15  # past the warm-up's cap at t = 9 for DECAY = 0.9


def _synthetic_weights(model: torch.nn.Module, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random float32 values for every float entry of the state dict (running variances > 0)."""
    weights = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            draw = rng.normal(size=value.shape)
            weights[key] = (np.abs(draw) + 0.5 if key.endswith("running_var") else draw).astype(np.float32)
    return weights


def test_ema_of_params_and_batch_stats_agrees_over_50_updates(np_rng):
    config = apply_overrides(Config(), [f"train.ema_decay={DECAY}"])
    torch.manual_seed(0)
    model = torch_models.make_model("resnet20", 10, {"self": 6})
    ema = torch_train.make_ema(model, config)  # starts as a copy of `model`
    initial = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    jax_ema = jax_convert.variables_from_state_dict(initial, "resnet20")
    for _ in range(STEPS):
        weights = _synthetic_weights(model, np_rng)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
        ema.update_parameters(model)
        variables = jax_convert.variables_from_state_dict({**initial, **weights}, "resnet20")
        jax_ema = jax_train.update_ema(jax_ema, SimpleNamespace(**variables), DECAY)

    actual = {k: v for k, v in jax_convert.state_dict_from_variables(jax.device_get(jax_ema), "resnet20").items()
              if not k.endswith("num_batches_tracked")}  # the converter writes torch's counter; no EMA of it
    expected = {k: v.numpy() for k, v in ema.module.state_dict().items() if v.is_floating_point()}
    assert set(actual) == set(expected)
    moved = max(np.abs(expected[k] - initial[k]).max() for k in expected)
    assert moved > 0.5  # the average really moved away from the initial weights
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)


def _jax_state_dict(jax_ema) -> dict[str, np.ndarray]:
    return {k: v for k, v in jax_convert.state_dict_from_variables(jax.device_get(jax_ema), "resnet20").items()
            if not k.endswith("num_batches_tracked")}  # the converter writes torch's counter; no EMA of it


def test_ema_warmup_agrees_and_is_the_plain_mean_until_the_cap(np_rng):
    """train.ema_warmup (sesemi_common/ema.py): the decay min(1 - 1/(t+1), d) of the Mean Teacher
    code, JAX's traced in the jitted update (`ema_decay_now` of the step count) and PyTorch's from
    AveragedModel's update count. Until the cap (t <= d/(1-d) = 9 for d = 0.9) the EMA is the plain
    mean of the initial weights and the t weights since, in both; then the ordinary recursion
    goes on from that mean, and after 15 updates the two frameworks agree (rtol as above)."""
    config = apply_overrides(Config(), [f"train.ema_decay={DECAY}", "train.ema_warmup=true"])
    torch.manual_seed(0)
    model = torch_models.make_model("resnet20", 10, {"self": 6})
    ema = torch_train.make_ema(model, config)
    initial = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    jax_ema = jax_convert.variables_from_state_dict(initial, "resnet20")

    @jax.jit
    def jax_update(ema_variables, variables, step):
        new_state = SimpleNamespace(**variables, step=step)
        return jax_train.update_ema(ema_variables, new_state, jax_train.ema_decay_now(config, new_state))

    seen = [{k: v for k, v in initial.items() if v.dtype.kind == "f"}]  # w_0, w_1, ...
    for t in range(1, WARMUP_STEPS + 1):
        weights = _synthetic_weights(model, np_rng)
        seen.append(weights)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
        ema.update_parameters(model)
        variables = jax_convert.variables_from_state_dict({**initial, **weights}, "resnet20")
        jax_ema = jax_update(jax_ema, variables, jax.numpy.int32(t))
        if t == 5:
            torch_ema, jax_state_dict = ema.module.state_dict(), _jax_state_dict(jax_ema)
            for key in seen[0]:
                mean = np.mean([w[key] for w in seen], axis=0, dtype=np.float64)
                np.testing.assert_allclose(torch_ema[key].numpy(), mean, rtol=1e-5, atol=1e-6, err_msg=key)
                np.testing.assert_allclose(jax_state_dict[key], mean, rtol=1e-5, atol=1e-6, err_msg=key)
    assert int(ema.n_averaged) == WARMUP_STEPS + 1  # the initial copy and the updates

    actual = _jax_state_dict(jax_ema)
    expected = {k: v.numpy() for k, v in ema.module.state_dict().items() if v.is_floating_point()}
    assert set(actual) == set(expected) == set(seen[0])
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)
        closed_form = np.mean([w[key] for w in seen[:10]], axis=0, dtype=np.float64)  # the mean up to t = 9
        for w in seen[10:]:
            closed_form = DECAY * closed_form + (1 - DECAY) * w[key]
        np.testing.assert_allclose(expected[key], closed_form, rtol=1e-5, atol=1e-6, err_msg=key)
