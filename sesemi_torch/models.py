"""PyTorch backbones and the two-head SESEMI network: the reference for `sesemi_jax.models`.

Layout is NCHW. The CIFAR ResNet reuses torchvision's BasicBlock, so its state-dict names
(`layer2.0.downsample.0.weight`, ...) follow torchvision's, like resnet18/resnet50 do.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock


def conv3x3(in_planes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)


def he_init_(model: nn.Module) -> None:
    """torchvision's ResNet init: kaiming normal fan-out for convs, BN weight 1 and bias 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def head_init_(linear: nn.Linear) -> nn.Linear:
    """Both frameworks: weight ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias 0."""
    bound = 1.0 / math.sqrt(linear.in_features)
    nn.init.uniform_(linear.weight, -bound, bound)
    nn.init.zeros_(linear.bias)
    return linear


def _basic_stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """Option B shortcut (1x1 conv + BN) on the first block when the shape changes."""
    downsample = None
    if stride != 1 or in_planes != planes:
        downsample = nn.Sequential(conv1x1(in_planes, planes, stride), nn.BatchNorm2d(planes))
    layers = [BasicBlock(in_planes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class CifarResNet(nn.Module):
    """He et al. 2016 CIFAR ResNet (depth 6n+2): 16/32/64 channels, option B shortcuts."""

    def __init__(self, blocks_per_stage: int = 3):
        super().__init__()
        self.conv1 = conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = _basic_stage(16, 16, blocks_per_stage, 1)
        self.layer2 = _basic_stage(16, 32, blocks_per_stage, 2)
        self.layer3 = _basic_stage(32, 64, blocks_per_stage, 2)
        self.out_features = 64
        he_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return x.mean(dim=(2, 3))


class PreActBlock(nn.Module):
    """Wide ResNet block: BN-ReLU-conv3x3-BN-ReLU-conv3x3, + shortcut (no ReLU after the sum).

    When the shape changes the 1x1 shortcut conv reads the pre-activated input, as in
    Zagoruyko and Komodakis' code.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.shortcut = conv1x1(in_planes, planes, stride) if stride != 1 or in_planes != planes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        return out + (self.shortcut(activated) if self.shortcut is not None else x)


class WideResNet(nn.Module):
    """WRN-depth-k, pre-activation: widths 16, 16k, 32k, 64k; final BN-ReLU before pooling."""

    def __init__(self, depth: int = 28, widen: int = 2):
        super().__init__()
        n = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        self.conv1 = conv3x3(3, 16)
        in_planes = 16
        for stage, (width, stride) in enumerate(zip(widths, (1, 2, 2)), start=1):
            blocks = [PreActBlock(in_planes, width, stride)] + [PreActBlock(width, width) for _ in range(n - 1)]
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
            in_planes = width
        self.final_bn = nn.BatchNorm2d(in_planes)
        self.out_features = in_planes
        he_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return F.relu(self.final_bn(x)).mean(dim=(2, 3))


# The paper's "conv-large" (vuptran/sesemi networks/convnet.py, create_network): (features,
# kernel, padding) per conv, "pool" for a 2x2/2 max pool. 3x3 convs are Keras padding='same'
# (1 px each side), the 3x3-512 and both 1x1 convs 'valid'; 32x32 inputs end at 6x6x128.
CONVNET13_LAYERS: tuple = ((128, 3, 1), (128, 3, 1), (128, 3, 1), "pool",
                           (256, 3, 1), (256, 3, 1), (256, 3, 1), "pool",
                           (512, 3, 0), (256, 1, 0), (128, 1, 0))
LEAKINESS = 0.1  # LeakyReLU slope of the paper's ConvNet


class ConvNet13(nn.Module):
    """The 13-layer max-pooling ConvNet of the SESEMI paper's code (`CONVNET13_LAYERS`): every
    conv has a bias (Keras use_bias=True; zero at init) and is followed by BatchNorm and
    LeakyReLU 0.1; global average pool at the end. Modules `conv1`..`conv9`, `bn1`..`bn9`.
    The paper's in-network dropout after each pool is 0.0 for CIFAR (train_evaluate_sesemi.py,
    `in_network_dropout`), so it is left out here."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.plan: list[str | int] = []  # forward order: a conv's index, or "pool"
        convs = 0
        for layer in CONVNET13_LAYERS:
            if layer == "pool":
                self.plan.append("pool")
                continue
            features, kernel, pad = layer
            convs += 1
            self.add_module(f"conv{convs}", nn.Conv2d(in_channels, features, kernel, padding=pad, bias=True))
            self.add_module(f"bn{convs}", nn.BatchNorm2d(features))
            self.plan.append(convs)
            in_channels = features
        self.out_features = in_channels
        he_init_(self)
        for index in range(1, convs + 1):
            nn.init.zeros_(getattr(self, f"conv{index}").bias)  # torch's default is uniform; Keras' zeros

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.plan:
            if step == "pool":
                x = F.max_pool2d(x, 2, stride=2)
            else:
                x = F.leaky_relu(getattr(self, f"bn{step}")(getattr(self, f"conv{step}")(x)), LEAKINESS)
        return x.mean(dim=(2, 3))


def _torchvision_backbone(name: str) -> nn.Module:
    """torchvision's ResNet (its own He fan-out init) with `fc` replaced by Identity."""
    model = getattr(torchvision.models, name)(weights=None)
    model.out_features = model.fc.in_features
    model.fc = nn.Identity()
    return model


def resnet20() -> nn.Module:
    return CifarResNet(blocks_per_stage=3)


def resnet8() -> nn.Module:
    return CifarResNet(blocks_per_stage=1)


def wrn28_2() -> nn.Module:
    return WideResNet(depth=28, widen=2)


def resnet18() -> nn.Module:
    return _torchvision_backbone("resnet18")


def resnet50() -> nn.Module:
    return _torchvision_backbone("resnet50")


def convnet13() -> nn.Module:
    return ConvNet13()


BACKBONES = {"resnet20": resnet20, "resnet8": resnet8, "wrn28_2": wrn28_2, "resnet18": resnet18, "resnet50": resnet50,
             "convnet13": convnet13}


def check_backbone(backbone: str) -> None:
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone '{backbone}': choose one of {', '.join(BACKBONES)}")


def make_backbone(backbone: str) -> nn.Module:
    check_backbone(backbone)
    return BACKBONES[backbone]()


class SesemiNet(nn.Module):
    """Shared backbone, supervised head `sup` (dropout -> linear) and a method's extra heads
    (linear each, `{name}_head`; SESEMI's is `self`).

    Called on one or more inputs, it returns one {head name: logits} per input, with the heads
    `heads[i]` asks of input i (default: the supervised head only). Train/eval is the module's
    mode (`model.train()`, `model.eval()`). Without `joint_forward` the backbone runs once per
    input, in order (supervised batch first): each call normalizes with its own batch
    statistics and all update the running statistics, in that order. With it, one call on the
    concatenation. Under bfloat16 autocast (train.precision=bf16) the logits are cast back to
    float32: losses and metrics never see bfloat16 (docs/DESIGN.md section 8).
    """

    def __init__(self, backbone: str, num_classes: int, heads: dict[str, int] | None = None, dropout: float = 0.0):
        super().__init__()
        self.backbone = make_backbone(backbone)
        features = self.backbone.out_features
        self.sup_head = nn.Sequential(OrderedDict(
            dropout=nn.Dropout(dropout), linear=head_init_(nn.Linear(features, num_classes))))
        self.head_names = ("sup", *(heads or {}))
        for name, classes in (heads or {}).items():
            setattr(self, f"{name}_head", head_init_(nn.Linear(features, classes)))

    def forward(self, *inputs: torch.Tensor, heads: Sequence[Sequence[str]] | None = None,
                joint_forward: bool = False) -> tuple[dict[str, torch.Tensor], ...]:
        heads = heads or (("sup",),) * len(inputs)
        unknown = {name for wanted in heads for name in wanted} - set(self.head_names)
        if unknown:
            raise ValueError(f"this SesemiNet has no head {sorted(unknown)}: its heads are {sorted(self.head_names)}")
        if joint_forward and len(inputs) > 1:
            per_input = self.backbone(torch.cat(inputs)).split([len(x) for x in inputs])
        else:
            per_input = [self.backbone(x) for x in inputs]
        return tuple({name: _float32(getattr(self, f"{name}_head")(f)) for name in wanted}
                     for f, wanted in zip(per_input, heads))


def _float32(logits: torch.Tensor) -> torch.Tensor:
    # Only autocast's bfloat16 is cast: a float64 model (the parity ladder) keeps its float64.
    return logits.float() if logits.dtype == torch.bfloat16 else logits


def make_model(backbone: str, num_classes: int, heads: dict[str, int] | None = None,
               dropout: float = 0.0) -> SesemiNet:
    check_backbone(backbone)
    if num_classes < 1 or any(classes < 1 for classes in (heads or {}).values()):
        raise ValueError(f"num_classes and every head's classes must be >= 1, got {num_classes} and {heads}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return SesemiNet(backbone, num_classes, heads, dropout)
