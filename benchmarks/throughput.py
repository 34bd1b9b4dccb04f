"""Train-step throughput of the real SESEMI steps, JAX against PyTorch, on one model and batch.

    python benchmarks/throughput.py [--models resnet20,wrn28_2] [--threads N] [--repeats 7]
        [--steps-per-repeat 5] [--warmup 3] [--device cpu|cuda] [--dtype float32|bfloat16] [--json PATH]

Variants (all run the trainers' own code, nothing re-implemented):
  jax                  `sesemi_jax.train.jit_train_steps`' own-sampling step: on-device sampling,
                       gather, augmentation, proxy views, both backbone calls, loss, grads, update,
                       state donated; XLA options from `compiler_options()` (YNNPACK off on CPU).
  jax_ynnpack          the same step jitted with `compiler_options={}` (jaxlib's default YNNPACK
                       kernels), on CPU only: the before/after of compiler_options() (benchmarks/ynnpack_check.py).
  torch_eager          `sesemi_torch.train.train_step` fed by `SpecSampler` + `SpecBatches`
                       (`batch_loader`, as the loop does): spec drawing, gather, augmentation, views.
  torch_channels_last  the model in channels_last memory format and `channels_last=True`.
  torch_compile        `torch.compile(model)`; a failure is reported in the table, not raised.

Images/s counts what the backbone sees per step: batch_labeled + batch_unlabeled x proxy views
(96 + 16 x 6 = 192 by default). After `--warmup` untimed steps (compilation happens here),
each repetition runs `--steps-per-repeat` steps of every variant in turn (A, B, C, A, B, C, ...)
so load from other processes hits all variants alike; the table gives medians. JAX blocks on
the state at the end of a repetition; torch on CPU needs no sync (cuda: `synchronize`).

"input %" is the share of the step spent on the input pipeline timed alone, per framework:
JAX: one jit of `sample_spec` + `model_inputs`; torch: next batch from
the loader + `model_inputs`. Inside the fused JAX step XLA may overlap or fuse this work, so
the JAX share is an estimate.

Options measured only for speed: `--device cuda` moves the torch model and each batch to the
GPU (JAX uses its default backend, shown in the table); `--dtype bfloat16` runs torch's step
under `torch.autocast(bfloat16)` and casts JAX's params and model inputs to bfloat16 inside the
loss (`_bf16_apply`); the optimizer state, BatchNorm running statistics and the loss stay float32.
On cuda, float32 means each framework's default GPU maths (TF32 convolutions in both).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timing import seconds_per_step  # noqa: E402  (benchmarks/timing.py)
from sesemi_common.config import Config  # noqa: E402
from sesemi_common.methods import ema_decay, images_per_step  # noqa: E402
from sesemi_common.splits import labeled_indices  # noqa: E402
from sesemi_common.stats import channel_stats  # noqa: E402
from sesemi_jax import methods as jax_methods, models as jax_models, optim as jax_optim  # noqa: E402
from sesemi_jax import train as jax_train  # noqa: E402
from sesemi_torch import methods as torch_methods, models as torch_models, optim as torch_optim  # noqa: E402
from sesemi_torch.data import SpecSampler, batch_loader, to_device  # noqa: E402
from sesemi_torch.train import make_ema, model_inputs, train_step  # noqa: E402

VARIANTS = ("jax", "jax_ynnpack", "torch_eager", "torch_channels_last", "torch_compile")
NUM_CLASSES = 10
ENDLESS = 10**6  # train.steps: the samplers and schedules never run out during a benchmark


@dataclass
class Synthetic:
    images: np.ndarray  # (N, 32, 32, 3) uint8
    labels: np.ndarray  # (N,) int64
    labeled: np.ndarray  # sorted indices of the labeled split
    mean: np.ndarray
    std: np.ndarray


@dataclass
class Variant:
    name: str
    framework: str  # "jax" | "torch": which input-pipeline timing its share refers to
    run: Callable[[int], None] | None  # runs n steps and waits for them; None when it failed
    error: str = ""
    seconds: list[float] = field(default_factory=list)  # per step, one entry per repetition


# ----------------------------------------------------------------------------- setting
def make_config(backbone: str, method: str, args: argparse.Namespace) -> Config:
    return Config.from_dict({
        "data": {"n_labels": args.labeled},
        "model": {"backbone": backbone},
        "method": {"name": method},
        "train": {"steps": ENDLESS, "batch_labeled": args.batch_labeled, "batch_unlabeled": args.batch_unlabeled},
    })


def synthetic_data(n_images: int, n_labeled: int, seed: int = 0) -> Synthetic:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n_images, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(n_images, dtype=np.int64) % NUM_CLASSES
    mean, std = channel_stats(images)
    return Synthetic(images, labels, labeled_indices(labels, n_labeled, NUM_CLASSES, seed), mean, std)


def first_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip().splitlines()
    return text[0][:160] if text else type(err).__name__


# ----------------------------------------------------------------------------- JAX
def _bf16_apply(apply_fn: Callable) -> Callable:
    """`model.apply` computing in bfloat16: params and inputs cast, logits and stats back to float32.

    The cast sits inside the differentiated loss, so gradients come back float32 to the float32 params.
    """
    def cast(tree, dtype):
        return jax.tree_util.tree_map(
            lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)

    def apply(variables, *inputs, **kwargs):
        variables = {**variables, "params": cast(variables["params"], jnp.bfloat16)}
        outputs = apply_fn(variables, *cast(inputs, jnp.bfloat16), **kwargs)
        return cast(outputs, jnp.float32)

    return apply


def _jax_state(config: Config, method, bf16: bool):
    model = jax_models.make_model(config.model.backbone, NUM_CLASSES, method.spec.heads, config.model.dropout)
    variables = jax_models.init_variables(model, jax.random.PRNGKey(config.train.seed), 32)
    tx = jax_optim.make_optimizer(config.optim, config.train.steps)
    state = jax_train.create_state(model, variables, tx, config.train.seed, ema_decay(config))
    return state.replace(apply_fn=_bf16_apply(model.apply)) if bf16 else state


def jax_variant(name: str, config: Config, data: jax_train.DeviceData, bf16: bool, ynnpack: bool) -> Variant:
    method = jax_methods.load(config)
    schedule = jax_optim.lr_schedule(config.optim, config.train.steps)
    if ynnpack:  # the trainer's step, jitted as before compiler_options() existed
        step = jax.jit(partial(jax_train.train_step, method=method, config=config, schedule=schedule),
                       donate_argnums=0, compiler_options={})
    else:
        step, _ = jax_train.jit_train_steps(method, config, schedule)
    state = _jax_state(config, method, bf16)

    def run(n: int) -> None:
        nonlocal state
        for _ in range(n):
            state, _metrics = step(state, data)
        jax.block_until_ready(state)

    return Variant(name, "jax", run)


def jax_input_pipeline(config: Config, data: jax_train.DeviceData) -> Callable[[int], None]:
    """The step's sampling, gather, augmentation and views alone, with the step's own keys."""
    method = jax_methods.load(config)

    @partial(jax.jit, compiler_options=jax_train.compiler_options())
    def inputs(rng, step, data):
        spec = jax_train.sample_spec(jax.random.split(rng)[1], step, data, config, method)
        return jax_train.model_inputs(data, spec, method, config)

    rng = jax.random.PRNGKey(config.train.seed)
    count = 0

    def run(n: int) -> None:
        nonlocal count
        outputs = [inputs(rng, jnp.int32(count + i), data) for i in range(n)]
        count += n
        jax.block_until_ready(outputs)

    return run


# ----------------------------------------------------------------------------- PyTorch
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(config: Config, synthetic: Synthetic, device: torch.device):
    """Endless step batches from the trainer's loader, moved to `device`."""
    sampler = SpecSampler(synthetic.labeled, len(synthetic.images), config)
    for batch in batch_loader(synthetic.images, synthetic.labels, sampler):
        yield to_device(batch, device)


def _torch_model(config: Config, method, device: torch.device, channels_last: bool) -> torch.nn.Module:
    torch.manual_seed(config.train.seed)
    model = torch_models.make_model(config.model.backbone, NUM_CLASSES, method.spec.heads, config.model.dropout)
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def torch_variant(name: str, config: Config, synthetic: Synthetic, device: torch.device, bf16: bool) -> Variant:
    method = torch_methods.load(config)
    channels_last = name == "torch_channels_last"
    model = _torch_model(config, method, device, channels_last)
    optimizer = torch_optim.make_optimizer(model, config.optim)
    scheduler = torch_optim.make_scheduler(optimizer, config.optim, config.train.steps)
    ema = make_ema(model, config)
    net = torch.compile(model) if name == "torch_compile" else model
    mean, std = torch.from_numpy(synthetic.mean), torch.from_numpy(synthetic.std)
    batches = _batches(config, synthetic, device)
    step = 0

    def run(n: int) -> None:
        nonlocal step
        for _ in range(n):
            batch = next(batches)
            # Wrapping backward and the optimizer too is harmless: autocast only recasts the ops
            # on its lists, and backward ops run in the dtypes their forward ops chose.
            with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                train_step(net, optimizer, scheduler, batch, step, method, config, mean, std, channels_last, ema)
            step += 1
        _sync(device)

    return Variant(name, "torch", run)


def torch_input_pipeline(config: Config, synthetic: Synthetic, device: torch.device) -> Callable[[int], None]:
    """Loader (spec, gather) plus `model_inputs` (augmentation, views, normalization) alone."""
    method = torch_methods.load(config)
    mean, std = torch.from_numpy(synthetic.mean), torch.from_numpy(synthetic.std)
    batches = _batches(config, synthetic, device)

    def run(n: int) -> None:
        for _ in range(n):
            model_inputs(next(batches), method, config, mean, std)
        _sync(device)

    return run


# ----------------------------------------------------------------------------- timing
def warm_up(variant: Variant, steps: int) -> None:
    """Compiles (jit, torch.compile); a variant that fails here is reported, not raised."""
    try:
        variant.run(steps)
    except Exception as err:  # noqa: BLE001 - torch.compile raises many kinds on a CPU without a toolchain
        variant.run, variant.error = None, first_line(err)
        print(f"  {variant.name} failed: {variant.error}", flush=True)


def build_variants(names: list[str], config: Config, synthetic: Synthetic, device: torch.device,
                   bf16: bool) -> tuple[list[Variant], dict[str, Callable[[int], None]]]:
    data = jax_train.device_data(synthetic.images, synthetic.labels, synthetic.labeled, synthetic.mean,
                                 synthetic.std)
    variants = []
    for name in names:
        if name == "jax_ynnpack" and jax.default_backend() != "cpu":
            continue  # YNNPACK is a CPU library: on other backends this is the `jax` variant again
        if name.startswith("jax"):
            variants.append(jax_variant(name, config, data, bf16, ynnpack=name == "jax_ynnpack"))
        else:
            variants.append(torch_variant(name, config, synthetic, device, bf16))
    pipelines = {"jax": jax_input_pipeline(config, data), "torch": torch_input_pipeline(config, synthetic, device)}
    return variants, pipelines


def measure(variants: list[Variant], pipelines: dict, args: argparse.Namespace) -> dict[str, float]:
    """Interleaved repetitions; fills each variant's `seconds`, returns median input seconds per step."""
    for variant in variants:
        print(f"  warm-up {variant.name}", flush=True)
        warm_up(variant, args.warmup)
    for run in pipelines.values():
        run(args.warmup)
    pipeline_seconds = {name: [] for name in pipelines}
    for repeat in range(args.repeats):
        for variant in variants:
            if variant.run is not None:
                variant.seconds.append(seconds_per_step(variant.run, args.steps_per_repeat))
        for name, run in pipelines.items():
            pipeline_seconds[name].append(seconds_per_step(run, args.steps_per_repeat))
        done = ", ".join(f"{v.name} {1e3 * v.seconds[-1]:.0f}" for v in variants if v.seconds)
        print(f"  repetition {repeat + 1}/{args.repeats} ms/step: {done} (load {os.getloadavg()[0]:.1f})", flush=True)
    return {name: statistics.median(ts) for name, ts in pipeline_seconds.items()}


def rows_for(backbone: str, variants: list[Variant], input_s: dict[str, float], images: int,
             setting: dict) -> list[dict]:
    medians = {v.name: statistics.median(v.seconds) for v in variants if v.seconds}
    eager = medians.get("torch_eager")
    rows = []
    for v in variants:
        row = {"model": backbone, "variant": v.name, "device": setting[f"{v.framework}_device"],
               "dtype": setting["dtype"], "error": v.error}
        if v.name in medians:
            step_s = medians[v.name]
            row.update(step_ms=1e3 * step_s, step_ms_all=[1e3 * t for t in v.seconds],
                       images_per_s=images / step_s, vs_torch_eager=eager / step_s if eager else None,
                       input_ms=1e3 * input_s[v.framework], input_pct=100 * input_s[v.framework] / step_s)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- report
def markdown(rows: list[dict]) -> str:
    lines = ["| model | variant | device | dtype | ms / step | images/s | vs torch eager | input % |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        head = f"| {r['model']} | {r['variant']} | {r['device']} | {r['dtype']} "
        if r["error"]:
            lines.append(head + f"| failed: {r['error'].replace('|', '/')} | | | |")
            continue
        ratio = f"{r['vs_torch_eager']:.2f}x" if r["vs_torch_eager"] else "-"
        lines.append(head + f"| {r['step_ms']:.1f} | {r['images_per_s']:,.0f} | {ratio} "
                     f"| {r['input_pct']:.0f}% ({r['input_ms']:.1f} ms) |")
    return "\n".join(lines)


def describe_setting(args: argparse.Namespace, device: torch.device) -> dict:
    jax_device = jax.devices()[0]
    return {"jax": jax.__version__, "torch": torch.__version__, "jax_device": jax_device.platform,
            "jax_device_kind": jax_device.device_kind,
            "torch_device": device.type if device.type == "cpu" else torch.cuda.get_device_name(device),
            "dtype": args.dtype, "torch_threads": torch.get_num_threads(),
            "cpus": len(os.sched_getaffinity(0)), "load_average_before": os.getloadavg()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet20,wrn28_2", help="comma-separated backbones")
    parser.add_argument("--methods", default="sesemi", help="comma-separated registered methods (method.name)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: all cores)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions; the median is reported")
    parser.add_argument("--steps-per-repeat", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first (compilation)")
    parser.add_argument("--batch-labeled", type=int, default=96)
    parser.add_argument("--batch-unlabeled", type=int, default=16, help="each expanded to 6 proxy views")
    parser.add_argument("--images", type=int, default=2000, help="synthetic training images (10 classes)")
    parser.add_argument("--labeled", type=int, default=1000, help="of which labeled")
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda (JAX: its default backend)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--json", help="also write the setting and rows to this file")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.variants.split(",")) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}: use {', '.join(VARIANTS)}")
    if args.repeats < 1 or args.steps_per_repeat < 1 or args.warmup < 1:
        parser.error("--repeats, --steps-per-repeat and --warmup must be at least 1 (warm-up compiles)")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    device = torch.device(args.device)
    setting = describe_setting(args, device)
    print(", ".join(f"{k}={v}" for k, v in setting.items()), flush=True)
    synthetic = synthetic_data(args.images, args.labeled)
    rows = []
    for backbone in args.models.split(","):
        for method in args.methods.split(","):
            config = make_config(backbone, method, args)
            name = backbone if method == "sesemi" else f"{backbone} {method}"
            print(f"{name}:", flush=True)
            variants, pipelines = build_variants(args.variants.split(","), config, synthetic, device,
                                                 args.dtype == "bfloat16")
            input_s = measure(variants, pipelines, args)
            rows += rows_for(name, variants, input_s, images_per_step(config), setting)
    setting["load_average_after"] = os.getloadavg()
    print(f"\n{args.batch_labeled} labeled + {args.batch_unlabeled} unlabeled x each method's views per step; median of "
          f"{args.repeats} x {args.steps_per_repeat} steps; load average before {setting['load_average_before']}, "
          f"after {setting['load_average_after']}\n")
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "setting": setting, "rows": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
