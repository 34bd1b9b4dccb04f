"""One configuration for both frameworks: every knob of docs/DESIGN.md section 2 with its default.

A `Config` is a tree of small dataclasses. It loads from and saves to JSON, and takes dotted
command-line overrides such as `optim.lr=0.1` or `train.steps=2000`. A key that does not
exist is an error naming it and the closest valid key, so a typo never silently falls back
to a default.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import difflib
import json
import math
from dataclasses import dataclass, field, make_dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from . import methods, plugins


class ConfigError(ValueError):
    """A configuration value or key that cannot be used; the message says what to change."""


@dataclass
class DataConfig:
    dataset: str = "digits"  # digits | cifar10 | cifar100 | imagefolder | stl10 | svhn
    # dataset folder (cifar, stl10: where the archive lives; svhn: holds the .mat files; imagefolder: has
    # train/ and test/)
    root: str = ""
    image_size: int = 32  # digits are upscaled to this size; others are brought to it by data.resize
    # labeled training images in all, n_labels / num_classes per class; 0: every training image
    # (a user's class folders that are all the labels there are)
    n_labels: int = 100
    split_seed: int = 0
    download: bool = False  # cifar, stl10, svhn: fetch the official files when they are missing (MD5-checked)
    # The unlabeled pool (docs/DESIGN.md section 9): '+'-joined sources out of train (every training
    # image, labels ignored), folder (data.unlabeled_root) and split (the dataset's own unlabeled
    # split: STL-10 unlabeled, SVHN extra). Test images never join it.
    unlabeled: str = "train"
    unlabeled_root: str = ""  # a folder of images without classes, any nesting
    # auto | none | center_crop | squash: how images of other sizes reach data.image_size
    # (sesemi_common/resize.py); auto is center_crop for folders of images, none for benchmark archives
    resize: str = "auto"
    # device | host | auto (docs/DESIGN.md section 9, docs/placement.md): where the training images live.
    # device: on every device, whole; host: memory-mapped on the host, each step's images gathered
    # and prefetched; auto: device when they fit a share of device memory, else host.
    placement: str = "device"
    # PyTorch reading the memory-mapped cache (placement host, or auto when it chose host): DataLoader
    # worker processes gathering steps ahead, each opening the map itself; 0 gathers in the training
    # process. The batches and their order are the same for every value. (JAX gathers in a prefetch thread.)
    loader_workers: int = 0


@dataclass
class ModelConfig:
    backbone: str = "resnet20"  # resnet20 | resnet8 | wrn28_2 | resnet18 | resnet50 | convnet13
    dropout: float = 0.0  # supervised head only
    # optional torchvision-layout weights (.pth in PyTorch, converted .npz in JAX), or torchvision's
    # ImageNet weights by name: torchvision:resnet18, torchvision:resnet50[:IMAGENET1K_V2] (pretrained.py)
    weights: str = ""
    joint_forward: bool = False  # one backbone call on [labeled; self] instead of two


_METHOD_CONFIG_CLASSES: dict[tuple, type] = {}


def method_config() -> Any:
    """`name` plus one nested section of knobs per registered method (`method.sesemi.weight`).

    Built from the registry when a `Config` is made, so a method registered later (a plug-in)
    gets its knobs without editing this file; one class per set of methods, so equal configs
    compare equal. Plug-ins (sesemi_common/plugins.py) load first, so their knobs are here too."""
    try:
        plugins.load()
    except plugins.PluginError as err:
        raise ConfigError(str(err)) from None
    knobs = methods.knob_defaults()
    key = tuple((name, type(value)) for name, value in knobs.items())
    if key not in _METHOD_CONFIG_CLASSES:
        fields = [("name", str, field(default="sesemi"))]
        fields += [(name, type(value), field(default_factory=type(value))) for name, value in knobs.items()]
        _METHOD_CONFIG_CLASSES[key] = make_dataclass("MethodConfig", fields)
    return _METHOD_CONFIG_CLASSES[key]()


@dataclass
class AugmentConfig:
    # translate (reflect pad `translate` px) | pad_crop (zero pad `crop_padding`, random crop). Both
    # are pixels at 32 px and scale with data.image_size, rounded (2 px at 32 = 1/16 of the side).
    crop: str = "translate"
    translate: int = 2
    crop_padding: int = 4
    hflip: bool = True  # supervised branch only: flips are proxy labels on the self branch
    normalize: str = "channel"  # channel (training-set mean/std per channel) | zca (GCN then ZCA, the paper's)
    noise_std: float = 0.0  # additive Gaussian noise on every normalized input (the paper's: 0.15)


@dataclass
class OptimConfig:
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # coupled, conv and linear kernels only
    schedule: str = "poly"  # poly: lr (1 - t/T)^power | cosine | constant | fixmatch_cosine: lr cos(7 pi t / 16T)
    poly_power: float = 0.5
    warmup_steps: int = 0  # linear warm-up from 0 to lr


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_labeled: int = 96
    batch_unlabeled: int = 16  # each expanded to 6 (or 4) proxy views
    seed: int = 0
    log_every: int = 50
    eval_every: int = 500
    checkpoint_every: int = 500
    eval_batch_size: int = 500
    ema_decay: float = 0.0  # EMA of params and BatchNorm statistics; 0: off (or the method's default)
    eval_ema: bool = False  # evaluate (and predict) with the EMA variables
    # The original Mean Teacher code's EMA warm-up: decay min(1 - 1/(t+1), ema_decay) at step t
    # (1-based), a plain mean of the weights so far until the cap takes over (sesemi_common/ema.py)
    ema_warmup: bool = False
    # fp32 | bf16: bfloat16 convolutions and dense layers on float32 master weights, optimizer
    # state, BatchNorm statistics and loss (docs/DESIGN.md section 8). Evaluation stays float32.
    precision: str = "fp32"
    # Where else the metrics go (docs/logging.md); metrics.jsonl is always written.
    tensorboard: bool = True  # event files in the run directory, where the tensorboard package is installed
    wandb: str = ""  # a Weights & Biases project to log to; "": none (pip install 'sesemi[wandb]')
    view_images: int = 4  # unlabeled images in the picture of the views at step 0 and each evaluation; 0: none


@dataclass
class EvalConfig:
    # 1: one clean view per test image | 8: the paper's test-time augmentation (sesemi_common/tta.py),
    # the softmax averaged over {x, x shifted 1-2 px} x {clean, noisy} x {unflipped, left-right flipped}
    tta: int = 1


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: Any = field(default_factory=method_config)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
        _check_sections(values)
        return replace_dotted(cls(), _from_legacy_keys(_flatten(values)))

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        """A JSON config file, or a preset shipped with sesemi by name (`paper`); a file of that
        name in the working directory wins over the preset."""
        path = Path(path)
        if not path.is_file() and str(path) in preset_names():
            path = preset_path(str(path))
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist: pass the path of a JSON config or a "
                              f"preset ({', '.join(preset_names())})")
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"config file {path} is not valid JSON ({err}): fix the file") from err
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} holds {_a(type(values))} ({_json_kind(values)}), not a JSON "
                              'object: write sections such as {"optim": {"lr": 0.1}}')
        values.pop(ABOUT_KEY, None)  # a preset's documentation (how to run it, its cost), not a setting
        return cls.from_dict(values)


# The entry at the top of a config file that documents it: each shipped preset opens with the
# command that runs it, what it costs and what it should reach (docs/training.md, "Presets").
ABOUT_KEY = "about"


def preset_path(name: str) -> Path:
    """The shipped preset `name` (sesemi_common/presets/NAME.json, package data)."""
    return Path(str(resources.files("sesemi_common") / "presets" / f"{name}.json"))


def preset_names() -> tuple[str, ...]:
    """Presets shipped with sesemi (docs/training.md, "Presets"): `paper` follows the SESEMI paper's code
    (docs/PAPER_PRESET.md), `fixmatch` the FixMatch paper, `demo` and `tiny` the demo's and the tests' runs."""
    folder = resources.files("sesemi_common") / "presets"
    return tuple(sorted(entry.name.removesuffix(".json") for entry in folder.iterdir()
                        if entry.name.endswith(".json")))


CHOICES = {
    "data.dataset": ("digits", "cifar10", "cifar100", "imagefolder", "stl10", "svhn"),
    "data.resize": ("auto", "none", "center_crop", "squash"),
    "data.placement": ("device", "host", "auto"),
    "model.backbone": ("resnet20", "resnet8", "wrn28_2", "resnet18", "resnet50", "convnet13"),
    "augment.crop": ("translate", "pad_crop"),
    "augment.normalize": ("channel", "zca"),
    "optim.schedule": ("poly", "cosine", "constant", "fixmatch_cosine"),
    "train.precision": ("fp32", "bf16"),
}


def choices() -> dict[str, tuple[str, ...]]:
    return {**CHOICES, "method.name": methods.method_names()}


def valid_keys(config: Config | None = None) -> list[str]:
    return list(_leaves(config or Config()))


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """{'section.key': value} of every setting, nested sections (method knobs) included."""
    leaves = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            leaves.update(_leaves(value, f"{prefix}{f.name}."))
        else:
            leaves[f"{prefix}{f.name}"] = value
    return leaves


# Keys of configs written before methods had their own sections, and where they live now.
_LEGACY_METHOD_KEYS = {"method.self_weight": "weight", "method.rampup_steps": "rampup_steps"}


def _from_legacy_keys(flat: dict[str, Any]) -> dict[str, Any]:
    """An old run's config.json (method.proxy / self_weight / rampup_steps) in today's keys."""
    flat = dict(flat)
    if flat.pop("method.proxy", "rotate_flip") == "rotation" and flat.get("method.name", "sesemi") == "sesemi":
        flat["method.name"] = "rotation"
    name = flat.get("method.name", "sesemi")
    for old, knob in _LEGACY_METHOD_KEYS.items():
        if old in flat:
            value = flat.pop(old)
            if name in ("sesemi", "rotation"):
                flat[f"method.{name}.{knob}"] = value
    return flat


def _json_kind(value: Any) -> str:
    return {list: "a JSON array", str: "a JSON string", bool: "true/false", type(None): "null"}.get(
        type(value), "a JSON number")


def _check_sections(values: dict[str, Any]) -> None:
    """A section given as a plain value (`{"train": 5}`) is a misplaced section, not a typo of a key."""
    for section in dataclasses.fields(Config):
        value = values.get(section.name)
        if section.name in values and not isinstance(value, dict):
            example = dataclasses.fields(section.default_factory())[0].name
            raise ConfigError(f"config section '{section.name}' must be a JSON object of its keys, e.g. "
                              f'{{"{section.name}": {{"{example}": ...}}}}, got {json.dumps(value)}')


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _unknown_key(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.5)
    if not close:  # a bare field name without its section, e.g. `lr`
        close = [k for k in valid_keys() if k.split(".")[-1] == key.split(".")[-1]][:1]
    hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(valid_keys())}"
    if key.startswith("method.") and key.count(".") == 2 and key.split(".")[1] not in methods.method_names():
        hint = f"; {PLUGIN_HINT}"
    return ConfigError(f"unknown config key '{key}'{hint}")


# A method registered by a plug-in is only known once the plug-in is loaded.
PLUGIN_HINT = (f"a method registered outside sesemi is loaded by naming its module in {plugins.ENVIRONMENT_VARIABLE} "
               f"(e.g. {plugins.ENVIRONMENT_VARIABLE}=examples.flip_proxy) or by installing its package "
               "(docs/ADDING_A_METHOD.md)")


def _coerce(key: str, text_or_value: Any, current: Any) -> Any:
    kind = type(current)
    value = text_or_value
    if isinstance(value, str) and kind is not str:
        if kind is bool:
            lowered = value.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ConfigError(f"config key '{key}' needs true or false, got '{value}'")
            return lowered in ("true", "1", "yes")
        try:
            value = _int_from_text(value) if kind is int else kind(value)
        except ValueError:
            raise ConfigError(f"config key '{key}' needs {_a(kind)}, got '{text_or_value}'") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not kind:
        raise ConfigError(f"config key '{key}' needs {_a(kind)}, got {value!r}")
    return value


def _int_from_text(text: str) -> int:
    """'2000' or '2e3'; a fractional value such as '2.5e0' is refused rather than truncated."""
    if "e" not in text.lower():
        return int(text)
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def _a(kind: type) -> str:
    return f"an {kind.__name__}" if kind.__name__[0] in "aeiou" else f"a {kind.__name__}"


def replace_dotted(config: Config, overrides: dict[str, Any]) -> Config:
    """A copy of `config` with `{'section.key': value}` applied; strings are parsed to the field's type."""
    config = copy.deepcopy(config)
    for key, value in overrides.items():
        *path, name = key.split(".")
        section = config
        for part in path:
            section = getattr(section, part, None)
            if section is None or not dataclasses.is_dataclass(section):
                raise _unknown_key(key)
        if not path or not hasattr(section, name) or dataclasses.is_dataclass(getattr(section, name)):
            raise _unknown_key(key)
        setattr(section, name, _coerce(key, value, getattr(section, name)))
    validate(config)
    return config


def apply_overrides(config: Config, args: Iterable[str]) -> Config:
    """Apply command-line overrides of the form `section.key=value`."""
    overrides = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ConfigError(f"override '{arg}' is not of the form section.key=value, e.g. optim.lr=0.1")
        overrides[key.strip()] = value.strip()
    return replace_dotted(config, overrides)


def validate(config: Config) -> None:
    """Reject values no run can use, each with a message naming the key."""
    if config.train.wandb and importlib.util.find_spec("wandb") is None:
        raise ConfigError(f"train.wandb={config.train.wandb} needs Weights & Biases, which is not installed: "
                          "pip install 'sesemi[wandb]', or drop train.wandb")
    _check_stacked_method(config.method.name)
    for key, allowed in choices().items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if key == "method.name" and methods.stacking.is_stacked(value):
            continue  # composed from registered parts, checked above
        if value not in allowed:
            close = difflib.get_close_matches(str(value), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            if key == "method.name" and not close:
                hint = f"; {PLUGIN_HINT}"
            raise ConfigError(f"config key '{key}' must be one of {', '.join(allowed)}, got '{value}'{hint}")
    positive = {
        "optim.lr": config.optim.lr, "train.steps": config.train.steps,
        "train.batch_labeled": config.train.batch_labeled, "train.log_every": config.train.log_every,
        "train.eval_every": config.train.eval_every, "train.checkpoint_every": config.train.checkpoint_every,
        "train.eval_batch_size": config.train.eval_batch_size, "data.image_size": config.data.image_size,
    }
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"config key '{key}' must be positive, got {value}")
    non_negative = {
        "train.batch_unlabeled": config.train.batch_unlabeled, "optim.weight_decay": config.optim.weight_decay,
        "optim.momentum": config.optim.momentum, "optim.warmup_steps": config.optim.warmup_steps,
        "train.ema_decay": config.train.ema_decay, "data.n_labels": config.data.n_labels,
        "optim.poly_power": config.optim.poly_power,
        "augment.translate": config.augment.translate, "augment.crop_padding": config.augment.crop_padding,
        "augment.noise_std": config.augment.noise_std, "train.view_images": config.train.view_images,
        "data.loader_workers": config.data.loader_workers,
    }
    for key, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"config key '{key}' must be zero or positive, got {value}")
    for key, value in flat_values(config).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config key '{key}' must be a finite number, got {value}")
    _check_knob_ranges(config)
    _check_eval(config)
    _check_unlabeled(config.data)
    if not 0.0 <= config.model.dropout < 1.0:
        raise ConfigError(f"config key 'model.dropout' must be in [0, 1), got {config.model.dropout}")
    spec = methods.get(config.method.name)
    if spec.views_per_image and config.train.batch_unlabeled == 0:
        raise ConfigError(f"method '{config.method.name}' needs train.batch_unlabeled > 0 "
                          "(or use method.name=supervised)")
    if not config.train.ema_decay < 1.0:
        raise ConfigError(f"config key 'train.ema_decay' must be in [0, 1), got {config.train.ema_decay}")
    if not config.optim.momentum < 1.0:  # a momentum of 1 never forgets a gradient: the steps grow without end
        raise ConfigError(f"config key 'optim.momentum' must be in [0, 1), got {config.optim.momentum}")
    _check_paddings(config)
    if config.train.eval_ema and not methods.ema_decay(config):
        raise ConfigError("train.eval_ema needs an EMA: set train.ema_decay, e.g. 0.999")
    if config.train.ema_warmup and not methods.ema_decay(config):
        raise ConfigError("train.ema_warmup needs an EMA: set train.ema_decay, e.g. 0.999")
    if config.optim.warmup_steps >= config.train.steps:
        raise ConfigError(f"optim.warmup_steps ({config.optim.warmup_steps}) must be smaller than "
                          f"train.steps ({config.train.steps})")
    check_momentum(config.optim)
    _check_pretrained(config.model)


def _check_stacked_method(name: str) -> None:
    """`method.name=sesemi+entmin`: registered parts whose heads do not clash (methods/stacking.py)."""
    if methods.stacking.is_stacked(name):
        try:
            methods.get(name)
        except ValueError as err:
            raise ConfigError(f"config key 'method.name': {err}") from None


def _check_pretrained(model_cfg: ModelConfig) -> None:
    """model.weights=torchvision:<backbone>: a known name that fits model.backbone, before any run starts."""
    from . import pretrained  # lazily: it reads the cache folder of datasets.py

    if pretrained.is_torchvision(model_cfg.weights):
        try:
            pretrained.check(model_cfg.weights, model_cfg.backbone)
        except ValueError as err:
            raise ConfigError(str(err)) from err


UNLABELED_SOURCES = ("train", "folder", "split")  # data.unlabeled, '+'-joined


def unlabeled_sources(data: DataConfig) -> tuple[str, ...]:
    """The sources of the unlabeled pool, in the order written (`train+folder` -> train, folder)."""
    return tuple(part.strip() for part in data.unlabeled.split("+"))


def _check_unlabeled(data: DataConfig) -> None:
    sources = unlabeled_sources(data)
    for source in sources:
        if source not in UNLABELED_SOURCES:
            close = difflib.get_close_matches(source, UNLABELED_SOURCES, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"data.unlabeled={data.unlabeled}: '{source}' is not a source of the unlabeled pool; "
                              f"join {', '.join(UNLABELED_SOURCES)} with '+', e.g. train+folder{hint}")
    if len(set(sources)) != len(sources):
        raise ConfigError(f"data.unlabeled={data.unlabeled} names a source twice: name each once")
    if data.unlabeled_root and "folder" not in sources:
        raise ConfigError(f"data.unlabeled_root is set but data.unlabeled={data.unlabeled} leaves its images out: "
                          "add folder (e.g. data.unlabeled=folder or train+folder), or clear data.unlabeled_root")


def _check_knob_ranges(config: Config) -> None:
    """Every method's knobs against the ranges its registry entry declares (methods.MethodSpec.ranges)."""
    for name in methods.method_names():
        section = getattr(config.method, name, None)
        if section is None:
            continue
        for knob, value in dataclasses.asdict(section).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            allowed = methods.knob_range(name, knob)
            if value not in allowed:
                raise ConfigError(f"config key 'method.{name}.{knob}' must be {allowed}, got {value}")


def _check_paddings(config: Config) -> None:
    """A reflect padding must be smaller than the image (a mirror of a 2 px image has 1 px to show);
    refused here rather than at the first step, in the transforms."""
    size = config.data.image_size
    if config.augment.crop == "translate" and config.augment.translate >= size:
        raise ConfigError(f"augment.translate={config.augment.translate} needs data.image_size > "
                          f"{config.augment.translate} (a reflect padding must be smaller than the image), got "
                          f"{size}: lower augment.translate or raise data.image_size")
    spec = methods.get(config.method.name)
    for param in spec.view_params:
        if param.kind == "crop" and param.padding is not None and param.padding >= size:
            raise ConfigError(f"method {spec.name} shifts its views by up to {param.padding} px, which needs "
                              f"data.image_size > {param.padding}, got {size}")


TTA_CHOICES = (1, 8)  # eval.tta: views per test image


def _check_eval(config: Config) -> None:
    if config.eval.tta not in TTA_CHOICES:
        raise ConfigError(f"config key 'eval.tta' must be 1 (one clean view) or 8 (the paper's 8 test-time views), "
                          f"got {config.eval.tta}")
    if config.eval.tta > 1 and config.data.image_size <= 2:
        raise ConfigError(f"eval.tta={config.eval.tta} shifts test images by up to 2 px with reflect padding, "
                          f"which needs data.image_size > 2, got {config.data.image_size}")


def flat_values(config: Config) -> dict[str, Any]:
    """{'section.key': value} of every knob."""
    return _flatten(config.to_dict())


# What `--resume` may change: the learning rate (the way out of a NaN is a lower lr from the last
# good checkpoint) and how often the run logs, evaluates and saves. Every other key shapes the
# data, the model or the optimizer state the checkpoints hold, or the schedule's length. How the
# test set is evaluated (eval.tta) changes no training state either.
RESUMABLE_KEYS = ("optim.lr", "train.log_every", "train.eval_every", "train.checkpoint_every",
                  "train.eval_batch_size", "eval.tta", "train.tensorboard", "train.wandb", "train.view_images",
                  "data.placement", "data.loader_workers")


def resume_changes(saved: Config, config: Config) -> dict[str, tuple[Any, Any]]:
    """{key: (saved value, new value)} of what `config` changes; refuses a key --resume cannot change."""
    before, after = flat_values(saved), flat_values(config)
    changes = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    for key, (old, new) in changes.items():
        if key not in RESUMABLE_KEYS:
            raise ConfigError(f"--resume cannot change {key}: the run started with {key}={_show(old)}, this "
                              f"command asks for {_show(new)}; only {', '.join(RESUMABLE_KEYS)} may change "
                              "on resume (start a new run to change the rest)")
    return changes


def _show(value: Any) -> str:
    """A value as the command line spells it: strings quoted, true/false for booleans (not Python's True)."""
    return json.dumps(value) if isinstance(value, (str, bool)) else str(value)


def check_momentum(optim: OptimConfig) -> None:
    if optim.nesterov and optim.momentum <= 0:
        raise ConfigError(f"optim.nesterov needs optim.momentum > 0, got {optim.momentum}: "
                         "set a momentum or optim.nesterov=false")


def check_optim(optim: OptimConfig, total_steps: int) -> None:
    """Reject a schedule or step count that no run can use, with a one-line message."""
    schedules = CHOICES["optim.schedule"]
    if optim.schedule not in schedules:
        raise ConfigError(f"optim.schedule must be one of {', '.join(schedules)}, got '{optim.schedule}'")
    if total_steps <= 0:
        raise ConfigError(f"total steps must be positive, got {total_steps}: set train.steps")
    if not 0 <= optim.warmup_steps < total_steps:
        raise ConfigError(f"optim.warmup_steps ({optim.warmup_steps}) must be in [0, total steps "
                         f"{total_steps})")
    check_momentum(optim)
