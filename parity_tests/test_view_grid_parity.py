"""The picture of the views (sesemi_common/view_grid.py) is the same in both frameworks: for
every shipped method, the same spec through each framework's own crop, flip and `apply_views`
gives the same uint8 rows, and so the same grid, pixel for pixel.

FixMatch's strong view goes through RandAugment, whose blends may differ by one level between
the frameworks (parity_tests/test_randaugment_parity.py says why); on these images and steps it
is exact, which the test holds, so a change that moves it shows here first."""

import numpy as np
import pytest

from sesemi_common.config import Config, apply_overrides
from sesemi_common.methods import method_names
from sesemi_common.view_grid import view_grid
from sesemi_jax import methods as jax_methods
from sesemi_jax import view_pictures as jax_pictures
from sesemi_torch import methods as torch_methods
from sesemi_torch import view_pictures as torch_pictures

STEPS = (0, 5)


def _config(method: str) -> Config:
    return apply_overrides(Config(), [f"method.name={method}", "train.view_images=3",
                                      *(["train.batch_unlabeled=0"] if method == "supervised" else [])])


def _rows(method: str):
    config = _config(method)
    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    labeled = np.arange(0, 40, 2)
    jax_rows = jax_pictures.make_pictures(jax_methods.load(config), config, images, labeled)
    torch_rows = torch_pictures.make_pictures(torch_methods.load(config), config, images, labeled)
    return [(jax_rows(step), torch_rows(step)) for step in STEPS]


@pytest.mark.slow
@pytest.mark.parametrize("method", [*method_names(), "sesemi+entmin"])  # a stack: views of two sizes
def test_view_rows_and_grid_match_between_frameworks(method):
    for j_rows, t_rows in _rows(method):
        assert list(j_rows) == list(t_rows)
        for name in t_rows:
            assert j_rows[name].dtype == t_rows[name].dtype == np.uint8, name
            np.testing.assert_array_equal(j_rows[name], t_rows[name], err_msg=name)
        np.testing.assert_array_equal(view_grid(j_rows), view_grid(t_rows))


def test_a_stacks_rows_name_each_parts_views():
    (j_rows, _), _ = _rows("sesemi+entmin")
    assert list(j_rows) == ["labeled", "unlabeled", *[f"sesemi.proxy {k}" for k in range(6)], "entmin.a"]
    assert all(rows.shape == (3, 32, 32, 3) for rows in j_rows.values())


def test_rows_name_every_view_the_method_trains_on():
    (j_rows, _), _ = _rows("sesemi")
    assert list(j_rows) == ["labeled", "unlabeled", *[f"proxy {k}" for k in range(6)]]
    assert all(rows.shape == (3, 32, 32, 3) for rows in j_rows.values())
    # proxy view 1 is the quarter turn of view 0 (the translated image), image by image
    np.testing.assert_array_equal(j_rows["proxy 1"], np.rot90(j_rows["proxy 0"], 1, axes=(1, 2)))
