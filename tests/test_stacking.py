"""Stacked methods (`method.name=sesemi+entmin`, sesemi_common/methods/stacking.py): the composed
entry, the one-line refusals, the total (CE_sup counted once) in both frameworks on known logits,
and both CLIs training the stack with each part's terms in metrics.jsonl."""

import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sesemi_common import methods
from sesemi_common.config import Config, ConfigError, apply_overrides
from sesemi_jax import methods as jax_methods
from sesemi_torch import methods as torch_methods

from tests.kill_resume import TINY


def stacked(*overrides):
    return apply_overrides(Config(), ["method.name=sesemi+entmin", *overrides])


def test_the_stack_unites_the_parts_and_keeps_each_views_size():
    config = stacked("train.batch_unlabeled=4")
    spec = methods.get(config.method.name)
    assert spec.heads == {"self": 6} and spec.parts == ("sesemi", "entmin") and spec.views_per_image == 7
    assert [(b.name, b.view, b.heads) for b in spec.branches] == [("sesemi.self", "sesemi.proxy", ("self",)),
                                                                  ("entmin.unlabeled", "entmin.a", ("sup",))]
    assert [p.name for p in spec.view_params] == ["sesemi.offsets", "entmin.offsets_a", "entmin.flips_a"]
    assert methods.view_sizes(config) == {"sesemi.proxy": 24, "entmin.a": 4}
    assert methods.images_per_step(config) == config.train.batch_labeled + 28
    knobs = methods.knobs(stacked("method.sesemi.weight=0.5", "method.entmin.weight=0.25"))
    assert (knobs["sesemi"].weight, knobs["entmin"].weight) == (0.5, 0.25)
    assert "sesemi+entmin" not in methods.method_names()  # composed on demand, never registered


@pytest.mark.parametrize("name, message", [
    ("sesemi+flip", "part 'flip' is not a registered method"),
    ("sesemi+rotation", "parts 'sesemi' and 'rotation' both declare the head 'self'"),
    ("entmin+entmin", "names a part twice"),
    ("sesemi+supervised", "part 'supervised' trains on no unlabeled images"),
])
def test_a_stack_that_cannot_work_is_a_one_line_config_error(name, message):
    with pytest.raises(ConfigError, match=f"config key 'method.name': .*{message}") as err:
        stacked(f"method.name={name}")
    assert "\n" not in str(err.value)


def test_a_registered_name_cannot_hold_the_part_separator():
    with pytest.raises(ValueError, match="'\\+' joins the parts of a stacked method"):
        methods.register(methods.MethodSpec("a+b"))


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


# Known logits: 2 labeled images (3 classes), 1 unlabeled image in 6 proxy forms and 1 entmin view.
SUP = np.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]], np.float32)
LABELS = np.array([0, 2])
SELF = np.array([[3.0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0], [0, 0, 0.5, 0, 0, 0],
                 [0, 0, 0, -1.0, 0, 0], [1.0, 1.0, 1.0, 1.0, 2.0, 1.0], [0, 0, 0, 0, 0, 0.0]], np.float32)
SELF_TARGETS = np.arange(6)
ENTMIN = np.array([[1.0, -2.0, 0.5]], np.float32)
W_SESEMI, W_ENTMIN = 0.5, 0.25


def _expected():
    ce_sup = -_log_softmax(SUP.astype(np.float64))[np.arange(2), LABELS].mean()
    ce_self = -_log_softmax(SELF.astype(np.float64))[np.arange(6), SELF_TARGETS].mean()
    log_p = _log_softmax(ENTMIN.astype(np.float64))
    entropy = -(np.exp(log_p) * log_p).sum(-1).mean()
    return ce_sup, ce_self, entropy


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_the_total_is_ce_sup_once_plus_each_parts_weighted_term(framework):
    config = stacked(f"method.sesemi.weight={W_SESEMI}", f"method.entmin.weight={W_ENTMIN}")
    ce_sup, ce_self, entropy = _expected()
    assert (ce_sup, ce_self, entropy) == pytest.approx((1.0671, 1.3627, 0.7779), abs=1e-4)  # worked by hand
    backend, array = (jax_methods, jnp.asarray) if framework == "jax" else (torch_methods, torch.from_numpy)
    inputs = backend.LossInputs(array(SUP), array(LABELS), {"sesemi.self": {"self": array(SELF)},
                                                            "entmin.unlabeled": {"sup": array(ENTMIN)}},
                                {"sesemi.self": array(SELF_TARGETS)}, 0, methods.knobs(config), {})
    total, terms, state = backend.loss_with_state(backend.load(config), inputs)
    assert set(terms) == {"loss_sup", "sesemi/loss_self", "entmin/loss_entropy"} and state == {}
    np.testing.assert_allclose(float(total), ce_sup + W_SESEMI * ce_self + W_ENTMIN * entropy, rtol=1e-6)
    np.testing.assert_allclose([float(terms[k]) for k in ("loss_sup", "sesemi/loss_self", "entmin/loss_entropy")],
                               [ce_sup, ce_self, entropy], rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("cli", ["sesemi_jax.cli", "sesemi_torch.cli"])
def test_both_clis_train_the_stack_with_each_parts_terms(tmp_path, cli):
    overrides = [*TINY, "train.steps=4", "train.log_every=2", "train.eval_every=4", "train.checkpoint_every=4",
                 "method.name=sesemi+entmin", "method.entmin.weight=0.5"]
    subprocess.run([sys.executable, "-m", cli, "train", *overrides, "--run-dir", str(tmp_path / "run"),
                    "--no-progress"], check=True, capture_output=True, timeout=900)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [m for m in metrics if "loss" in m]
    assert [m["step"] for m in losses] == [2, 4]
    for m in losses:
        assert m["loss"] == pytest.approx(m["loss_sup"] + m["sesemi/loss_self"] + 0.5 * m["entmin/loss_entropy"],
                                          rel=1e-5)
        assert 0 < m["entmin/loss_entropy"] <= np.log(10) and m["sesemi/loss_self"] > 0
    assert any("test_accuracy" in m for m in metrics)
