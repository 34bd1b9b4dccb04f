"""Rung "methods" for methods registered outside the tree (docs/ADDING_A_METHOD.md, "Plug-ins"):
the worked example `examples/flip_proxy`, and every plug-in named by SESEMI_PLUGINS or installed
under the entry-point group `sesemi.methods`, get the same views and loss checks as the shipped
methods (test_methods_parity.py), so a researcher checks a new method with

    SESEMI_PLUGINS=my_package.my_method python -m pytest parity_tests/test_plugin_methods_parity.py

The example is registered only while its own checks run (`plugins.registered`): the rest of the
process keeps building configs of the shipped methods."""

import pytest

from sesemi_common import methods as registry
from sesemi_common import plugins

from . import test_methods_parity as rung

EXAMPLES = ("examples.flip_proxy",)
LOADED = plugins.load()  # before the names are listed, as any config would load them
SPECS = {spec.name: spec for module in EXAMPLES for spec in plugins.specs_of(module)}
SPECS.update({name: registry.get(name) for names in LOADED.values() for name in names})


def test_the_example_is_checked():
    assert "flip_proxy" in SPECS


@pytest.mark.parametrize("name", [name for name, spec in SPECS.items() if spec.views_per_image])
def test_plugin_views_from_the_same_parameters_are_identical(name, np_rng):
    with plugins.registered(SPECS[name]):
        rung.test_views_from_the_same_parameters_are_identical(name, np_rng)


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("step", [3, 40])
def test_plugin_loss_terms_and_logit_gradients_agree(name, step, np_rng):
    with plugins.registered(SPECS[name]):
        rung.test_loss_terms_and_logit_gradients_agree(name, step, np_rng)
