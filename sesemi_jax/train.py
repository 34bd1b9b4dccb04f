"""The pure, jit-compiled training step in JAX: state in, state and metrics out.

Everything a step needs happens inside one jitted function: drawing the labeled and
unlabeled indices (epoch permutations keyed by `fold_in(rng, step)`, the unlabeled ones walking
the pool's indices), gathering uint8 images from the run's images that live on the device,
augmentation, the method's views, both backbone calls, the loss, its gradient and the optimizer update. Nothing syncs with the
host; metrics come back as device arrays that the loop fetches every `log_every` steps.
The trainer knows no method: it runs the branches the method's registry entry declares,
on the views its `apply_views` makes, and differentiates its `loss` (docs/DESIGN.md section 7).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sesemi_common.config import Config, ConfigError
from sesemi_common.ema import ema_decay_at
from sesemi_common.methods import STOP_GRADIENT, TEACHER, ema_decay, unlabeled_batch, view_sizes
from sesemi_common.methods import knobs as method_knobs
from sesemi_common.pool import labels_known
from sesemi_common.sampling import BatchSpec, crop_geometry
from sesemi_common.stats import normalization_table

from . import distributed, transforms
from .methods import LossInputs, Method, loss_with_state, sample_views


# A pytree, so specs can be drawn inside the jitted step or passed into it from the host.
jax.tree_util.register_dataclass(BatchSpec, data_fields=[
    "labeled", "unlabeled", "sup_offsets", "sup_flips", "views", "unlabeled_positions"], meta_fields=[])


class TrainState(train_state.TrainState):
    batch_stats: Any
    rng: jax.Array  # base key; every step's keys derive from (rng, step), so resuming is exact
    ema: Any  # {} or {"params", "batch_stats"}: the exponential moving average of both (the teacher)
    method_state: Any = struct.field(default_factory=dict)  # {} or the method's state (registry `initial_state`)


@struct.dataclass
class DeviceData:
    """The run's images on the device (the training images, then the pool's own), as uint8, plus
    what the step needs to read them."""

    images: jax.Array  # (N, H, W, C) uint8
    labels: jax.Array  # (N,) int32 (-1 for the pool's own images)
    labeled: jax.Array  # (L,) int32 indices of the labeled split
    norm_table: jax.Array  # (C, 256) float32 normalized value of each pixel level (`normalization_table`)
    zca: Any = None  # None, or (mean (D,), matrix (D, D)) float32: GCN + ZCA replaces the table
    pool: Any = None  # (P,) int32 indices of the unlabeled pool; None: every image (today's protocol)


def device_data(images: np.ndarray, labels: np.ndarray, labeled: np.ndarray,
                mean: np.ndarray, std: np.ndarray, zca: tuple[np.ndarray, np.ndarray] | None = None,
                pool: np.ndarray | None = None) -> DeviceData:
    return DeviceData(jnp.asarray(images, jnp.uint8), jnp.asarray(labels, jnp.int32),
                      jnp.asarray(labeled, jnp.int32), jnp.asarray(normalization_table(mean, std)),
                      None if zca is None else tuple(jnp.asarray(a, jnp.float32) for a in zca),
                      None if pool is None else jnp.asarray(pool, jnp.int32))


def create_state(model, variables: dict, tx: optax.GradientTransformation, seed: int,
                 ema_decay: float = 0.0, method_state: dict | None = None) -> TrainState:
    """The state at step 0; with `ema_decay` > 0 its EMA starts as a copy of the variables.
    `method_state`: the method's state at step 0 (`methods.initial_state`), {} for none."""
    batch_stats = variables.get("batch_stats", {})
    ema = jax.tree_util.tree_map(jnp.array, {"params": variables["params"], "batch_stats": batch_stats}) \
        if ema_decay else {}
    return TrainState.create(apply_fn=model.apply, params=variables["params"], batch_stats=batch_stats, tx=tx,
                             rng=jax.random.PRNGKey(seed), ema=ema, method_state=method_state or {})


def update_ema(ema: dict, state: TrainState, decay: float | jax.Array) -> dict:
    """ema + (1 - decay) (new - ema) for params and BatchNorm running statistics alike (docs/DESIGN.md
    section 7: averaged, not copied; torch's AveragedModel(use_buffers=True) does the same).
    optax computes `(1 - d) new + d ema`, torch's lerp `ema + (1 - d)(new - ema)`: the same
    value, rounded differently (parity_tests/test_ema_parity.py bounds it)."""
    new = {"params": state.params, "batch_stats": state.batch_stats}
    return optax.incremental_update(new, ema, step_size=1.0 - decay)


def _epoch_batch(key: jax.Array, step: jax.Array, batch: int, pool: int) -> jax.Array:
    """Positions `step*batch ...` of an endless walk through fresh permutations of range(pool)."""
    flat = step * batch + jnp.arange(batch)
    first_epoch = (step * batch) // pool
    this_perm = jax.random.permutation(jax.random.fold_in(key, first_epoch), pool)
    next_perm = jax.random.permutation(jax.random.fold_in(key, first_epoch + 1), pool)
    return jnp.where(flat // pool == first_epoch, this_perm[flat % pool], next_perm[flat % pool])


def sample_spec(key: jax.Array, step: jax.Array, data: DeviceData, config: Config,
                method: Method) -> BatchSpec:
    """The on-device twin of `sesemi_common.sampling.HostStream`."""
    batch_labeled, batch_unlabeled = config.train.batch_labeled, unlabeled_batch(config)
    padding, _ = crop_geometry(config)
    labeled_key, unlabeled_key, aug_key = jax.random.split(key, 3)
    # The walk keys must not depend on the step, or each step would see another permutation.
    labeled_pos = _epoch_batch(labeled_key, step, batch_labeled, data.labeled.shape[0])
    if data.pool is None:  # the pool is every image: positions are indices
        positions = _epoch_batch(unlabeled_key, step, batch_unlabeled, data.images.shape[0])
        unlabeled = positions
    else:
        positions = _epoch_batch(unlabeled_key, step, batch_unlabeled, data.pool.shape[0])
        unlabeled = data.pool[positions]
    sup_crop_key, flip_key, views_key = jax.random.split(jax.random.fold_in(aug_key, step), 3)
    flips = transforms.sample_flip_params(flip_key, batch_labeled)
    return BatchSpec(
        labeled=data.labeled[labeled_pos],
        unlabeled=unlabeled,
        sup_offsets=transforms.sample_crop_params(sup_crop_key, batch_labeled, padding),
        sup_flips=flips & config.augment.hflip,
        views=sample_views(views_key, method.spec.view_params, batch_unlabeled, padding, config.data.image_size),
        unlabeled_positions=positions,
    )


def batch_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh | None:
    """A 1-D mesh over the batch axis; None on a single device (nothing to split)."""
    devices = list(devices or jax.devices())
    return Mesh(np.array(devices), ("batch",)) if len(devices) > 1 else None


def check_divisible(config: Config, mesh: Mesh | None) -> None:
    n = 1 if mesh is None else mesh.size
    sizes = [("train.batch_labeled", config.train.batch_labeled)]
    sizes += [(f"view {view!r} (train.batch_unlabeled x its images per unlabeled image)", size)
              for view, size in view_sizes(config).items()]
    for name, size in sizes:
        if size % n:
            raise ConfigError(f"{name} ({size}) must be divisible by the {n} devices the batch is split over")


def _split_batch(x: jax.Array | None, mesh: Mesh | None) -> jax.Array | None:
    # Data parallelism: XLA partitions the step along the batch axis; BatchNorm statistics and
    # the loss stay global means, so 1 and N devices compute the same step.
    if x is None or mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec("batch")))


def model_inputs(data: DeviceData, spec: BatchSpec, method: Method, config: Config,
                 noise_key: jax.Array | None = None):
    """(normalized labeled batch, {view name: normalized views}, the method's targets).

    With `augment.noise_std` > 0, every normalized input gets its own Gaussian noise drawn
    from `noise_key` (the paper adds it to both branches, after augmentation)."""
    padding, mode = crop_geometry(config)
    if config.augment.noise_std and noise_key is None:
        raise ValueError("augment.noise_std > 0 needs a noise_key to draw the input noise from")

    def normalized(images: jax.Array, index: int) -> jax.Array:
        x = transforms.normalize_inputs(images, data.norm_table, data.zca)
        if not config.augment.noise_std:
            return x
        noise_key_i = jax.random.fold_in(noise_key, index)  # input 0 is the labeled batch, then each view
        return transforms.apply_noise(x, transforms.sample_noise_params(noise_key_i, x.shape, config.augment.noise_std))

    sup = transforms.apply_crop(data.images[spec.labeled], spec.sup_offsets, padding, mode)
    x_sup = normalized(transforms.apply_hflip(sup, spec.sup_flips), 0)
    if not method.spec.views_per_image:
        return x_sup, {}, {}
    views, targets = method.apply_views(data.images[spec.unlabeled], spec.views, config)
    # The unlabeled images' own labels, for logging only (e.g. a method's pseudo-label accuracy);
    # no loss may train on them. A pool with images of its own has none to give.
    if labels_known(config.data):
        targets = {**targets, "true_labels": data.labels[spec.unlabeled]}
    if spec.unlabeled_positions is not None:  # what a per-image state is indexed by (FlexMatch)
        targets = {**targets, "unlabeled_index": spec.unlabeled_positions}
    return x_sup, {name: normalized(v, i) for i, (name, v) in enumerate(views.items(), start=1)}, targets


def _student_forward(state: TrainState, params, x_sup, views, method: Method, config: Config, dropout_key):
    """The labeled batch and every non-teacher branch, in one backbone call with
    `joint_forward`, else one call each in order: (sup logits, {branch: heads}, batch_stats)."""
    branches = [b for b in method.spec.branches if b.mode != TEACHER]
    outputs, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, x_sup, *(views[b.view] for b in branches),
        heads=(("sup",), *(b.heads for b in branches)), train=True, joint_forward=config.model.joint_forward,
        mutable=["batch_stats"], rngs={"dropout": dropout_key})
    by_branch = {b.name: jax.lax.stop_gradient(out) if b.mode == STOP_GRADIENT else out
                 for b, out in zip(branches, outputs[1:])}
    return outputs[0]["sup"], by_branch, updates["batch_stats"]


def _teacher_forward(state: TrainState, views, method: Method, dropout_key) -> dict:
    """Teacher branches: the EMA variables in train mode (batch statistics, dropout), under
    stop-gradient; their running-statistics updates are dropped (the EMA owns those)."""
    outputs = {}
    for i, branch in enumerate(b for b in method.spec.branches if b.mode == TEACHER):
        (out,), _ = state.apply_fn(state.ema, views[branch.view], heads=(branch.heads,), train=True,
                                   mutable=["batch_stats"], rngs={"dropout": jax.random.fold_in(dropout_key, i + 1)})
        outputs[branch.name] = jax.lax.stop_gradient(out)
    return outputs


def loss_and_grads(state: TrainState, data: DeviceData, spec: BatchSpec, *, method: Method,
                   config: Config, mesh: Mesh | None = None) -> tuple[jax.Array, Any, Any, dict, jax.Array, Any]:
    """(loss, grads, new batch_stats, loss terms, supervised logits, the method's next state) of
    the batch `spec` describes."""
    step_key = jax.random.fold_in(jax.random.split(state.rng)[0], state.step)
    noise_key, dropout_key = jax.random.split(step_key)
    x_sup, views, targets = model_inputs(data, spec, method, config, noise_key)
    x_sup, labels = _split_batch(x_sup, mesh), _split_batch(data.labels[spec.labeled], mesh)
    views = {name: _split_batch(v, mesh) for name, v in views.items()}
    teacher = _teacher_forward(state, views, method, dropout_key)
    knobs = method_knobs(config)

    def loss_fn(params):
        sup_logits, outputs, batch_stats = _student_forward(state, params, x_sup, views, method, config, dropout_key)
        inputs = LossInputs(sup_logits, labels, {**outputs, **teacher}, targets, state.step, knobs,
                            state.method_state)
        total, terms, method_state = loss_with_state(method, inputs)
        return total, (batch_stats, terms, sup_logits, jax.lax.stop_gradient(method_state))

    (loss, (batch_stats, terms, sup_logits, method_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    return loss, grads, batch_stats, terms, sup_logits, method_state


def train_step_on_spec(state: TrainState, data: DeviceData, spec: BatchSpec, *, method: Method,
                       config: Config, schedule: optax.Schedule, mesh: Mesh | None = None) -> tuple[TrainState, dict]:
    """One optimizer step on the batch described by `spec`."""
    loss, grads, batch_stats, terms, sup_logits, method_state = loss_and_grads(state, data, spec, method=method,
                                                                               config=config, mesh=mesh)
    labels = data.labels[spec.labeled]
    metrics = {"loss": loss, **terms, "lr": schedule(state.step),
               "train_accuracy": jnp.mean(jnp.argmax(sup_logits, -1) == labels)}
    new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats, method_state=method_state)
    metrics.update(norms(grads, state.params, new_state.params))
    if ema_decay(config):
        new_state = new_state.replace(ema=update_ema(state.ema, new_state, ema_decay_now(config, new_state)))
    return new_state, metrics


def ema_decay_now(config: Config, new_state: TrainState) -> float | jax.Array:
    """The decay of the EMA update that follows the optimizer step which made `new_state`:
    `sesemi_common.ema.ema_decay_at` with t = `new_state.step`, the steps taken counting this one
    (the Mean Teacher code's `global_step`). Without train.ema_warmup a Python float, as before;
    with it a traced value of the params' dtype (a float64 decay would promote float32 weights
    under x64), computed in the step with `jnp.minimum`: no host sync."""
    dtype = jax.tree_util.tree_leaves(new_state.params)[0].dtype
    return ema_decay_at(config, jnp.asarray(new_state.step).astype(dtype), minimum=jnp.minimum)


def norms(grads, params, new_params) -> dict[str, jax.Array]:
    """The L2 norms big_vision logs: of the gradient, of the parameters after the step, and of the
    update the step made (new - old parameters, whatever the optimizer did to the gradient).
    Device arrays: they travel with the other metrics, so the step does not sync with the host."""
    update = jax.tree_util.tree_map(jnp.subtract, new_params, params)
    return {"grad_norm": optax.global_norm(grads), "param_norm": optax.global_norm(new_params),
            "update_norm": optax.global_norm(update)}


def train_step(state: TrainState, data: DeviceData, *, method: Method, config: Config,
               schedule: optax.Schedule, mesh: Mesh | None = None) -> tuple[TrainState, dict]:
    """One step that draws its own batch on the device (the normal path)."""
    spec = sample_spec(jax.random.split(state.rng)[1], state.step, data, config, method)
    return train_step_on_spec(state, data, spec, method=method, config=config, schedule=schedule, mesh=mesh)


def jit_train_steps(method: Method, config: Config, schedule: optax.Schedule,
                    mesh: Mesh | None = None) -> tuple[Callable, Callable]:
    """(step drawing its own batch, step on a given `BatchSpec`), both jitted with the state donated."""
    kwargs = dict(method=method, config=config, schedule=schedule, mesh=mesh)
    options = dict(donate_argnums=0, compiler_options=compiler_options(), **_replicated_outputs(mesh))
    own = jax.jit(partial(train_step, **kwargs), **options)
    on_spec = jax.jit(partial(train_step_on_spec, **kwargs), **options)
    return own, on_spec


def _replicated_outputs(mesh: Mesh | None) -> dict:
    # Every device ends the step with the whole state and metrics, so each process can fetch
    # them (a global array is readable in a process only where it is replicated).
    return {} if mesh is None else {"out_shardings": NamedSharding(mesh, PartitionSpec())}


def compiler_options() -> dict[str, str]:
    """XLA options for the train step. On CPU, jaxlib 0.10 hands the weight-gradient
    convolutions to YNNPACK, which runs them up to 7.6x slower than XLA's own Eigen kernels
    (149 ms against 19.6 ms for a 32x32 16->16 conv on 128 images); turning the YNNPACK
    fusions off made the ResNet-20 step 1.09x and the WRN-28-2 step 1.82x faster on one core
    (the former benchmarks/jax_speed_study.py; benchmarks/ynnpack_check.py re-tests it). Only the
    kernel choice changes, not the maths."""
    if jax.default_backend() != "cpu":
        return {}
    return {"xla_cpu_experimental_ynn_fusion_type": ""}


def make_eval_logits(model, mesh: Mesh | None = None) -> Callable:
    """Supervised logits of a batch; with `mesh`, each device computes its share of the batch."""
    def eval_logits(variables, images, norm_table, zca=None):
        images = _split_batch(images, mesh)
        (outputs,) = model.apply(variables, transforms.normalize_inputs(images, norm_table, zca), train=False)
        return outputs["sup"]
    return jax.jit(eval_logits, **_replicated_outputs(mesh))


def predict_logits(eval_logits: Callable, variables: dict, images: np.ndarray, mean, std,
                   batch_size: int, zca: tuple[np.ndarray, np.ndarray] | None = None,
                   mesh: Mesh | None = None) -> np.ndarray:
    """Supervised-head logits of uint8 NHWC images; the last batch is padded so one shape compiles.
    `mesh`: the one `eval_logits` was made with; batches are rounded up to split over it."""
    if mesh is not None:
        batch_size = -(-batch_size // mesh.size) * mesh.size
    norm_table = jnp.asarray(normalization_table(mean, std))
    zca = None if zca is None else tuple(jnp.asarray(a, jnp.float32) for a in zca)
    norm_table, zca = distributed.replicated((norm_table, zca), mesh)
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        outputs.append(np.asarray(eval_logits(variables, padded, norm_table, zca))[:len(chunk)])
    return np.concatenate(outputs)

