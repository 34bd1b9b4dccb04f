"""model.weights=torchvision:resnet18 in JAX: the .npz sesemi_torch.convert writes, or one line saying how to get it."""

import numpy as np
import pytest

from sesemi_common import pretrained
from sesemi_common.weights import write_npz
from sesemi_jax import convert
from sesemi_jax.convert import WeightsError
from sesemi_jax.loop import load_pretrained
from tests.jax.test_convert import assert_trees_equal, random_variables


def torchvision_npz(path, seed):
    """A resnet18 state dict as `python -m sesemi_torch.convert torchvision:resnet18` writes it (fc included)."""
    source = random_variables("resnet18", seed=seed)
    state_dict = {key.removeprefix("backbone."): value
                  for key, value in convert.state_dict_from_variables(source, "resnet18").items()
                  if key.startswith("backbone.")}
    rng = np.random.default_rng(seed)
    state_dict["fc.weight"] = rng.standard_normal((1000, 512)).astype(np.float32)
    state_dict["fc.bias"] = rng.standard_normal(1000).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_npz(state_dict, path, metadata={"weights": "ResNet18_Weights.IMAGENET1K_V1"})
    return source


def test_weights_by_name_load_the_converted_npz(tmp_path, monkeypatch):
    monkeypatch.setenv("SESEMI_CACHE_DIR", str(tmp_path))
    source = torchvision_npz(tmp_path / "pretrained" / "torchvision-resnet18-IMAGENET1K_V1.npz", seed=1)
    target = random_variables("resnet18", num_classes=4, heads={}, seed=2)
    loaded = load_pretrained(target, "torchvision:resnet18", "resnet18")
    assert_trees_equal(loaded["params"]["backbone"], source["params"]["backbone"])
    assert_trees_equal(loaded["batch_stats"], source["batch_stats"])
    assert_trees_equal(loaded["params"]["sup_head"], target["params"]["sup_head"])  # ImageNet's fc is dropped


def test_a_jax_only_install_says_how_to_get_the_npz(tmp_path, monkeypatch):
    monkeypatch.setenv("SESEMI_CACHE_DIR", str(tmp_path))
    with pytest.raises(WeightsError) as info:
        load_pretrained({}, "torchvision:resnet50", "resnet50")
    assert str(info.value) == pretrained.missing_npz_message("torchvision:resnet50")
    assert "`python -m sesemi_torch.convert torchvision:resnet50`" in str(info.value)
    assert str(tmp_path / "pretrained" / "torchvision-resnet50-IMAGENET1K_V1.npz") in str(info.value)
