"""Parity rung "model" (docs/DESIGN.md section 5): whole networks with weights converted through `.npz`.

Each PyTorch SesemiNet is random-initialized, its BatchNorm affine parameters are randomized and
three train-mode forward passes on random batches move its running statistics, so eval-mode
BatchNorm is not the identity. Its state dict goes through sesemi_torch.convert.save_npz and
sesemi_jax.convert.load_npz (the path users take). Eval logits of each backbone at batch 8 must
agree to atol 1e-5; for resnet20, wrn28_2 and convnet13 so must train-mode logits and the running
statistics both backbone calls leave behind, at odd batch sizes, with and without joint_forward.
Inputs are 32x32, which keeps resnet50 fast (its last stage runs at 1x1).
Matmul precision 'highest' (conftest): a no-op on this CPU, needed on GPU/TPU.
"""

from functools import partial

import jax
import numpy as np
import pytest
import torch
import torchvision

from sesemi_jax import convert as jconvert
from sesemi_jax import models as jmodels
from sesemi_torch import convert as tconvert
from sesemi_torch import models as tmodels

ATOL = 1e-5  # docs/DESIGN.md section 5, model
NUM_CLASSES, NUM_PROXY = 10, 6

pytestmark = pytest.mark.usefixtures("highest_matmul_precision", "one_torch_thread")


def perturb_batchnorm(model, seed):
    """Random BN affine parameters, then running statistics moved by three train-mode passes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=generator))
        model.train()
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32, generator=generator))
    return model.eval()


def torch_net(backbone, seed=0):
    torch.manual_seed(seed)
    return perturb_batchnorm(tmodels.make_model(backbone, NUM_CLASSES, {"self": NUM_PROXY}), seed)


def jax_twin(torch_model, backbone, tmp_path):
    """The Flax SesemiNet and its variables, through the `.npz` file."""
    path = tmp_path / f"{backbone}.npz"
    tconvert.save_npz(torch_model, path)
    return jmodels.make_model(backbone, NUM_CLASSES, {"self": NUM_PROXY}), jconvert.load_npz(path, backbone)


SUP_THEN_SELF = (("sup",), ("self",))  # the supervised head on the first input, the self head on the second


@partial(jax.jit, static_argnums=0)
def jax_eval(model, variables, x_sup, x_self):
    sup, self_ = model.apply(variables, x_sup, x_self, heads=SUP_THEN_SELF, train=False)
    return sup["sup"], self_["self"]


@partial(jax.jit, static_argnums=(0, 4))
def jax_train(model, variables, x_sup, x_self, joint_forward):
    (sup, self_), updated = model.apply(variables, x_sup, x_self, heads=SUP_THEN_SELF, train=True,
                                        joint_forward=joint_forward, mutable=["batch_stats"])
    return (sup["sup"], self_["self"]), updated


def torch_pair(model, t_sup, t_self, joint_forward=False):
    sup, self_ = model(t_sup, t_self, heads=SUP_THEN_SELF, joint_forward=joint_forward)
    return sup["sup"], self_["self"]


def images(rng, n):
    """The same images for both: NHWC for JAX, NCHW for PyTorch."""
    x = rng.normal(size=(n, 32, 32, 3)).astype(np.float32)
    return x, torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def assert_close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual), expected.detach().numpy(), rtol=0, atol=ATOL)


@pytest.mark.parametrize("backbone", ["resnet20", "resnet8", "wrn28_2", "resnet18", "resnet50", "convnet13"])
def test_eval_logits(backbone, np_rng, tmp_path):
    model = torch_net(backbone)
    flax_model, variables = jax_twin(model, backbone, tmp_path)
    (x_sup, t_sup), (x_self, t_self) = images(np_rng, 8), images(np_rng, 8)
    with torch.no_grad():
        sup, self_ = torch_pair(model, t_sup, t_self)
    jax_sup, jax_self = jax_eval(flax_model, variables, x_sup, x_self)
    assert_close(jax_sup, sup)
    assert_close(jax_self, self_)


@pytest.mark.parametrize("backbone", ["resnet20", "wrn28_2", "convnet13"])
@pytest.mark.parametrize("n_sup, n_self, joint_forward", [(3, 5, False), (3, 5, True)])
def test_train_forward_and_running_stats(backbone, n_sup, n_self, joint_forward, np_rng, tmp_path):
    model = torch_net(backbone, seed=1)
    flax_model, variables = jax_twin(model, backbone, tmp_path)
    (x_sup, t_sup), (x_self, t_self) = images(np_rng, n_sup), images(np_rng, n_self)
    with torch.no_grad():
        sup, self_ = torch_pair(model.train(), t_sup, t_self, joint_forward)
    (jax_sup, jax_self), updated = jax_train(flax_model, variables, x_sup, x_self, joint_forward)
    assert_close(jax_sup, sup)
    assert_close(jax_self, self_)

    before = jconvert.state_dict_from_variables(variables, backbone)
    after = jconvert.state_dict_from_variables({**variables, **updated}, backbone)
    running = [key for key in after if key.endswith(("running_mean", "running_var"))]
    assert len(running) == {"resnet20": 42, "wrn28_2": 50, "convnet13": 18}[backbone]  # 21 / 25 / 9 BatchNorms
    assert max(np.abs(after[key] - before[key]).max() for key in running) > 1000 * ATOL  # not vacuous
    torch_state = model.state_dict()
    for key in running:
        np.testing.assert_allclose(after[key], torch_state[key].numpy(), rtol=0, atol=ATOL, err_msg=key)


def test_torchvision_resnet18_state_dict_through_both_loaders(np_rng, tmp_path):
    """torchvision.models.resnet18().state_dict(), fc included, as its pretrained file would be."""
    reference = perturb_batchnorm(torchvision.models.resnet18(weights=None), seed=2)
    pth = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), pth)

    model = torch_net("resnet18", seed=3)
    flax_model, variables = jax_twin(model, "resnet18", tmp_path)  # heads from `model`
    tconvert.load_torchvision_weights(model, pth)
    tconvert.torchvision_pth_to_npz(pth, tmp_path / "resnet18_tv.npz")
    variables = jconvert.load_torchvision_weights(variables, tmp_path / "resnet18_tv.npz", "resnet18")

    (x_sup, t_sup), (x_self, t_self) = images(np_rng, 8), images(np_rng, 8)
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(t_sup), reference(t_sup), rtol=0, atol=0)
        sup, self_ = torch_pair(model, t_sup, t_self)
    jax_sup, jax_self = jax_eval(flax_model, variables, x_sup, x_self)
    assert_close(jax_sup, sup)
    assert_close(jax_self, self_)
