"""sesemi_torch.models: parameter counts, shapes, init laws, BatchNorm statistics, SesemiNet calls."""

import copy
import math

import pytest
import torch
import torchvision

from sesemi_torch import models
from sesemi_torch.models import SesemiNet, make_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("backbone, expected", [
    # Option B shortcuts (1x1 conv + BN at 16->32 and 32->64: 576 + 2,176 parameters); option A
    # (parameter-free) would be 269,072, the paper's "0.27M". tests/jax/test_models.py derives both by hand.
    ("resnet20", 271_824),
    ("resnet8", 77_392),  # one block per stage
    ("wrn28_2", 1_466_320),  # + a 10-class linear head (1,290) = 1,467,610, the usual "1.47M"
    ("resnet18", 11_176_512),
    ("resnet50", 23_508_032),
    ("convnet13", 3_122_560),  # the paper's "conv-large"; tests/jax/test_models.py derives it by hand
])
def test_parameter_counts(backbone, expected):
    model = make_model(backbone, num_classes=10, heads={"self": 6})
    assert count(model.backbone) == expected
    assert count(model) == expected + (model.backbone.out_features + 1) * (10 + 6)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_backbones_are_torchvision_without_fc(name):
    reference = getattr(torchvision.models, name)(weights=None)
    backbone = models.make_backbone(name)
    expected = {k: v.shape for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in backbone.state_dict().items()} == expected
    assert count(reference) - count(backbone) == reference.fc.weight.numel() + reference.fc.bias.numel()


@pytest.mark.parametrize("backbone", ["resnet20", "resnet8", "wrn28_2", "resnet18", "resnet50", "convnet13"])
def test_backbone_returns_pooled_features(backbone):
    module = models.make_backbone(backbone).eval()
    with torch.no_grad():
        assert module(torch.zeros(2, 3, 32, 32)).shape == (2, module.out_features)


def test_sesemi_net_output_shapes():
    model = make_model("resnet20", num_classes=10, heads={"self": 6}).train()
    for joint in (False, True):
        sup, self_ = model(torch.randn(3, 3, 32, 32), torch.randn(5, 3, 32, 32),
                           heads=(("sup",), ("self", "sup")), joint_forward=joint)
        assert (sup["sup"].shape, self_["self"].shape, self_["sup"].shape) == ((3, 10), (5, 6), (5, 10))
    (out,) = model(torch.randn(3, 3, 32, 32))
    assert set(out) == {"sup"} and out["sup"].shape == (3, 10)  # the supervised head alone by default
    assert not hasattr(make_model("resnet20", 7), "self_head")


def test_convnet13_layers_and_init():
    torch.manual_seed(0)
    backbone = models.make_backbone("convnet13")
    convs = [m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.padding[0]) for c in convs] == [
        (128, 3, 1), (128, 3, 1), (128, 3, 1), (256, 3, 1), (256, 3, 1), (256, 3, 1),
        (512, 3, 0), (256, 1, 0), (128, 1, 0)]
    assert all(torch.equal(c.bias, torch.zeros_like(c.bias)) for c in convs)
    std = math.sqrt(2.0 / (3 * 3 * 256))  # kaiming normal, fan_out, as the other backbones
    assert abs(backbone.conv5.weight.std().item() / std - 1) < 0.02
    # 32 -> pool 16 -> pool 8 -> valid 3x3 6: the paper's "6 x 6 x 128" before pooling.
    seen = []
    backbone.conv9.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    with torch.no_grad():
        backbone.eval()(torch.zeros(2, 3, 32, 32))
    assert seen == [(2, 128, 6, 6)]


def test_init_laws():
    torch.manual_seed(0)
    model = make_model("resnet20", 10, {"self": 6})
    weight = model.backbone.layer3[1].conv2.weight.detach()  # 64 x 64 x 3 x 3
    std = math.sqrt(2.0 / (3 * 3 * 64))  # kaiming normal, fan_out, relu gain
    assert abs(weight.std().item() / std - 1) < 0.02 and abs(weight.mean().item()) < 0.02 * std
    assert 0.035 < (weight.abs() > 2 * std).float().mean().item() < 0.057  # untruncated normal: 4.6%
    head = model.sup_head.linear
    bound = 1 / math.sqrt(64)
    assert 0.95 * bound < head.weight.abs().max().item() <= bound
    assert torch.equal(head.bias, torch.zeros(10))
    bn = model.backbone.layer2[0].downsample[1]
    assert torch.equal(bn.weight, torch.ones(32)) and torch.equal(bn.bias, torch.zeros(32))


def test_batchnorm_running_var_is_unbiased():
    # The reference behaviour sesemi_jax.models.BatchNorm copies, checked by hand.
    bn = torch.nn.BatchNorm2d(2).train()
    x = torch.arange(12.0).reshape(3, 2, 1, 2)  # channel 0 holds 0,1,4,5,8,9
    out = bn(x)
    values = torch.tensor([0.0, 1, 4, 5, 8, 9])
    mean, biased = values.mean(), values.var(unbiased=False)
    assert torch.allclose(bn.running_mean[0], 0.1 * mean)
    assert torch.allclose(bn.running_var[0], 0.9 + 0.1 * biased * 6 / 5)
    assert torch.allclose(out[:, 0].flatten(), (values - mean) / torch.sqrt(biased + 1e-5), atol=1e-6)


def perturbed(model):
    """Running statistics away from (0, 1), so the order of updates shows."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    return model


def test_two_backbone_calls_supervised_first():
    torch.manual_seed(1)
    model = perturbed(make_model("resnet20", 10, {"self": 6})).train()
    reference = copy.deepcopy(model.backbone)
    x_sup, x_self = torch.randn(3, 3, 16, 16), torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        sup, self_ = model(x_sup, x_self, heads=(("sup",), ("self",)))
        sup, self_ = sup["sup"], self_["self"]
        f_sup, f_self = reference(x_sup), reference(x_self)
        torch.testing.assert_close(sup, model.sup_head(f_sup), rtol=0, atol=0)
        torch.testing.assert_close(self_, model.self_head(f_self), rtol=0, atol=0)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value, rtol=0, atol=0)


def test_joint_forward_is_one_call_on_the_concatenation():
    torch.manual_seed(2)
    model = perturbed(make_model("resnet20", 10, {"self": 6})).train()
    reference = copy.deepcopy(model.backbone)
    x_sup, x_self = torch.randn(3, 3, 16, 16), torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        sup, self_ = model(x_sup, x_self, heads=(("sup",), ("self",)), joint_forward=True)
        sup, self_ = sup["sup"], self_["self"]
        features = reference(torch.cat([x_sup, x_self]))
        torch.testing.assert_close(sup, model.sup_head(features[:3]), rtol=0, atol=0)
        torch.testing.assert_close(self_, model.self_head(features[3:]), rtol=0, atol=0)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value, rtol=0, atol=0)


def test_dropout_acts_on_the_supervised_head_in_train_only():
    model = make_model("resnet20", num_classes=10, heads={"self": 6}, dropout=0.5)
    features = torch.ones(4, 64)
    model.eval()
    assert torch.equal(model.sup_head(features), model.sup_head.linear(features))
    model.train()
    torch.manual_seed(0)
    assert not torch.allclose(model.sup_head(features), model.sup_head.linear(features))


def test_unknown_backbone_names_the_choices():
    with pytest.raises(ValueError, match="unknown backbone 'resnet21': choose one of resnet20, resnet8, wrn28_2, "
                                         "resnet18, resnet50, convnet13"):
        make_model("resnet21", 10)


def test_asking_for_a_head_the_net_lacks_is_an_error():
    model = SesemiNet("resnet20", num_classes=10)
    with pytest.raises(ValueError, match=r"this SesemiNet has no head \['self'\]: its heads are \['sup'\]"):
        model(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8), heads=(("sup",), ("self",)))


def test_bad_head_sizes_are_errors():
    with pytest.raises(ValueError, match="num_classes and every head's classes must be >= 1"):
        make_model("resnet20", 0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        make_model("resnet20", 10, dropout=1.0)
