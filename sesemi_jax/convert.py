"""Flax variables <-> PyTorch state dicts, through a torch-free `.npz` keyed by PyTorch names.

One naming rule covers every backbone: a Flax module `layer1_0` is PyTorch's `layer1.0`,
leaves map as kernel -> weight (conv HWIO -> OIHW, linear (in, out) -> (out, in)),
BatchNorm scale/bias -> weight/bias, batch_stats mean/var -> running_mean/running_var.
PyTorch's `num_batches_tracked` is kept in files, ignored here, and written as 0 (SESEMI uses
momentum 0.1, so torch never reads it).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from sesemi_common.weights import WeightsError, extra_heads, read_npz, write_npz
from sesemi_jax.models import FEATURES, check_backbone, make_backbone

FlaxPath = tuple[str, ...]
# torch key -> (collection, flax path, layout); layout is conv | linear | vector.
Table = dict[str, tuple[str, FlaxPath, str]]

SUP_HEAD = "sup_head.linear"  # the supervised head (dropout -> linear); a method's heads are `{name}_head`


def _heads(state_dict: dict[str, Any]) -> tuple[str, ...]:
    """Module names of the heads a state dict may hold: the supervised one and every `{name}_head`."""
    return (SUP_HEAD, *(f"{name}_head" for name in extra_heads(state_dict)))


def conv_kernel_from_torch(weight: np.ndarray) -> np.ndarray:
    """OIHW -> HWIO."""
    return np.ascontiguousarray(np.transpose(weight, (2, 3, 1, 0)))


def conv_kernel_to_torch(kernel: np.ndarray) -> np.ndarray:
    """HWIO -> OIHW."""
    return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))


def linear_kernel_from_torch(weight: np.ndarray) -> np.ndarray:
    """(out, in) -> (in, out)."""
    return np.ascontiguousarray(weight.T)


_FROM_TORCH = {"conv": conv_kernel_from_torch, "linear": linear_kernel_from_torch, "vector": np.asarray}
_TO_TORCH = {"conv": conv_kernel_to_torch, "linear": linear_kernel_from_torch, "vector": np.asarray}
_TORCH_SHAPE = {"conv": lambda s: (s[3], s[2], s[0], s[1]), "linear": lambda s: s[::-1], "vector": tuple}


def _torch_module(path: FlaxPath) -> str:
    """('backbone', 'layer2_0', 'downsample_1') -> 'backbone.layer2.0.downsample.1'."""
    return ".".join(re.sub(r"_(\d+)$", r".\1", name) for name in path)


def _flax_module(key: str) -> FlaxPath:
    """'backbone.layer2.0.downsample.1' -> ('backbone', 'layer2_0', 'downsample_1')."""
    path: list[str] = []
    for part in key.split("."):
        if part.isdigit() and path:
            path[-1] = f"{path[-1]}_{part}"
        else:
            path.append(part)
    return tuple(path)


def _entry(collection: str, path: FlaxPath, ndim: int) -> tuple[str, str]:
    """PyTorch key and layout of one Flax leaf."""
    module, leaf = _torch_module(path[:-1]), path[-1]
    if collection == "batch_stats":
        return f"{module}.running_{leaf}", "vector"
    if leaf == "kernel":
        return f"{module}.weight", "conv" if ndim == 4 else "linear"
    return f"{module}.{'weight' if leaf == 'scale' else leaf}", "vector"


def _table(shapes: dict[str, Any]) -> tuple[Table, dict[str, tuple[int, ...]]]:
    """The torch key -> Flax leaf table and expected torch shapes of a variables tree."""
    table, torch_shapes = {}, {}
    for collection in ("params", "batch_stats"):
        for path, leaf in flatten_dict(dict(shapes.get(collection, {}))).items():
            key, layout = _entry(collection, path, len(leaf.shape))
            table[key] = (collection, path, layout)
            torch_shapes[key] = tuple(_TORCH_SHAPE[layout](tuple(leaf.shape)))
    return table, torch_shapes


@functools.lru_cache(maxsize=None)
def backbone_table(backbone: str) -> tuple[Table, dict[str, tuple[int, ...]]]:
    """Every 'backbone.*' key a state dict of this backbone must hold, with its torch shape."""
    check_backbone(backbone)
    module = make_backbone(backbone)
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), np.float32)
    shapes = jax.eval_shape(lambda k, x: module.init({"params": k}, x, train=False), jax.random.key(0), x)
    return _table({c: {"backbone": tree} for c, tree in shapes.items()})


def _head_table(state_dict: dict[str, np.ndarray], backbone: str, source: str) -> tuple[Table, dict]:
    """Entries for the heads the state dict holds (a head is optional, but whole)."""
    table, shapes = {}, {}
    for head in _heads(state_dict):
        weight, bias = f"{head}.weight", f"{head}.bias"
        if weight not in state_dict and bias not in state_dict:
            continue
        for key in (weight, bias):
            if key not in state_dict:
                raise WeightsError(f"{source}: missing key '{key}' ({head} is only partly there)")
        classes = np.shape(state_dict[weight])[0]
        path = _flax_module(head)
        table[weight] = ("params", path + ("kernel",), "linear")
        table[bias] = ("params", path + ("bias",), "vector")
        shapes[weight], shapes[bias] = (classes, FEATURES[backbone]), (classes,)
    return table, shapes


def _is_tracked_counter(key: str, table: Table) -> bool:
    """A BatchNorm's num_batches_tracked, which Flax has no use for (see module doc)."""
    return key.endswith(".num_batches_tracked") and key.replace("num_batches_tracked", "running_mean") in table


def _check_keys(found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]],
                backbone: str, source: str, hint: str = "was the file saved from another backbone?") -> None:
    for key in expected:
        if key not in found:
            raise WeightsError(f"{source}: missing key '{key}' that {backbone} needs ({hint})")
    for key, shape in found.items():
        if key not in expected:
            raise WeightsError(f"{source}: unexpected key '{key}' that {backbone} does not have ({hint})")
        if tuple(shape) != expected[key]:
            raise WeightsError(f"{source}: key '{key}' has shape {tuple(shape)}, "
                               f"{backbone} expects {expected[key]}")


def variables_from_state_dict(state_dict: dict[str, np.ndarray], backbone: str,
                              source: str = "state dict") -> dict:
    """{'params', 'batch_stats'} of a SesemiNet from its PyTorch state dict (numpy values).

    Every 'backbone.*' key must be there with its shape; the heads are converted when present.
    """
    table, expected = backbone_table(backbone)
    heads, head_shapes = _head_table(state_dict, backbone, source)
    table, expected = {**table, **heads}, {**expected, **head_shapes}
    found = {k: np.shape(v) for k, v in state_dict.items() if not _is_tracked_counter(k, table)}
    _check_keys(found, expected, backbone, source)
    flat: dict[str, dict[FlaxPath, np.ndarray]] = {"params": {}, "batch_stats": {}}
    for key, (collection, path, layout) in table.items():
        flat[collection][path] = _FROM_TORCH[layout](np.asarray(state_dict[key], np.float32))
    return {collection: unflatten_dict(leaves) for collection, leaves in flat.items()}


def state_dict_from_variables(variables: dict, backbone: str) -> dict[str, np.ndarray]:
    """The PyTorch state dict (numpy values) of SesemiNet variables; num_batches_tracked = 0."""
    table, found = _table(variables)
    _, expected = backbone_table(backbone)
    heads = {key: shape for key, shape in found.items() if not key.startswith("backbone.")}
    _check_keys(found, {**expected, **heads}, backbone, "variables",
                hint="are these the variables of another backbone?")
    state_dict = {}
    for key, (collection, path, layout) in table.items():
        leaf = variables[collection]
        for name in path:
            leaf = leaf[name]
        state_dict[key] = _TO_TORCH[layout](np.asarray(leaf, np.float32))
        if key.endswith(".running_var"):
            state_dict[key.removesuffix("running_var") + "num_batches_tracked"] = np.zeros((), np.int64)
    return state_dict


def load_npz(path: str | Path, backbone: str) -> dict:
    """SesemiNet variables from a `.npz` written by either framework's `save_npz`."""
    return variables_from_state_dict(read_npz(path), backbone, source=f"weights file {path}")


def save_npz(variables: dict, path: str | Path, backbone: str) -> None:
    write_npz(state_dict_from_variables(variables, backbone), path)


def load_torchvision_weights(variables: dict, path: str | Path, backbone: str) -> dict:
    """`variables` with the backbone replaced by a torchvision ResNet state dict in `.npz` form.

    The file is `torchvision.models.resnet18().state_dict()` as saved by
    `sesemi_torch.convert.torchvision_pth_to_npz`: bare keys ('conv1.weight'); its ImageNet
    classifier `fc.*` is dropped, the heads stay as they are in `variables`.
    """
    state_dict = read_npz(path)
    if any(key.startswith("backbone.") for key in state_dict):
        raise WeightsError(f"weights file {path} holds a whole SesemiNet ('backbone.*' keys), not a "
                           "torchvision state dict: load it with load_npz")
    backbone_only = {f"backbone.{k}": v for k, v in state_dict.items() if not k.startswith("fc.")}
    return _with_backbone(variables, backbone_only, backbone, path)


def load_backbone_weights(variables: dict, path: str | Path, backbone: str) -> dict:
    """`variables` with the backbone of `path`: a torchvision state dict in `.npz` form, or a whole
    SesemiNet (a run's `model.npz` or `weights/step_<N>.npz`, trained in either framework), whose
    heads are dropped: the heads stay as they are in `variables` (the new run's classes and method)."""
    state_dict = read_npz(path)
    if not any(key.startswith("backbone.") for key in state_dict):
        return load_torchvision_weights(variables, path, backbone)
    backbone_only = {k: v for k, v in state_dict.items() if k.startswith("backbone.")}
    return _with_backbone(variables, backbone_only, backbone, path)


def _with_backbone(variables: dict, backbone_state_dict: dict, backbone: str, path) -> dict:
    loaded = variables_from_state_dict(backbone_state_dict, backbone, source=f"weights file {path}")
    return {collection: {**variables[collection], "backbone": loaded[collection]["backbone"]}
            for collection in ("params", "batch_stats")}
