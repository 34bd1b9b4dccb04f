"""Parity rung "layers" (docs/DESIGN.md section 5): conv, BatchNorm, pooling, linear with converted weights.

The JAX side is the building blocks of sesemi_jax.models, with weights converted by
sesemi_jax.convert from the PyTorch layer's own weights. Matmul precision is 'highest'
(conftest): on this CPU XLA computes float32 convolutions and dots in float32 either way (the
outputs are bit-identical without it), but on GPU/TPU the default may use TF32/bfloat16 passes.

Finding: the table's atol 1e-6 is below the float32 rounding floor of these layers on
unit-scale data. Over 10 seeds, a 3x3 conv with 144 (576) inputs per output on N(0, 1) data
with He weights (|y| up to ~4) differed by up to 1.3e-6 (2.9e-6) between the frameworks, with
PyTorch alone up to 1.4e-6 (2.3e-6) away from float64; a 2048-input linear reached 2.6e-6,
BatchNorm eval 2.9e-6 on outputs up to ~20. The libraries sum in different orders, so they
cannot agree better than each is from the exact value. `assert_parity` therefore allows, per
element, 1e-6 plus the first-order float32 rounding estimate of that element: unit roundoff
u = 2^-24 times sqrt(number of summed terms) times the sum of the magnitudes that flow into it
(worst observed fraction of that estimate: 0.44 for conv/linear; BatchNorm, whose output passes
~6 roundings, 5.4 of it, hence its factor 8). A wrong padding, stride, layout or statistic is
off by O(0.1) or more; `test_conv_exact` shows bit-equality where float32 arithmetic is exact.
"""

import flax.linen as flax_nn
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sesemi_jax import convert as jconvert
from sesemi_jax import models as jmodels

ATOL = 1e-6  # docs/DESIGN.md section 5, layers
UNIT_ROUNDOFF = 2.0**-24

pytestmark = pytest.mark.usefixtures("highest_matmul_precision", "one_torch_thread")


def assert_parity(out, expected, magnitude, terms, factor=1.0):
    """Elementwise |JAX - PyTorch| <= 1e-6 + factor * u * sqrt(terms) * magnitude (see module doc)."""
    out = np.asarray(out)
    assert out.shape == expected.shape
    tolerance = ATOL + factor * UNIT_ROUNDOFF * np.sqrt(terms) * np.asarray(magnitude, np.float64)
    excess = np.abs(out.astype(np.float64) - expected) - tolerance
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess[worst] <= 0, (f"at {worst}: JAX {out[worst]!r}, PyTorch {expected[worst]!r}, "
                                f"tolerance {tolerance[worst]:.3g}")


def to_nchw(x_nhwc):
    return torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))


def to_nhwc(t_nchw):
    return t_nchw.detach().numpy().transpose(0, 2, 3, 1)


CONV_CASES = [
    (3, 1, 1, 16, 32, 9),
    (3, 2, 1, 16, 32, 8),  # stride 2, even size: 'SAME' would pad bottom/right only
    (3, 2, 1, 16, 32, 9),  # stride 2, odd size
    (3, 1, 1, 64, 64, 8),  # 576 inputs per output
    (1, 2, 0, 16, 32, 8),  # option B / torchvision downsample shortcut
    (1, 1, 0, 64, 256, 4),  # bottleneck 1x1
    (7, 2, 3, 3, 64, 32),  # torchvision stem
]


def jax_conv(layer, x):
    kernel_hwio = jconvert.conv_kernel_from_torch(layer.weight.detach().numpy())
    module = jmodels.conv(layer.out_channels, layer.kernel_size[0], layer.stride[0], layer.padding[0])
    return module.apply({"params": {"kernel": kernel_hwio}}, x)


@pytest.mark.parametrize("kernel, stride, padding, c_in, c_out, size", CONV_CASES)
def test_conv(np_rng, kernel, stride, padding, c_in, c_out, size):
    torch.manual_seed(0)
    layer = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
    x = np_rng.normal(size=(4, size, size, c_in)).astype(np.float32)
    expected = to_nhwc(layer(to_nchw(x)))
    magnitude = to_nhwc(F.conv2d(to_nchw(np.abs(x)).double(), layer.weight.detach().abs().double(),
                                 stride=stride, padding=padding))
    assert_parity(jax_conv(layer, x), expected, magnitude, terms=kernel * kernel * c_in)


@pytest.mark.parametrize("kernel, stride, padding, c_in, c_out, size", CONV_CASES)
def test_conv_exact(np_rng, kernel, stride, padding, c_in, c_out, size):
    """Small integers: every partial sum is exact in float32, so any order gives the same bits."""
    layer = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np_rng.integers(-2, 3, layer.weight.shape).astype(np.float32)))
    x = np_rng.integers(-3, 4, size=(4, size, size, c_in)).astype(np.float32)
    np.testing.assert_array_equal(jax_conv(layer, x), to_nhwc(layer(to_nchw(x))))


def bn_pair(np_rng, channels):
    """torch BatchNorm2d with random affine and running statistics, and the same as Flax variables."""
    layer = nn.BatchNorm2d(channels)
    values = {"weight": np_rng.uniform(0.5, 1.5, channels), "bias": np_rng.normal(0, 0.5, channels),
              "running_mean": np_rng.normal(0, 1, channels), "running_var": np_rng.uniform(0.5, 2, channels)}
    with torch.no_grad():
        for name, value in values.items():
            getattr(layer, name).copy_(torch.from_numpy(value.astype(np.float32)))
    variables = {"params": {"scale": layer.weight.detach().numpy(), "bias": layer.bias.detach().numpy()},
                 "batch_stats": {"mean": layer.running_mean.numpy().copy(), "var": layer.running_var.numpy().copy()}}
    return layer, variables


def bn_magnitude(layer, x, mean, var):
    """|alpha| (|x| + |mean|) + |bias|: what flows into y = (x - mean) * alpha + bias."""
    alpha = layer.weight.detach().double().numpy() / np.sqrt(var + layer.eps)
    return np.abs(alpha) * (np.abs(x) + np.abs(mean)) + np.abs(layer.bias.detach().double().numpy())


@pytest.mark.parametrize("shape", [(8, 6, 6, 16), (3, 5, 5, 16), (5, 1, 1, 32), (96, 8, 8, 64)])
def test_batchnorm_train(np_rng, shape):
    layer, variables = bn_pair(np_rng, shape[-1])
    old_mean, old_var = layer.running_mean.double().numpy(), layer.running_var.double().numpy()
    x = np_rng.normal(1.5, 2.0, size=shape).astype(np.float32)
    expected = to_nhwc(layer.train()(to_nchw(x)))

    out, updated = jmodels.BatchNorm(use_running_average=False).apply(variables, x, mutable=["batch_stats"])
    values = x.astype(np.float64).reshape(-1, shape[-1])
    n, mean, var = len(values), values.mean(0), values.var(0)
    assert_parity(out, expected, bn_magnitude(layer, x, mean, var), terms=n, factor=8)
    # The updates sum n values (mean) and n squared deviations (variance).
    stats = updated["batch_stats"]
    assert_parity(stats["mean"], layer.running_mean.numpy(),
                  0.9 * np.abs(old_mean) + 0.1 * np.abs(values).mean(0), terms=n)
    assert_parity(stats["var"], layer.running_var.numpy(),
                  0.9 * old_var + 0.1 * n / (n - 1) * (var + np.abs(mean) * np.abs(values - mean).mean(0)), terms=n)


def test_batchnorm_eval(np_rng):
    layer, variables = bn_pair(np_rng, 16)
    x = np_rng.normal(0.5, 2.0, size=(4, 6, 6, 16)).astype(np.float32)
    expected = to_nhwc(layer.eval()(to_nchw(x)))
    out = jmodels.BatchNorm(use_running_average=True).apply(variables, x)
    mean, var = layer.running_mean.double().numpy(), layer.running_var.double().numpy()
    assert_parity(out, expected, bn_magnitude(layer, x, mean, var), terms=1, factor=8)


@pytest.mark.parametrize("size", [8, 9, 16])
def test_max_pool(np_rng, size):
    x = np_rng.normal(-3.0, 1.0, size=(2, size, size, 8)).astype(np.float32)  # mostly negative: padding must lose
    expected = to_nhwc(nn.MaxPool2d(3, stride=2, padding=1)(to_nchw(x)))
    np.testing.assert_array_equal(jmodels.max_pool_3x3_stride2(x), expected)


def test_global_average_pool(np_rng):
    x = np_rng.normal(size=(4, 8, 8, 64)).astype(np.float32)
    expected = nn.AdaptiveAvgPool2d(1)(to_nchw(x)).flatten(1).numpy()
    assert_parity(jmodels.global_avg_pool(x), expected, np.abs(x).mean(axis=(1, 2)), terms=64)


@pytest.mark.parametrize("features", [64, 128, 512, 2048])
def test_linear(np_rng, features):
    torch.manual_seed(0)
    layer = nn.Linear(features, 10)
    x = np_rng.normal(size=(8, features)).astype(np.float32)
    expected = layer(torch.from_numpy(x)).detach().numpy()
    weight, bias = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    params = {"kernel": jconvert.linear_kernel_from_torch(weight), "bias": bias}
    magnitude = np.abs(x).astype(np.float64) @ np.abs(weight).T + np.abs(bias)
    assert_parity(flax_nn.Dense(10).apply({"params": params}, x), expected, magnitude, terms=features + 1)
