"""Knob ranges declared by the method registry, and paddings that fit the image (issue 30.2, 30.5)."""

import dataclasses

import pytest

from sesemi_common import methods
from sesemi_common.config import Config, ConfigError, apply_overrides


@pytest.mark.parametrize("override, message", [
    ("method.fixmatch.threshold=1.5", "config key 'method.fixmatch.threshold' must be in [0, 1], got 1.5"),
    ("method.fixmatch.threshold=-0.1", "config key 'method.fixmatch.threshold' must be in [0, 1], got -0.1"),
    ("method.sesemi.weight=-1", "config key 'method.sesemi.weight' must be zero or positive, got -1.0"),
    ("method.mean_teacher.rampup_steps=-5", "config key 'method.mean_teacher.rampup_steps' must be zero or "
                                            "positive, got -5"),
    ("optim.momentum=1", "config key 'optim.momentum' must be in [0, 1), got 1.0"),
    ("optim.poly_power=-1", "config key 'optim.poly_power' must be zero or positive, got -1.0"),
])
def test_a_knob_outside_its_range_is_refused_by_name(override, message):
    with pytest.raises(ConfigError) as err:
        apply_overrides(Config(), [override])
    assert str(err.value) == message


def test_the_edges_of_a_range_are_values():
    assert apply_overrides(Config(), ["method.fixmatch.threshold=1"]).method.fixmatch.threshold == 1.0
    assert apply_overrides(Config(), ["method.fixmatch.threshold=0"]).method.fixmatch.threshold == 0.0


@dataclasses.dataclass
class _DecayKnobs:
    decay: float = 0.999
    weight: float = 1.0


def test_a_method_registered_later_declares_its_ranges_once():
    spec = methods.register(methods.MethodSpec("_ranged", views_per_image=1, view_params=methods.TWO_VIEWS[:2],
                                               branches=(methods.Branch("u", "a"),), knobs=_DecayKnobs,
                                               ranges={"decay": methods.DECAY}))
    try:
        assert apply_overrides(Config(), ["method._ranged.decay=0.5"]).method._ranged.decay == 0.5
        with pytest.raises(ConfigError, match=r"'method._ranged.decay' must be in \[0, 1\), got 1.0"):
            apply_overrides(Config(), ["method._ranged.decay=1"])
        with pytest.raises(ConfigError, match="'method._ranged.weight' must be zero or positive"):
            apply_overrides(Config(), ["method._ranged.weight=-2"])
        with pytest.raises(ValueError, match="declares ranges of knobs it does not have: decy"):
            methods.register(dataclasses.replace(spec, ranges={"decy": methods.DECAY}))
    finally:
        methods._REGISTRY.pop("_ranged")


@pytest.mark.parametrize("overrides, message", [
    (["data.image_size=2"], "augment.translate=2 needs data.image_size > 2 (a reflect padding must be smaller than "
                            "the image), got 2: lower augment.translate or raise data.image_size"),
    (["augment.translate=40"], "augment.translate=40 needs data.image_size > 40"),
    (["method.name=fixmatch", "data.image_size=4", "augment.translate=1"],
     "method fixmatch shifts its views by up to 4 px, which needs data.image_size > 4, got 4"),
])
def test_a_padding_that_does_not_fit_the_image_is_refused_at_config_time(overrides, message):
    with pytest.raises(ConfigError) as err:
        apply_overrides(Config(), overrides)
    assert str(err.value).startswith(message)


def test_zero_padding_fits_any_image():
    assert apply_overrides(Config(), ["augment.crop=pad_crop", "augment.crop_padding=40"]).augment.crop_padding == 40
