"""Methods registered outside the tree (docs/ADDING_A_METHOD.md, "Plug-ins"), loaded before any config.

A plug-in is a Python module that calls `sesemi_common.methods.register(...)` when imported
(`examples/flip_proxy`). Two ways name it, and both are read here:

- the entry-point group `sesemi.methods` of an installed package (its pyproject.toml:
  `[project.entry-points."sesemi.methods"] my_method = "my_package.my_method"`): found with
  `importlib.metadata`, nothing to set;
- the environment variable `SESEMI_PLUGINS`, comma-separated module names
  (`SESEMI_PLUGINS=examples.flip_proxy`): for a module that is importable but not installed.

Registering a method changes which knobs a new `Config` has (`method.<name>.*`), so `load` runs
when the first config is built (`sesemi_common.config.method_config`): every command, the study
tool and a run directory's config.json (resume, eval, verify) see the same methods.
An environment variable, not a flag, because it reaches every process a command starts (torchrun's
workers, the study's runs, pytest) without each tool threading an option through.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from importlib import metadata
from typing import Iterator

from . import methods

ENTRY_POINT_GROUP = "sesemi.methods"
ENVIRONMENT_VARIABLE = "SESEMI_PLUGINS"

_loaded: dict[str, tuple[str, ...]] = {}  # module -> the methods its import registered
_entry_points_read = False


class PluginError(ValueError):
    """A plug-in module that cannot be imported; the message says which and where it was named."""


def _from_environment() -> list[tuple[str, str]]:
    return [(name.strip(), ENVIRONMENT_VARIABLE) for name in os.environ.get(ENVIRONMENT_VARIABLE, "").split(",")
            if name.strip()]


def _from_entry_points() -> list[tuple[str, str]]:
    return [(entry.value.partition(":")[0].strip(), f"entry point {entry.name!r} of group {ENTRY_POINT_GROUP!r}")
            for entry in metadata.entry_points(group=ENTRY_POINT_GROUP)]


def load() -> dict[str, tuple[str, ...]]:
    """Import every named plug-in not imported yet; {module: the methods it registered}.

    Cheap when nothing changed: the installed entry points are read once per process,
    SESEMI_PLUGINS at every call (a test or a notebook may set it later)."""
    global _entry_points_read
    named = _from_environment() if _entry_points_read else _from_entry_points() + _from_environment()
    for module, where in named:
        if module not in _loaded:
            _loaded[module] = _import(module, where)
    _entry_points_read = True  # only once all imported: a failing one fails every config, not only the first
    return dict(_loaded)


def _import(module: str, where: str) -> tuple[str, ...]:
    before = {name: methods.get(name) for name in methods.method_names()}
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # as `python -m` does, so a console script finds a module of the working directory
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise PluginError(f"plug-in module {module!r} (named by {where}) cannot be imported ({err}): "
                          "check its name and that its folder is on the Python path") from None
    return tuple(name for name in methods.method_names() if before.get(name) is not methods.get(name))


@contextlib.contextmanager
def isolated_registry() -> Iterator[None]:
    """Methods registered inside are forgotten on leaving: a test can register a plug-in without
    changing the configs the rest of its process builds."""
    saved = dict(methods._REGISTRY)
    try:
        yield
    finally:
        methods._REGISTRY.clear()
        methods._REGISTRY.update(saved)


def specs_of(module: str) -> tuple[methods.MethodSpec, ...]:
    """The methods a plug-in module registers, read without leaving them registered."""
    with isolated_registry():
        before = {name: methods.get(name) for name in methods.method_names()}
        if module in sys.modules:
            importlib.reload(sys.modules[module])  # its import registered them once; registering again is harmless
        else:
            importlib.import_module(module)
        return tuple(methods.get(name) for name in methods.method_names() if before.get(name) is not methods.get(name))


@contextlib.contextmanager
def registered(*specs: methods.MethodSpec) -> Iterator[None]:
    """`specs` registered for the duration of the block only."""
    with isolated_registry():
        for spec in specs:
            methods.register(spec)
        yield
