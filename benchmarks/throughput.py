"""Train-step throughput of the real SESEMI steps, JAX against PyTorch, on one model and batch.

    python benchmarks/throughput.py [--models resnet20,wrn28_2,resnet18] [--variants jax,torch_eager,...]
        [--precisions fp32,bf16] [--host-devices N] [--threads N] [--repeats 7] [--steps-per-repeat 5]
        [--warmup 3] [--image-size 32] [--device cpu|cuda] [--json PATH]
    python benchmarks/throughput.py --profile [--models resnet20] [--precisions fp32,bf16] [--host-devices 2]

Variants (all run the trainers' own code, nothing re-implemented):
  jax                  `sesemi_jax.train.jit_train_steps`' own-sampling step on one device: on-device
                       sampling, gather, augmentation, proxy views, both backbone calls, loss, grads,
                       update, state donated; XLA options from `compiler_options()` (YNNPACK off on CPU).
  jax_all              the same step with the batch split over every device (`batch_mesh()`, as the
                       trainer runs); the same global batch, so "scaling" is strong scaling: speed-up
                       over `jax` and efficiency = speed-up / devices. On a CPU, `--host-devices N`
                       forces N host devices (`jax_num_cpu_devices`); they share the same cores, so
                       there it measures the cost of partitioning, not a gain. With one device the
                       row says "1 device".
  jax_ynnpack          the `jax` step jitted with `compiler_options={}` (jaxlib's default YNNPACK
                       kernels), on CPU only: the before/after of compiler_options() (benchmarks/ynnpack_check.py).
  jax_host             `data.placement=host` (docs/placement.md): the spec-taking step fed by
                       `sesemi_jax.placement.HostBatches` from a memory-mapped copy of the set
                       (in a temporary folder), gathered and put on the device by its prefetch thread;
                       its speed against `jax` is the cost of host placement when the prefetch
                       hides the gather.
  torch_eager          `sesemi_torch.train.train_step` fed by `SpecSampler` + `SpecBatches`
                       (`batch_loader`, as the loop does): spec drawing, gather, augmentation, views.
  torch_channels_last  the model in channels_last memory format and `channels_last=True`.
  torch_compile        `torch.compile(model)`, as `sesemi-torch train --compile`; a failure is reported
                       in the table, not raised.

Every variant runs in each of `--precisions` (`train.precision`): fp32, and bf16 (docs/DESIGN.md section
8: bfloat16 convolutions and dense layers on float32 weights; JAX through `make_model`, PyTorch
through the step's own `torch.autocast`, its AMP).

Images/s counts what the backbone sees per step: batch_labeled + batch_unlabeled x proxy views
(96 + 16 x 6 = 192 by default). After `--warmup` untimed steps (compilation happens here),
each repetition runs `--steps-per-repeat` steps of every variant in turn (A, B, C, A, B, C, ...)
so load from other processes hits all variants alike; the table gives medians. JAX blocks on
the state at the end of a repetition; torch on CPU needs no sync (cuda: `synchronize`).

"input %" is the share of the step spent on the input pipeline timed alone, per framework:
JAX: one jit of `sample_spec` + `model_inputs`; torch: next batch from
the loader + `model_inputs`. Inside the fused JAX step XLA may overlap or fuse this work, so
the JAX share is an estimate. For `jax_host` the column gives instead the median time a timed
step waited for its prefetched batch (and the longest wait): the gather the prefetch did not hide.

`--device cuda` moves the torch model and each batch to the GPU (JAX uses its default backend,
shown in the table). On cuda, fp32 means each framework's default GPU maths (TF32 convolutions in
both).

`--profile` times nothing: it checks that the JAX step never waits on the host
(`no_host_sync`). A few steady-state steps run under `jax.transfer_guard("disallow")`, so any
implicit transfer between steps (a numpy or Python-scalar argument, a metric fetched as a float
where the backend guards fetches) raises; the jitted step must not recompile, and its jaxpr must
hold no host callback (`pure_callback`, `io_callback`, `debug_callback`). The guard is first
shown to be live (a numpy argument under it must raise), so a pass is not vacuous.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timing import seconds_per_step  # noqa: E402  (benchmarks/timing.py)
from sesemi_common.config import Config, ConfigError  # noqa: E402
from sesemi_common.methods import ema_decay, images_per_step  # noqa: E402
from sesemi_common.splits import labeled_indices  # noqa: E402
from sesemi_common.stats import channel_stats  # noqa: E402
from sesemi_jax import methods as jax_methods, models as jax_models, optim as jax_optim  # noqa: E402
from sesemi_jax import distributed as jax_distributed, train as jax_train  # noqa: E402
from sesemi_torch import methods as torch_methods, models as torch_models, optim as torch_optim  # noqa: E402
from sesemi_torch.data import SpecSampler, batch_loader, to_device  # noqa: E402
from sesemi_torch.train import make_ema, model_inputs, train_step  # noqa: E402

VARIANTS = ("jax", "jax_all", "jax_ynnpack", "jax_host", "torch_eager", "torch_channels_last", "torch_compile")
PRECISIONS = ("fp32", "bf16")
NUM_CLASSES = 10
ENDLESS = 10**6  # train.steps: the samplers and schedules never run out during a benchmark


@dataclass
class Synthetic:
    images: np.ndarray  # (N, S, S, 3) uint8, S = --image-size
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
    devices: int = 1
    precision: str = "fp32"
    # jax_host: seconds each step waited for its prefetched batch (near 0 when the prefetch hides the gather)
    input_waits: list[float] | None = None

    @property
    def label(self) -> str:
        return f"{self.name}/{self.precision}"


# ----------------------------------------------------------------------------- setting
def make_config(backbone: str, method: str, precision: str, args: argparse.Namespace) -> Config:
    return Config.from_dict({
        # image_size follows the synthetic images so the step's shifts scale with the side (section 9)
        "data": {"n_labels": args.labeled, "image_size": args.image_size},
        "model": {"backbone": backbone},
        "method": {"name": method},
        "train": {"steps": ENDLESS, "batch_labeled": args.batch_labeled, "batch_unlabeled": args.batch_unlabeled,
                  "precision": precision},
    })


def synthetic_data(n_images: int, n_labeled: int, image_size: int = 32, seed: int = 0) -> Synthetic:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n_images, image_size, image_size, 3), dtype=np.uint8)
    labels = np.arange(n_images, dtype=np.int64) % NUM_CLASSES
    mean, std = channel_stats(images)
    return Synthetic(images, labels, labeled_indices(labels, n_labeled, NUM_CLASSES, seed), mean, std)


def first_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip().splitlines()
    return text[0][:160] if text else type(err).__name__


# ----------------------------------------------------------------------------- JAX
def _jax_state(config: Config, method, pool_size: int):
    model = jax_models.make_model(config.model.backbone, NUM_CLASSES, method.spec.heads, config.model.dropout,
                                  config.train.precision)
    variables = jax_models.init_variables(model, jax.random.PRNGKey(config.train.seed),
                                           config.data.image_size)
    tx = jax_optim.make_optimizer(config.optim, config.train.steps)
    return jax_train.create_state(model, variables, tx, config.train.seed, ema_decay(config),
                                  jax_methods.initial_state(config, NUM_CLASSES, pool_size))


def jax_step(name: str, config: Config, method, data: jax_train.DeviceData):
    """(the trainer's jitted own-sampling step, its state, the training set), on one device or
    split over all (`jax_all`), state and data placed as `sesemi_jax.loop.fit` places them."""
    schedule = jax_optim.lr_schedule(config.optim, config.train.steps)
    state = _jax_state(config, method, data.images.shape[0])  # the pool is every image
    if name == "jax_ynnpack":  # the trainer's step, jitted as before compiler_options() existed
        return jax.jit(partial(jax_train.train_step, method=method, config=config, schedule=schedule),
                       donate_argnums=0, compiler_options={}), state, data
    mesh = jax_train.batch_mesh() if name == "jax_all" else None
    jax_train.check_divisible(config, mesh)
    step = jax_train.jit_train_steps(method, config, schedule, mesh)[0]
    return step, jax_distributed.replicated(state, mesh), jax_distributed.replicated(data, mesh)


def jax_variant(name: str, config: Config, data: jax_train.DeviceData) -> Variant:
    if name == "jax_all" and jax.device_count() == 1:
        return Variant(name, "jax", None, "1 device: nothing to split over (on a CPU: --host-devices N)")
    method = jax_methods.load(config)
    try:
        step, state, data = jax_step(name, config, method, data)
    except ConfigError as err:
        return Variant(name, "jax", None, str(err))

    def run(n: int) -> None:
        nonlocal state
        for _ in range(n):
            state, _metrics = step(state, data)
        jax.block_until_ready(state)

    return Variant(name, "jax", run, devices=jax.device_count() if name == "jax_all" else 1)


def jax_host_variant(config: Config, synthetic: Synthetic, folder: str) -> Variant:
    """`data.placement=host` as `sesemi_jax.loop.fit` runs it (one device)."""
    from sesemi_common.mmap_cache import cached_copy
    from sesemi_jax import placement as jax_placement

    method = jax_methods.load(config)
    schedule = jax_optim.lr_schedule(config.optim, config.train.steps)
    state = _jax_state(config, method, len(synthetic.images))
    step = jax_train.jit_train_steps(method, config, schedule)[1]
    pool = np.arange(len(synthetic.images))
    empty = np.zeros((0, *synthetic.images.shape[1:]), np.uint8)
    static = jax_train.device_data(empty, np.zeros(0), synthetic.labeled, synthetic.mean, synthetic.std, pool=pool)
    feed = jax_placement.HostBatches(cached_copy(synthetic.images, folder), synthetic.labels, synthetic.labeled,
                                     pool, state.rng, config, method, static)
    waits: list[float] = []
    batches = jax_placement.prefetched(feed, range(ENDLESS), waits=waits)

    def run(n: int) -> None:
        nonlocal state
        for _ in range(n):
            _, (data, spec) = next(batches)
            state, _metrics = step(state, data, spec)
        jax.block_until_ready(state)

    return Variant("jax_host", "jax", run, input_waits=waits)


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


def torch_variant(name: str, config: Config, synthetic: Synthetic, device: torch.device) -> Variant:
    method = torch_methods.load(config)
    channels_last = name == "torch_channels_last"
    model = _torch_model(config, method, device, channels_last)
    optimizer = torch_optim.make_optimizer(model, config.optim)
    scheduler = torch_optim.make_scheduler(optimizer, config.optim, config.train.steps)
    ema = make_ema(model, config)
    method_state = torch_methods.initial_state(config, NUM_CLASSES, device, len(synthetic.images))
    net = torch.compile(model) if name == "torch_compile" else model
    mean, std = torch.from_numpy(synthetic.mean), torch.from_numpy(synthetic.std)
    batches = _batches(config, synthetic, device)
    step = 0

    def run(n: int) -> None:
        nonlocal step
        for _ in range(n):
            batch = next(batches)  # train.precision=bf16: the step autocasts its own forwards
            train_step(net, optimizer, scheduler, batch, step, method, config, mean, std, channels_last, ema,
                       method_state=method_state)
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


def build_variants(names: list[str], configs: list[Config], synthetic: Synthetic,
                   device: torch.device) -> tuple[list[Variant], dict[str, Callable[[int], None]]]:
    """Every variant in every precision (one config each), timed together so that load hits all alike."""
    data = jax_train.device_data(synthetic.images, synthetic.labels, synthetic.labeled, synthetic.mean,
                                 synthetic.std)
    variants = []
    for config in configs:
        for name in names:
            if name == "jax_ynnpack" and jax.default_backend() != "cpu":
                continue  # YNNPACK is a CPU library: on other backends this is the `jax` variant again
            if name == "jax_host":
                folder = tempfile.mkdtemp(prefix="sesemi-throughput-")
                atexit.register(shutil.rmtree, folder, True)  # the memory-mapped copy goes with the process
                variant = jax_host_variant(config, synthetic, folder)
            else:
                variant = jax_variant(name, config, data) if name.startswith("jax") \
                    else torch_variant(name, config, synthetic, device)
            variant.precision = config.train.precision
            variants.append(variant)
    # The input pipeline is float32 in every precision (the models cast their inputs).
    pipelines = {"jax": jax_input_pipeline(configs[0], data), "torch": torch_input_pipeline(configs[0], synthetic, device)}
    return variants, pipelines


def measure(variants: list[Variant], pipelines: dict, args: argparse.Namespace) -> dict[str, float]:
    """Interleaved repetitions; fills each variant's `seconds`, returns median input seconds per step."""
    for variant in variants:
        if variant.run is not None:
            print(f"  warm-up {variant.label}", flush=True)
            warm_up(variant, args.warmup)
    for run in pipelines.values():
        run(args.warmup)
    pipeline_seconds = {name: [] for name in pipelines}
    for variant in variants:
        if variant.input_waits is not None:
            variant.input_waits.clear()  # the timed steps' waits only, not the warm-up's (nor starting the thread)
    for repeat in range(args.repeats):
        for variant in variants:
            if variant.run is not None:
                variant.seconds.append(seconds_per_step(variant.run, args.steps_per_repeat))
        for name, run in pipelines.items():
            pipeline_seconds[name].append(seconds_per_step(run, args.steps_per_repeat))
        done = ", ".join(f"{v.label} {1e3 * v.seconds[-1]:.0f}" for v in variants if v.seconds)
        print(f"  repetition {repeat + 1}/{args.repeats} ms/step: {done} (load {os.getloadavg()[0]:.1f})", flush=True)
    return {name: statistics.median(ts) for name, ts in pipeline_seconds.items()}


def rows_for(model: str, variants: list[Variant], input_s: dict[str, float], images: int,
             setting: dict) -> list[dict]:
    """One row per variant; ratios against torch eager in the same precision and the same variant in fp32."""
    medians = {(v.name, v.precision): statistics.median(v.seconds) for v in variants if v.seconds}
    rows = []
    for v in variants:
        row = {"model": model, "variant": v.name, "precision": v.precision, "devices": v.devices,
               "device": setting[f"{v.framework}_device"], "error": v.error}
        step_s = medians.get((v.name, v.precision))
        if step_s is not None:
            eager, fp32 = medians.get(("torch_eager", v.precision)), medians.get((v.name, "fp32"))
            row.update(step_ms=1e3 * step_s, step_ms_all=[1e3 * t for t in v.seconds],
                       images_per_s=images / step_s, vs_torch_eager=eager / step_s if eager else None,
                       vs_fp32=fp32 / step_s if fp32 else None,
                       input_ms=1e3 * input_s[v.framework], input_pct=100 * input_s[v.framework] / step_s)
            if v.input_waits:
                row.update(input_wait_ms=1e3 * statistics.median(v.input_waits),
                           input_wait_max_ms=1e3 * max(v.input_waits))
        rows.append(row)
    return rows


def scaling_rows(rows: list[dict]) -> list[dict]:
    """JAX on all devices against one device, same global batch: speed-up and efficiency (speed-up / devices)."""
    one = {(r["model"], r["precision"]): r for r in rows if r["variant"] == "jax" and "images_per_s" in r}
    out = []
    for r in rows:
        if r["variant"] != "jax_all":
            continue
        base = one.get((r["model"], r["precision"]))
        row = {"model": r["model"], "precision": r["precision"], "devices": r["devices"], "error": r["error"]}
        if base and "images_per_s" in r:
            speedup = r["images_per_s"] / base["images_per_s"]
            row.update(one_device=base["images_per_s"], all_devices=r["images_per_s"], speedup=speedup,
                       efficiency=speedup / r["devices"])
        out.append(row)
    return out


# ----------------------------------------------------------------------------- host syncs
HOST_CALLBACKS = ("pure_callback", "io_callback", "debug_callback")


def _guard_is_live() -> bool:
    """Whether `transfer_guard("disallow")` refuses an implicit host-to-device transfer here."""
    add_one = jax.jit(lambda x: x + 1)
    add_one(jnp.zeros(2))  # compiled outside the guard
    try:
        with jax.transfer_guard("disallow"):
            add_one(np.zeros(2, np.float32))
    except Exception:  # noqa: BLE001 - jaxlib raises its own runtime error type
        return True
    return False


def _primitives(jaxpr) -> set[str]:
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    names |= _primitives(inner)
    return names


@contextlib.contextmanager
def counting_compiles() -> Iterator[list[str]]:
    """The XLA compilations that happen inside the block (jax.monitoring's backend-compile events)."""
    events = []

    def listen(event: str, _seconds: float, **_) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def no_host_sync(config: Config, synthetic: Synthetic, variant: str = "jax", steps: int = 3) -> dict:
    """Steady-state steps of the trainer's jitted step under `jax.transfer_guard("disallow")`."""
    method = jax_methods.load(config)
    data = jax_train.device_data(synthetic.images, synthetic.labels, synthetic.labeled, synthetic.mean, synthetic.std)
    step, state, data = jax_step(variant, config, method, data)
    callbacks = sorted(_primitives(step.trace(state, data).jaxpr.jaxpr) & set(HOST_CALLBACKS))
    with counting_compiles() as first:
        state, metrics = step(state, data)  # compiles, outside the guard
        jax.block_until_ready(state)
    result = {"model": config.model.backbone, "precision": config.train.precision, "variant": variant,
              "devices": jax.device_count() if variant == "jax_all" else 1, "guard_live": _guard_is_live(),
              "host_callbacks": callbacks, "transfer_error": "", "first_step_compiles": len(first)}
    with counting_compiles() as later:
        try:
            with jax.transfer_guard("disallow"):
                for _ in range(steps):
                    state, metrics = step(state, data)
                jax.block_until_ready((state, metrics))
        except Exception as err:  # noqa: BLE001
            result["transfer_error"] = first_line(err)
    result["recompiles"] = len(later)
    result["ok"] = (result["guard_live"] and not callbacks and not result["transfer_error"]
                    and not result["recompiles"])
    return result


def profile_markdown(results: list[dict]) -> str:
    lines = ["| model | precision | variant | devices | implicit transfers | compiles after step 1 | host callbacks | verdict |",
             "|---|---|---|---:|---|---|---|---|"]
    for r in results:
        verdict = "PASS" if r["ok"] else ("FAIL" if r["guard_live"] else "INCONCLUSIVE: the guard is not live here")
        lines.append(f"| {r['model']} | {r['precision']} | {r['variant']} | {r['devices']} "
                     f"| {r['transfer_error'] or 'none'} | {r['recompiles']} "
                     f"| {', '.join(r['host_callbacks']) or 'none'} | {verdict} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- report
def markdown(rows: list[dict]) -> str:
    lines = ["| model | variant | device | precision | ms / step | images/s | vs torch eager | vs fp32 | input % |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        devices = f" x{r['devices']}" if r["devices"] > 1 else ""
        head = f"| {r['model']} | {r['variant']} | {r['device']}{devices} | {r['precision']} "
        if r["error"]:
            lines.append(head + f"| {r['error'].replace('|', '/')} | | | | |")
            continue
        ratio = f"{r['vs_torch_eager']:.2f}x" if r["vs_torch_eager"] else "-"
        vs_fp32 = f"{r['vs_fp32']:.2f}x" if r["vs_fp32"] and r["precision"] != "fp32" else "-"
        inputs = f"{r['input_pct']:.0f}% ({r['input_ms']:.1f} ms)"
        if "input_wait_ms" in r:  # host placement: the measured wait for the prefetched batch, not an estimate
            inputs = f"waits {r['input_wait_ms']:.2f} ms (longest {r['input_wait_max_ms']:.1f})"
        lines.append(head + f"| {r['step_ms']:.1f} | {r['images_per_s']:,.0f} | {ratio} | {vs_fp32} | {inputs} |")
    return "\n".join(lines)


def scaling_markdown(rows: list[dict]) -> str:
    lines = ["| model | precision | devices | jax images/s (1 device) | jax_all images/s | speed-up | efficiency |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "speedup" not in r:
            lines.append(f"| {r['model']} | {r['precision']} | {r['devices']} | {r['error'] or 'not measured'} | | | |")
            continue
        lines.append(f"| {r['model']} | {r['precision']} | {r['devices']} | {r['one_device']:,.0f} "
                     f"| {r['all_devices']:,.0f} | {r['speedup']:.2f}x | {100 * r['efficiency']:.0f}% |")
    return "\n".join(lines)


def describe_setting(args: argparse.Namespace, device: torch.device) -> dict:
    jax_device = jax.devices()[0]
    return {"jax": jax.__version__, "torch": torch.__version__, "jax_device": jax_device.platform,
            "jax_device_kind": jax_device.device_kind, "jax_devices": jax.device_count(),
            "torch_device": device.type if device.type == "cpu" else torch.cuda.get_device_name(device),
            "precisions": args.precisions, "torch_threads": torch.get_num_threads(),
            "cpus": len(os.sched_getaffinity(0)), "load_average_before": os.getloadavg()}


def names(text: str, allowed: tuple[str, ...], option: str, parser: argparse.ArgumentParser) -> list[str]:
    chosen = [t for t in text.split(",") if t]
    unknown = sorted(set(chosen) - set(allowed))
    if unknown or not chosen:
        parser.error(f"{option}: unknown or no value(s) {', '.join(unknown)}: use {', '.join(allowed)}")
    return chosen


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet20,wrn28_2", help="comma-separated backbones, e.g. resnet20,wrn28_2,resnet18")
    parser.add_argument("--methods", default="sesemi", help="comma-separated registered methods (method.name)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated train.precision values")
    parser.add_argument("--host-devices", type=int, default=0,
                        help="JAX CPU devices to force (jax_num_cpu_devices) for jax_all; 0: as JAX starts")
    parser.add_argument("--profile", action="store_true", help="check the JAX step for host syncs; time nothing")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: all cores)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions; the median is reported")
    parser.add_argument("--steps-per-repeat", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first (compilation)")
    parser.add_argument("--batch-labeled", type=int, default=96)
    parser.add_argument("--batch-unlabeled", type=int, default=16, help="each expanded to 6 proxy views")
    parser.add_argument("--image-size", type=int, default=32,
                        help="side of the synthetic images in px (data.image_size follows: shifts scale), e.g. 96")
    parser.add_argument("--images", type=int, default=2000, help="synthetic training images (10 classes)")
    parser.add_argument("--labeled", type=int, default=1000, help="of which labeled")
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda (JAX: its default backend)")
    parser.add_argument("--json", help="also write the setting and rows to this file")
    args = parser.parse_args(argv)
    args.variants = names(args.variants, VARIANTS, "--variants", parser)
    args.precisions = names(args.precisions, PRECISIONS, "--precisions", parser)
    if args.repeats < 1 or args.steps_per_repeat < 1 or args.warmup < 1:
        parser.error("--repeats, --steps-per-repeat and --warmup must be at least 1 (warm-up compiles)")
    if args.image_size < 8:
        parser.error(f"--image-size must be at least 8 px, got {args.image_size}")
    if args.host_devices < 0:
        parser.error("--host-devices must be 0 (as JAX starts) or a device count")
    return args


def force_host_devices(count: int) -> None:
    """N CPU devices for JAX; only possible before its backend starts (this script starts it in main)."""
    if count:
        try:
            jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError as err:
            raise SystemExit(f"--host-devices {count}: JAX's backend already started ({err}); run this script "
                             f"in a fresh process, or set XLA_FLAGS=--xla_force_host_platform_device_count={count}") from err


def profile(args: argparse.Namespace, synthetic: Synthetic) -> list[dict]:
    results = []
    for backbone in args.models.split(","):
        for precision in args.precisions:
            config = make_config(backbone, "sesemi", precision, args)
            for variant in ("jax", "jax_all") if jax.device_count() > 1 else ("jax",):
                results.append(no_host_sync(config, synthetic, variant))
                print(f"  {backbone} {precision} {variant}: {'PASS' if results[-1]['ok'] else 'FAIL'}", flush=True)
    print(profile_markdown(results))
    return results


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    force_host_devices(args.host_devices)
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    device = torch.device(args.device)
    setting = describe_setting(args, device)
    print(", ".join(f"{k}={v}" for k, v in setting.items()), flush=True)
    synthetic = synthetic_data(args.images, args.labeled, args.image_size)
    if args.profile:
        results = profile(args, synthetic)
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "setting": setting, "profile": results},
                                                  indent=1) + "\n")
        if not all(r["ok"] for r in results):
            raise SystemExit(1)
        return results
    rows = []
    for backbone in args.models.split(","):
        for method in args.methods.split(","):
            configs = [make_config(backbone, method, precision, args) for precision in args.precisions]
            name = backbone if method == "sesemi" else f"{backbone} {method}"
            print(f"{name}:", flush=True)
            variants, pipelines = build_variants(args.variants, configs, synthetic, device)
            input_s = measure(variants, pipelines, args)
            rows += rows_for(name, variants, input_s, images_per_step(configs[0]), setting)
    setting["load_average_after"] = os.getloadavg()
    print(f"\n{args.image_size} px, {args.batch_labeled} labeled + {args.batch_unlabeled} unlabeled x each method's views per "
          f"step; median of "
          f"{args.repeats} x {args.steps_per_repeat} steps; load average before {setting['load_average_before']}, "
          f"after {setting['load_average_after']}\n")
    print(markdown(rows))
    scaling = scaling_rows(rows)
    if scaling:
        print("\nScaling over devices (JAX, same global batch):\n")
        print(scaling_markdown(scaling))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "setting": setting, "rows": rows,
                                               "scaling": scaling}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
