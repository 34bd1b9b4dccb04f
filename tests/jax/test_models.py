"""sesemi_jax.models: parameter counts, shapes, init laws, BatchNorm statistics, SesemiNet calls.

Shapes and counts come from jax.eval_shape (no compilation); only resnet20 is ever run.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sesemi_jax import models
from sesemi_jax.models import BatchNorm, SesemiNet, SupervisedHead, conv, init_variables, make_model


def count(tree):
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def variable_shapes(model, image_size=32):
    return jax.eval_shape(lambda key: init_variables(model, key, image_size), jax.random.key(0))


def conv_params(k, c_in, c_out):
    return k * k * c_in * c_out


def bn_params(c):
    return 2 * c  # scale and bias; running statistics are not parameters


def cifar_resnet_by_hand(blocks_per_stage=3):
    """Stem, then per stage n blocks of two 3x3 conv+BN (n = 3: resnet20, n = 1: resnet8); option B
    adds 1x1 conv+BN at 16->32, 32->64."""
    total = conv_params(3, 3, 16) + bn_params(16)
    for c_in, c_out in ((16, 16), (16, 32), (32, 64)):
        total += conv_params(3, c_in, c_out) + conv_params(3, c_out, c_out) + 2 * bn_params(c_out)
        total += (blocks_per_stage - 1) * (2 * conv_params(3, c_out, c_out) + 2 * bn_params(c_out))
        if c_in != c_out:
            total += conv_params(1, c_in, c_out) + bn_params(c_out)
    return total


def wrn28_2_by_hand():
    """Stem conv, 3 stages of 4 pre-activation blocks (BN in front of each conv), final BN.
    Every stage's first block projects with a bias-free 1x1 conv (16->32, 32->64, 64->128)."""
    total, c_in = conv_params(3, 3, 16), 16
    for c_out in (32, 64, 128):
        total += bn_params(c_in) + conv_params(3, c_in, c_out) + bn_params(c_out) + conv_params(3, c_out, c_out)
        total += conv_params(1, c_in, c_out)
        total += 3 * (2 * bn_params(c_out) + 2 * conv_params(3, c_out, c_out))
        c_in = c_out
    return total + bn_params(128)


def convnet13_by_hand():
    """Nine convs with biases, each followed by a BN: 3x(3x3-128), 3x(3x3-256), 3x3-512, 1x1-256, 1x1-128."""
    convs = [(3, 3, 128), (3, 128, 128), (3, 128, 128), (3, 128, 256), (3, 256, 256), (3, 256, 256),
             (3, 256, 512), (1, 512, 256), (1, 256, 128)]
    return sum(conv_params(k, c_in, c_out) + c_out + bn_params(c_out) for k, c_in, c_out in convs)


@pytest.mark.parametrize("backbone, expected", [
    ("convnet13", 3_122_560),  # the paper's "conv-large", 3.1M; derived in convnet13_by_hand
    # Option B shortcuts: option A (parameter-free) would be 269,072, the paper's "0.27M".
    ("resnet20", 271_824),
    ("resnet8", 77_392),
    ("wrn28_2", 1_466_320),  # + a 10-class linear head (1,290) = 1,467,610, the usual "1.47M"
    ("resnet18", 11_689_512 - 513_000),  # torchvision's count minus fc (512 * 1000 + 1000)
    ("resnet50", 25_557_032 - 2_049_000),  # torchvision's count minus fc (2048 * 1000 + 1000)
])
def test_backbone_parameter_counts(backbone, expected):
    shapes = variable_shapes(make_model(backbone, num_classes=10, heads={"self": 6}))
    assert count(shapes["params"]["backbone"]) == expected
    heads = (models.FEATURES[backbone] + 1) * (10 + 6)
    assert count(shapes["params"]) == expected + heads


def test_hand_counts_match_the_stated_numbers():
    assert cifar_resnet_by_hand(3) == 271_824
    assert cifar_resnet_by_hand(1) == 77_392
    assert wrn28_2_by_hand() == 1_466_320
    assert convnet13_by_hand() == 3_122_560


def test_batch_stats_mirror_every_batchnorm():
    shapes = variable_shapes(make_model("resnet20", 10))
    stats, params = shapes["batch_stats"]["backbone"], shapes["params"]["backbone"]
    assert set(stats["layer2_0"]) == {"bn1", "bn2", "downsample_1"}
    bn_params = sum(math.prod(leaf.shape) for path, leaf in jax.tree_util.tree_leaves_with_path(params)
                    if path[-1].key in ("scale", "bias"))
    assert count(stats) == bn_params  # mean and var for each (scale, bias)


@pytest.mark.parametrize("backbone", ["resnet20", "resnet8", "wrn28_2", "resnet18", "resnet50", "convnet13"])
def test_backbone_returns_pooled_features(backbone):
    module = models.make_backbone(backbone)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(lambda k, x: module.init(k, x), jax.random.key(0), x)
    out = jax.eval_shape(lambda v, x: module.apply(v, x), variables, x)
    assert out.shape == (2, models.FEATURES[backbone])


def test_sesemi_net_output_shapes():
    model = make_model("wrn28_2", num_classes=10, heads={"self": 6})
    variables = variable_shapes(model)
    x_sup = jax.ShapeDtypeStruct((3, 32, 32, 3), jnp.float32)
    x_self = jax.ShapeDtypeStruct((5, 32, 32, 3), jnp.float32)
    for joint in (False, True):
        (sup, self_), _ = jax.eval_shape(
            lambda v, a, b, joint=joint: model.apply(v, a, b, heads=(("sup",), ("self", "sup")), train=True,
                                        joint_forward=joint, mutable=["batch_stats"]),
            variables, x_sup, x_self)
        assert (sup["sup"].shape, self_["self"].shape, self_["sup"].shape) == ((3, 10), (5, 6), (5, 10))
    (out,) = jax.eval_shape(lambda v, a: model.apply(v, a), variables, x_sup)
    assert set(out) == {"sup"} and out["sup"].shape == (3, 10)  # the supervised head alone by default


def test_supervised_only_net_has_no_self_head():
    shapes = variable_shapes(make_model("resnet20", num_classes=7, heads={}))
    assert set(shapes["params"]) == {"backbone", "sup_head"}
    assert shapes["params"]["sup_head"]["linear"]["kernel"].shape == (64, 7)


def test_convnet13_ends_at_6x6x128_before_pooling():
    """32 -> pool 16 -> pool 8 -> valid 3x3 6, as the paper's code says ("6 x 6 x 128")."""
    module = models.make_backbone("convnet13")
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(lambda k, x: module.init(k, x), jax.random.key(0), x)
    _, inter = jax.eval_shape(lambda v, x: module.apply(v, x, capture_intermediates=True), variables, x)
    assert inter["intermediates"]["conv9"]["__call__"][0].shape == (2, 6, 6, 128)
    assert inter["intermediates"]["conv7"]["__call__"][0].shape == (2, 6, 6, 512)


def test_convnet13_conv_biases_start_at_zero():
    variables = init_variables(make_model("convnet13", 10), jax.random.key(0), 32)
    for index in range(1, 10):
        np.testing.assert_array_equal(variables["params"]["backbone"][f"conv{index}"]["bias"], 0.0)


def test_stride2_conv_pads_symmetrically_like_torch():
    # 3x3 all-ones kernel, stride 2, on a 4x4 all-ones image: padding 1 on every side sees
    # 4, 6, 6, 9 ones; XLA's 'SAME' would pad only bottom/right and give 9, 6, 6, 4.
    layer = conv(1, 3, stride=2)
    variables = {"params": {"kernel": jnp.ones((3, 3, 1, 1))}}
    out = layer.apply(variables, jnp.ones((1, 4, 4, 1)))
    np.testing.assert_array_equal(out[0, :, :, 0], [[4, 6], [6, 9]])


def test_init_laws():
    # Same model and size as the resnet20_net fixture: the compiled init is reused.
    variables = init_variables(make_model("resnet20", 10, {"self": 6}), jax.random.key(1), 16)
    kernel = np.asarray(variables["params"]["backbone"]["layer3_1"]["conv2"]["kernel"])  # 3x3x64x64
    std = math.sqrt(2.0 / (3 * 3 * 64))  # kaiming normal, fan_out, relu gain
    assert abs(kernel.std() / std - 1) < 0.02 and abs(kernel.mean()) < 0.02 * std
    # Untruncated like torch: |w| > 2 std has probability 4.6% (a truncated normal has none).
    assert 0.035 < np.mean(np.abs(kernel) > 2 * std) < 0.057
    head = variables["params"]["sup_head"]["linear"]
    bound = 1 / math.sqrt(64)
    assert np.abs(head["kernel"]).max() <= bound and np.abs(head["kernel"]).max() > 0.95 * bound
    np.testing.assert_array_equal(head["bias"], np.zeros(10))
    bn, stats = variables["params"]["backbone"]["bn1"], variables["batch_stats"]["backbone"]["bn1"]
    np.testing.assert_array_equal(bn["scale"], np.ones(16))
    np.testing.assert_array_equal(bn["bias"], np.zeros(16))
    np.testing.assert_array_equal(stats["mean"], np.zeros(16))
    np.testing.assert_array_equal(stats["var"], np.ones(16))


def bn_variables(rng, channels):
    return {
        "params": {"scale": rng.uniform(0.5, 1.5, channels).astype(np.float32),
                   "bias": rng.normal(0, 0.5, channels).astype(np.float32)},
        "batch_stats": {"mean": rng.normal(0, 1, channels).astype(np.float32),
                        "var": rng.uniform(0.5, 2, channels).astype(np.float32)},
    }


def test_batchnorm_train_normalizes_biased_and_updates_unbiased():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (3, 2, 2, 4)).astype(np.float32)
    variables = bn_variables(rng, 4)
    out, updated = BatchNorm(use_running_average=False).apply(variables, x, mutable=["batch_stats"])

    x64 = x.astype(np.float64).reshape(-1, 4)
    n = x64.shape[0]  # 12 values per channel
    mean, biased_var = x64.mean(0), x64.var(0)
    p, s = variables["params"], variables["batch_stats"]
    expected = (x64 - mean) / np.sqrt(biased_var + 1e-5) * p["scale"] + p["bias"]
    np.testing.assert_allclose(np.asarray(out).reshape(-1, 4), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(updated["batch_stats"]["mean"], 0.9 * s["mean"] + 0.1 * mean, rtol=1e-6)
    np.testing.assert_allclose(updated["batch_stats"]["var"],
                               0.9 * s["var"] + 0.1 * biased_var * n / (n - 1), rtol=1e-6)
    # The unbiased factor 12/11 is visible: the biased update would be off by far more than rtol.
    assert not np.allclose(updated["batch_stats"]["var"], 0.9 * s["var"] + 0.1 * biased_var, rtol=1e-3)


def test_batchnorm_eval_uses_running_statistics():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (2, 3, 3, 5)).astype(np.float32)
    variables = bn_variables(rng, 5)
    out = BatchNorm(use_running_average=True).apply(variables, x)
    p, s = variables["params"], variables["batch_stats"]
    expected = (x - s["mean"]) / np.sqrt(s["var"] + 1e-5) * p["scale"] + p["bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_batchnorm_train_rejects_one_value_per_channel():
    variables = bn_variables(np.random.default_rng(2), 3)
    with pytest.raises(ValueError, match=r"more than 1 value per channel, got input shape \(1, 1, 1, 3\)"):
        BatchNorm(use_running_average=False).apply(variables, jnp.ones((1, 1, 1, 3)), mutable=["batch_stats"])


@pytest.fixture(scope="module")
def resnet20_net():
    model = make_model("resnet20", num_classes=10, heads={"self": 6})
    variables = init_variables(model, jax.random.key(0), 16)
    rng = np.random.default_rng(3)
    stats = jax.tree.map(lambda s: s + rng.uniform(0.1, 0.5, s.shape).astype(np.float32),
                         variables["batch_stats"])
    return model, {"params": variables["params"], "batch_stats": stats}


def backbone_train_call(params, stats, x):
    """One resnet20 call in train mode: its features and its updated batch stats."""
    features, updated = models.resnet20().apply(
        {"params": params["backbone"], "batch_stats": stats}, x, train=True, mutable=["batch_stats"])
    return features, updated["batch_stats"]


def assert_same_stats(actual, expected):
    # Separately compiled programs fuse the reductions differently: 1-ulp differences (3e-8 seen).
    # Swapping the two calls would move the running means by 0.01 * (m_sup - m_self), ~1e-3.
    jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7), actual, expected)


def linear(head, features):
    return features @ head["kernel"] + head["bias"]


def test_two_backbone_calls_supervised_first(resnet20_net):
    model, variables = resnet20_net
    rng = np.random.default_rng(4)
    x_sup, x_self = rng.normal(size=(3, 16, 16, 3)), rng.normal(size=(3, 16, 16, 3))
    (sup, self_), updated = jax.jit(lambda v, a, b: model.apply(
        v, a, b, heads=(("sup",), ("self",)), train=True, mutable=["batch_stats"]))(variables, x_sup, x_self)
    sup, self_ = sup["sup"], self_["self"]

    params, call = variables["params"], jax.jit(backbone_train_call)
    f_sup, stats = call(params, variables["batch_stats"]["backbone"], x_sup)
    f_self, stats = call(params, stats, x_self)
    np.testing.assert_allclose(sup, linear(params["sup_head"]["linear"], f_sup), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(self_, linear(params["self_head"], f_self), rtol=1e-5, atol=1e-6)
    assert_same_stats(updated["batch_stats"]["backbone"], stats)


def test_joint_forward_is_one_call_on_the_concatenation(resnet20_net):
    model, variables = resnet20_net
    rng = np.random.default_rng(5)
    x_sup, x_self = rng.normal(size=(3, 16, 16, 3)), rng.normal(size=(5, 16, 16, 3))
    (sup, self_), updated = jax.jit(lambda v, a, b: model.apply(
        v, a, b, heads=(("sup",), ("self",)), train=True, joint_forward=True, mutable=["batch_stats"]))(
        variables, x_sup, x_self)
    sup, self_ = sup["sup"], self_["self"]
    params = variables["params"]
    features, stats = jax.jit(backbone_train_call)(
        params, variables["batch_stats"]["backbone"], np.concatenate([x_sup, x_self]))
    np.testing.assert_allclose(sup, linear(params["sup_head"]["linear"], features[:3]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(self_, linear(params["self_head"], features[3:]), rtol=1e-5, atol=1e-6)
    assert_same_stats(updated["batch_stats"]["backbone"], stats)


def test_eval_leaves_batch_stats_alone_and_ignores_batch_size(resnet20_net):
    model, variables = resnet20_net
    x = np.random.default_rng(6).normal(size=(4, 16, 16, 3))
    apply = jax.jit(lambda v, x: model.apply(v, x)[0]["sup"])
    np.testing.assert_allclose(apply(variables, x)[:1], apply(variables, x[:1]), rtol=1e-5, atol=1e-6)


def test_dropout_acts_on_the_supervised_head_in_train_only():
    features = jnp.ones((4, 1000))
    head = SupervisedHead(num_classes=1, dropout=0.5)
    variables = {"params": {"linear": {"kernel": jnp.ones((1000, 1)), "bias": jnp.zeros(1)}}}
    np.testing.assert_allclose(head.apply(variables, features, train=False), 1000.0)
    out = head.apply(variables, features, train=True, rngs={"dropout": jax.random.key(0)})
    # Kept units are scaled by 2: the sum is 2 * Binomial(1000, 0.5), 1000 +- 63 (2 sigma).
    assert np.all(np.abs(np.asarray(out) - 1000.0) < 100) and len(np.unique(out)) > 1


def test_unknown_backbone_names_the_choices():
    with pytest.raises(ValueError, match="unknown backbone 'resnet21': choose one of resnet20, resnet8, wrn28_2, "
                                         "resnet18, resnet50, convnet13"):
        make_model("resnet21", 10)


def test_asking_for_a_head_the_net_lacks_is_an_error():
    model = SesemiNet("resnet20", num_classes=10)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    with pytest.raises(ValueError, match=r"this SesemiNet has no head \['self'\]: its heads are \['sup'\]"):
        jax.eval_shape(lambda x: model.init(jax.random.key(0), x, x, heads=(("sup",), ("self",))), x)


def test_bad_head_sizes_are_errors():
    with pytest.raises(ValueError, match="num_classes and every head's classes must be >= 1"):
        make_model("resnet20", 0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        make_model("resnet20", 10, dropout=1.0)
