"""Flax (linen) backbones and the two-head SESEMI network; twins of `sesemi_torch.models`.

Layout is NHWC. Every submodule is named after its PyTorch twin (`layer1_0` for `layer1.0`,
`downsample_0` for `downsample.0`) so `sesemi_jax.convert` maps names by one rule. Padding is
always explicit and symmetric, as in PyTorch: XLA's 'SAME' pads stride-2 convolutions on the
bottom/right only, which would shift every feature map by one pixel against PyTorch.
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

BN_MOMENTUM = 0.9  # flax convention (keep 0.9 of the old value) = torch momentum 0.1
BN_EPSILON = 1e-5

# torch.nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu"): untruncated normal with
# std sqrt(2 / (kh * kw * out_channels)); 'normal' here is untruncated too.
he_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# Linear heads, both frameworks: weight ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch's default
# nn.Linear weight law; uniform variance_scaling has limit sqrt(3 * scale / fan_in)), bias 0.
head_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


# train.precision -> the dtype convolutions and dense layers compute in. None keeps Flax's
# default (the dtype of inputs and params), so float32 is untouched and the float64 parity rungs
# stay float64. Params are float32 in both (Flax's default param_dtype): the master weights.
COMPUTE_DTYPES: dict[str, Any] = {"fp32": None, "bf16": jnp.bfloat16}


def compute_dtype(precision: str) -> Any:
    if precision not in COMPUTE_DTYPES:
        raise ValueError(f"unknown precision '{precision}': choose one of {', '.join(COMPUTE_DTYPES)}")
    return COMPUTE_DTYPES[precision]


def conv(features: int, kernel: int, stride: int = 1, padding: int | None = None,
         name: str | None = None, dtype: Any = None) -> nn.Conv:
    """Bias-free conv with explicit symmetric padding (kernel // 2 by default), He fan-out init."""
    pad = kernel // 2 if padding is None else padding
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                   padding=((pad, pad), (pad, pad)), use_bias=False,
                   kernel_init=he_normal_fan_out, dtype=dtype, name=name)


class BatchNorm(nn.Module):
    """BatchNorm over all axes but the last, with PyTorch's statistics.

    Train mode normalizes with the biased batch variance (like torch) but feeds the running
    variance the unbiased one, n / (n - 1) times larger (like torch, unlike flax.linen's
    BatchNorm), so running statistics agree between frameworks. The variance is computed in
    two passes, mean((x - mean)^2), which is more accurate than E[x^2] - E[x]^2.

    With a `dtype` (bfloat16 mixed precision) the statistics and the normalization are
    computed in float32 and only the output is cast to `dtype`, as torch's batch_norm does
    under autocast (bfloat16 in, float32 statistics, bfloat16 out).
    """

    use_running_average: bool
    momentum: float = BN_MOMENTUM
    epsilon: float = BN_EPSILON
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.dtype is not None:
            x = x.astype(jnp.float32)
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (channels,), jnp.float32)
        running_var = self.variable("batch_stats", "var", jnp.ones, (channels,), jnp.float32)
        if self.use_running_average:
            mean, var = running_mean.value, running_var.value
        else:
            mean, var = self._batch_stats(x)
            if not self.is_initializing():
                n = x.size // channels
                keep = self.momentum
                running_mean.value = keep * running_mean.value + (1.0 - keep) * mean
                running_var.value = keep * running_var.value + (1.0 - keep) * var * (n / (n - 1))
        # Same affine form as torch's CPU kernel: y = x * alpha + (bias - mean * alpha).
        alpha = jax.lax.rsqrt(var + self.epsilon) * scale
        out = x * alpha + (bias - mean * alpha)
        return out if self.dtype is None else out.astype(self.dtype)

    def _batch_stats(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        n = x.size // x.shape[-1]
        if n < 2:
            raise ValueError(f"BatchNorm in train mode needs more than 1 value per channel, got input "
                             f"shape {x.shape}: use a batch of at least 2 images")
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - mean), axis=axes)
        return mean, var


def layer_makers(dtype: Any, train: bool) -> tuple[Callable[..., nn.Conv], Callable[..., BatchNorm]]:
    """(conv, BatchNorm) constructors that compute in `dtype` (None: the inputs' and params')."""
    return partial(conv, dtype=dtype), partial(BatchNorm, use_running_average=not train, dtype=dtype)


def max_pool_3x3_stride2(x: jax.Array) -> jax.Array:
    """torch.nn.MaxPool2d(3, stride=2, padding=1): padding never wins the max (-inf)."""
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


def global_avg_pool(x: jax.Array) -> jax.Array:
    return jnp.mean(x, axis=(1, 2))


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: conv3x3-BN-ReLU-conv3x3-BN, + shortcut, ReLU."""

    planes: int
    stride: int = 1
    downsample: bool = False  # option B shortcut: 1x1 conv (stride) + BN
    dtype: Any = None
    expansion = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        make_conv, norm = layer_makers(self.dtype, train)
        out = nn.relu(norm(name="bn1")(make_conv(self.planes, 3, self.stride, name="conv1")(x)))
        out = norm(name="bn2")(make_conv(self.planes, 3, name="conv2")(out))
        if self.downsample:
            x = norm(name="downsample_1")(make_conv(self.planes, 1, self.stride, name="downsample_0")(x))
        return nn.relu(out + x)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (ResNet v1.5: the stride sits on the 3x3 conv)."""

    planes: int
    stride: int = 1
    downsample: bool = False
    dtype: Any = None
    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        make_conv, norm = layer_makers(self.dtype, train)
        out_planes = self.planes * self.expansion
        out = nn.relu(norm(name="bn1")(make_conv(self.planes, 1, name="conv1")(x)))
        out = nn.relu(norm(name="bn2")(make_conv(self.planes, 3, self.stride, name="conv2")(out)))
        out = norm(name="bn3")(make_conv(out_planes, 1, name="conv3")(out))
        if self.downsample:
            x = norm(name="downsample_1")(make_conv(out_planes, 1, self.stride, name="downsample_0")(x))
        return nn.relu(out + x)


class PreActBlock(nn.Module):
    """Wide ResNet block: BN-ReLU-conv3x3-BN-ReLU-conv3x3, + shortcut (no ReLU after the sum).

    When the shape changes the 1x1 shortcut conv reads the pre-activated input, as in
    Zagoruyko and Komodakis' code.
    """

    planes: int
    stride: int = 1
    projection: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        make_conv, norm = layer_makers(self.dtype, train)
        activated = nn.relu(norm(name="bn1")(x))
        out = make_conv(self.planes, 3, self.stride, name="conv1")(activated)
        out = make_conv(self.planes, 3, name="conv2")(nn.relu(norm(name="bn2")(out)))
        shortcut = make_conv(self.planes, 1, self.stride, name="shortcut")(activated) if self.projection else x
        return out + shortcut


def _stages(x: jax.Array, train: bool, block: Callable[..., nn.Module], widths: tuple[int, ...],
            blocks: tuple[int, ...], strides: tuple[int, ...], expansion: int = 1,
            shortcut_field: str = "downsample", dtype: Any = None) -> jax.Array:
    """Stacks `layer{i}_{j}` blocks; only the first block of a stage strides or projects."""
    for stage, (width, count, stride) in enumerate(zip(widths, blocks, strides), start=1):
        for index in range(count):
            step = stride if index == 0 else 1
            project = step != 1 or x.shape[-1] != width * expansion
            x = block(width, step, **{shortcut_field: project}, dtype=dtype, name=f"layer{stage}_{index}")(x, train)
    return x


class CifarResNet(nn.Module):
    """He et al. 2016 CIFAR ResNet (depth 6n+2): 16/32/64 channels, option B shortcuts."""

    blocks_per_stage: int = 3
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        make_conv, norm = layer_makers(self.dtype, train)
        x = nn.relu(norm(name="bn1")(make_conv(16, 3, name="conv1")(x)))
        n = self.blocks_per_stage
        x = _stages(x, train, BasicBlock, (16, 32, 64), (n, n, n), (1, 2, 2), dtype=self.dtype)
        return global_avg_pool(x)


class WideResNet(nn.Module):
    """WRN-depth-k, pre-activation: widths 16, 16k, 32k, 64k; final BN-ReLU before pooling."""

    depth: int = 28
    widen: int = 2
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        make_conv, norm = layer_makers(self.dtype, train)
        n = (self.depth - 4) // 6
        k = self.widen
        x = make_conv(16, 3, name="conv1")(x)
        x = _stages(x, train, PreActBlock, (16 * k, 32 * k, 64 * k), (n, n, n), (1, 2, 2),
                    shortcut_field="projection", dtype=self.dtype)
        x = nn.relu(norm(name="final_bn")(x))
        return global_avg_pool(x)


class TorchvisionResNet(nn.Module):
    """torchvision.models.ResNet without its `fc`: 7x7/2 stem, 3x3/2 max pool, four stages."""

    block: Any
    blocks: tuple[int, int, int, int]
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        make_conv, norm = layer_makers(self.dtype, train)
        x = nn.relu(norm(name="bn1")(make_conv(64, 7, 2, 3, name="conv1")(x)))
        x = max_pool_3x3_stride2(x)
        x = _stages(x, train, self.block, (64, 128, 256, 512), self.blocks, (1, 2, 2, 2),
                    expansion=self.block.expansion, dtype=self.dtype)
        return global_avg_pool(x)


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
    LeakyReLU 0.1; global average pool at the end. Convs are `conv1`..`conv9`, norms
    `bn1`..`bn9`, as in PyTorch. The paper's in-network dropout after each pool is 0.0 for
    CIFAR (train_evaluate_sesemi.py, `in_network_dropout`), so it is left out here."""

    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        _, norm = layer_makers(self.dtype, train)
        index = 0
        for layer in CONVNET13_LAYERS:
            if layer == "pool":
                x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
                continue
            index += 1
            features, kernel, pad = layer
            x = nn.Conv(features, (kernel, kernel), padding=((pad, pad), (pad, pad)), use_bias=True,
                        kernel_init=he_normal_fan_out, bias_init=nn.initializers.zeros, dtype=self.dtype,
                        name=f"conv{index}")(x)
            x = nn.leaky_relu(norm(name=f"bn{index}")(x), LEAKINESS)
        return global_avg_pool(x)


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet20": partial(CifarResNet, blocks_per_stage=3),
    "resnet8": partial(CifarResNet, blocks_per_stage=1),
    "wrn28_2": partial(WideResNet, depth=28, widen=2),
    "resnet18": partial(TorchvisionResNet, block=BasicBlock, blocks=(2, 2, 2, 2)),
    "resnet50": partial(TorchvisionResNet, block=Bottleneck, blocks=(3, 4, 6, 3)),
    "convnet13": ConvNet13,
}
FEATURES = {"resnet20": 64, "resnet8": 64, "wrn28_2": 128, "resnet18": 512, "resnet50": 2048, "convnet13": 128}


def check_backbone(backbone: str) -> None:
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone '{backbone}': choose one of {', '.join(BACKBONES)}")


def make_backbone(backbone: str, name: str | None = None, dtype: Any = None) -> nn.Module:
    check_backbone(backbone)
    return BACKBONES[backbone](dtype=dtype, name=name)


def resnet20(name: str | None = None) -> nn.Module:
    return make_backbone("resnet20", name)


def wrn28_2(name: str | None = None) -> nn.Module:
    return make_backbone("wrn28_2", name)


def resnet18(name: str | None = None) -> nn.Module:
    return make_backbone("resnet18", name)


def resnet50(name: str | None = None) -> nn.Module:
    return make_backbone("resnet50", name)


def convnet13(name: str | None = None) -> nn.Module:
    return make_backbone("convnet13", name)


class SupervisedHead(nn.Module):
    num_classes: int
    dropout: float = 0.0
    dtype: Any = None

    @nn.compact
    def __call__(self, features: jax.Array, train: bool) -> jax.Array:
        features = nn.Dropout(self.dropout, deterministic=not train)(features)
        return nn.Dense(self.num_classes, kernel_init=head_kernel_init, dtype=self.dtype, name="linear")(features)


class SesemiNet(nn.Module):
    """Shared backbone, supervised head `sup` (dropout -> linear) and a method's extra heads
    (linear each, `{name}_head`; SESEMI's is `self`).

    Called on one or more inputs, it returns one {head name: logits} per input, with the heads
    `heads[i]` asks of input i (default: the supervised head only). Without `joint_forward`
    the backbone runs once per input, in order (supervised batch first): each call normalizes
    with its own batch statistics and all update the running statistics, in that order. With
    it, one call on the concatenation. Train mode needs `mutable=['batch_stats']` and, when
    dropout > 0, an rng named 'dropout'. With a compute `dtype` (bfloat16) the logits are
    cast back to float32: losses and metrics never see bfloat16 (docs/DESIGN.md section 8).
    """

    backbone: str
    num_classes: int
    heads: tuple[tuple[str, int], ...] = ()  # extra heads: (name, classes)
    dropout: float = 0.0
    dtype: Any = None  # the compute dtype of convolutions and dense layers; None: that of params and inputs

    @nn.compact
    def __call__(self, *inputs: jax.Array, heads: tuple[tuple[str, ...], ...] | None = None, train: bool = False,
                 joint_forward: bool = False) -> tuple[dict[str, jax.Array], ...]:
        heads = heads or (("sup",),) * len(inputs)
        modules = {"sup": SupervisedHead(self.num_classes, self.dropout, self.dtype, name="sup_head"),
                   **{name: nn.Dense(classes, kernel_init=head_kernel_init, dtype=self.dtype, name=f"{name}_head")
                      for name, classes in self.heads}}
        unknown = {name for wanted in heads for name in wanted} - set(modules)
        if unknown:
            raise ValueError(f"this SesemiNet has no head {sorted(unknown)}: its heads are {sorted(modules)}")
        features = make_backbone(self.backbone, name="backbone", dtype=self.dtype)
        if joint_forward and len(inputs) > 1:
            sizes = [x.shape[0] for x in inputs]
            joint = features(jnp.concatenate(inputs), train)
            per_input = jnp.split(joint, list(itertools.accumulate(sizes))[:-1])
        else:
            per_input = [features(x, train) for x in inputs]
        return tuple({name: self._float32(modules[name](f, train) if name == "sup" else modules[name](f))
                      for name in wanted}
                     for f, wanted in zip(per_input, heads))

    def _float32(self, logits: jax.Array) -> jax.Array:
        return logits if self.dtype is None else logits.astype(jnp.float32)


def make_model(backbone: str, num_classes: int, heads: dict[str, int] | None = None,
               dropout: float = 0.0, precision: str = "fp32") -> SesemiNet:
    """`precision` (train.precision): fp32, or bf16 for bfloat16 convolutions and dense layers
    on float32 params, with float32 BatchNorm statistics and float32 logits."""
    check_backbone(backbone)  # fail here, with the list of names, rather than at first call
    heads = dict(heads or {})
    if num_classes < 1 or any(classes < 1 for classes in heads.values()):
        raise ValueError(f"num_classes and every head's classes must be >= 1, got {num_classes} and {heads}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return SesemiNet(backbone, num_classes, tuple(heads.items()), dropout, compute_dtype(precision))


def init_variables(model: SesemiNet, key: jax.Array, image_size: int, channels: int = 3) -> dict:
    """{'params', 'batch_stats'} for NHWC inputs of `image_size` x `image_size` x `channels`."""
    return dict(_jitted_init(model, key, image_size, channels))


@partial(jax.jit, static_argnums=(0, 2, 3))
def _jitted_init(model: SesemiNet, key: jax.Array, image_size: int, channels: int) -> Any:
    # One compiled init per (model, size): compiling the ~60 threefry draws takes seconds on CPU.
    x = jnp.zeros((1, image_size, image_size, channels), jnp.float32)
    every_head = ("sup", *(name for name, _ in model.heads))
    return model.init({"params": key}, x, heads=(every_head,), train=False)
