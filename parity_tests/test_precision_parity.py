"""train.precision=bf16 across frameworks (docs/DESIGN.md section 8), on the model rung's setting:
PyTorch's SesemiNet (random weights, perturbed BatchNorm) and its converted JAX twin, batch 8,
JAX's bfloat16 model (`make_model(..., precision="bf16")`) against PyTorch under
`torch.autocast(bfloat16)`, both with float32 weights, BatchNorm statistics and logits.

Bound, derived from bfloat16's 8-bit significand: each rounding to bfloat16 perturbs a value by
at most u = 2^-8 relative, so a result that passes n roundings on its deepest path is within
(1 + u)^n - 1 of the exact one, relative to the logits' scale (BatchNorm rescales every layer,
so errors stay relative to the activations' size). Two frameworks: twice that. n counts the
bfloat16 values on the deepest path, `ROUNDINGS` below.

Finding (measured on this CPU, relative to the largest float32 logit): the two frameworks'
bfloat16 logits differ by 0.4-0.7% for resnet20/wrn28_2/convnet13 (eval and train mode) and
0.7% / 3.8% for resnet18 in eval / train mode (batch 8 at 1x1 in its last stage), against 0.8-1.5%
(resnet18 train: 6-8%) between either framework's bfloat16 and float32 logits, and 5e-7 between
their float32 logits. So the frameworks round at the same points and mostly to the same values;
the worst-case bound (0.43 for resnet20) holds with a wide margin, and the test also holds
the gap to the rounding noise each framework shows against float32 (see the last assertion).
"""

from functools import partial

import jax
import numpy as np
import pytest
import torch

from sesemi_jax import models as jmodels

from .test_model_parity import NUM_CLASSES, NUM_PROXY, SUP_THEN_SELF, images, jax_twin, torch_net, torch_pair

U = 2.0 ** -8  # bfloat16 unit roundoff: 8 significand bits, round to nearest
# bfloat16 values on the deepest path from input to logits (the parallel 1x1 shortcuts round too,
# but are never deeper): the input cast; resnet20: stem conv and BN, 9 blocks of conv, BN, conv,
# BN, residual sum, pooled mean, head = 1 + 2 + 45 + 1 + 1; wrn28_2: stem conv, 12 blocks of BN,
# conv, BN, conv, sum, final BN, pooled mean, head = 1 + 1 + 60 + 1 + 1 + 1.
ROUNDINGS = {"resnet20": 50, "wrn28_2": 65}

pytestmark = pytest.mark.usefixtures("highest_matmul_precision", "one_torch_thread")


@partial(jax.jit, static_argnums=(0, 4))
def jax_logits(model, variables, x_sup, x_self, train):
    outputs = model.apply(variables, x_sup, x_self, heads=SUP_THEN_SELF, train=train,
                          mutable=["batch_stats"] if train else False)
    sup, self_ = outputs[0] if train else outputs
    return sup["sup"], self_["self"]


def torch_logits(model, t_sup, t_self, bf16):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        sup, self_ = torch_pair(model, t_sup, t_self)
    return np.concatenate([sup.numpy(), self_.numpy()], axis=1)


# resnet20 in train mode (what bf16 trains with), wrn28_2 in eval mode (the model rung's).
@pytest.mark.parametrize("backbone, train", [("resnet20", True), ("wrn28_2", False)])
def test_bf16_logits_agree_within_the_bfloat16_bound(backbone, train, np_rng, tmp_path):
    model = torch_net(backbone).train(train)
    _, variables = jax_twin(model, backbone, tmp_path)
    flax_bf16 = jmodels.make_model(backbone, NUM_CLASSES, {"self": NUM_PROXY}, precision="bf16")
    (x_sup, t_sup), (x_self, t_self) = images(np_rng, 8), images(np_rng, 8)
    # Train mode moves the running statistics: each forward starts from the same state.
    state = {k: v.clone() for k, v in model.state_dict().items()}
    reference = torch_logits(model, t_sup, t_self, bf16=False)
    model.load_state_dict(state)
    torch_bf16 = torch_logits(model, t_sup, t_self, bf16=True)
    jax_bf16 = np.concatenate([np.asarray(a) for a in jax_logits(flax_bf16, variables, x_sup, x_self, train)], 1)

    scale = np.abs(reference).max()
    gap = np.abs(jax_bf16 - torch_bf16).max() / scale
    own = [np.abs(ours - reference).max() / scale for ours in (jax_bf16, torch_bf16)]
    assert jax_bf16.dtype == torch_bf16.dtype == np.float32
    assert min(own) > U / 4, f"bfloat16 is not in effect in both frameworks: {own} from float32"
    assert gap <= 2 * ((1 + U) ** ROUNDINGS[backbone] - 1), f"bf16 gap {gap:.2e} of the logit scale"
    # Rounding independently, the frameworks would differ by about sqrt(2) times the distance
    # each has from float32; sharing every rounding point, they differ by less (measured 0.3-0.5x).
    assert gap <= np.sqrt(2) * max(own), f"bf16 gap {gap:.2e} against each one's distance from float32 {own}"
