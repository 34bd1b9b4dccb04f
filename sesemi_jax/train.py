"""The pure, jit-compiled SESEMI step in JAX: state in, state and metrics out.

Everything a step needs happens inside one jitted function: drawing the labeled and
unlabeled indices (epoch permutations keyed by `fold_in(rng, step)`), gathering uint8
images from the training set that lives on the device, augmentation, the method's views,
both backbone calls, the loss, its gradient and the optimizer update. Nothing syncs with the
host; metrics come back as device arrays that the loop fetches every `log_every` steps.
The trainer knows nothing about SESEMI: the `Method` plug-in supplies views and loss.
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
from sesemi_common.sampling import BatchSpec, crop_geometry
from sesemi_common.stats import normalization_table

from . import losses, transforms
from .methods import Method


# A pytree, so specs can be drawn inside the jitted step or passed into it from the host.
jax.tree_util.register_dataclass(BatchSpec, data_fields=[
    "labeled", "unlabeled", "sup_offsets", "sup_flips", "self_offsets"], meta_fields=[])


class TrainState(train_state.TrainState):
    batch_stats: Any
    rng: jax.Array  # base key; every step's keys derive from (rng, step), so resuming is exact


@struct.dataclass
class DeviceData:
    """The training set on the device, as uint8, plus what the step needs to read it."""

    images: jax.Array  # (N, H, W, C) uint8
    labels: jax.Array  # (N,) int32
    labeled: jax.Array  # (L,) int32 indices of the labeled split
    norm_table: jax.Array  # (C, 256) float32 normalized value of each pixel level (`normalization_table`)


def device_data(images: np.ndarray, labels: np.ndarray, labeled: np.ndarray,
                mean: np.ndarray, std: np.ndarray) -> DeviceData:
    return DeviceData(jnp.asarray(images, jnp.uint8), jnp.asarray(labels, jnp.int32),
                      jnp.asarray(labeled, jnp.int32), jnp.asarray(normalization_table(mean, std)))


def create_state(model, variables: dict, tx: optax.GradientTransformation, seed: int) -> TrainState:
    return TrainState.create(apply_fn=model.apply, params=variables["params"],
                             batch_stats=variables.get("batch_stats", {}), tx=tx,
                             rng=jax.random.PRNGKey(seed))


def _epoch_batch(key: jax.Array, step: jax.Array, batch: int, pool: int) -> jax.Array:
    """Positions `step*batch ...` of an endless walk through fresh permutations of range(pool)."""
    flat = step * batch + jnp.arange(batch)
    first_epoch = (step * batch) // pool
    this_perm = jax.random.permutation(jax.random.fold_in(key, first_epoch), pool)
    next_perm = jax.random.permutation(jax.random.fold_in(key, first_epoch + 1), pool)
    return jnp.where(flat // pool == first_epoch, this_perm[flat % pool], next_perm[flat % pool])


def sample_spec(key: jax.Array, step: jax.Array, data: DeviceData, config: Config) -> BatchSpec:
    """The on-device twin of `sesemi_common.sampling.HostStream`."""
    train = config.train
    padding, _ = crop_geometry(config.augment)
    labeled_key, unlabeled_key, aug_key = jax.random.split(key, 3)
    # The walk keys must not depend on the step, or each step would see another permutation.
    labeled_pos = _epoch_batch(labeled_key, step, train.batch_labeled, data.labeled.shape[0])
    sup_crop_key, flip_key, self_crop_key = jax.random.split(jax.random.fold_in(aug_key, step), 3)
    flips = transforms.sample_flip_params(flip_key, train.batch_labeled)
    return BatchSpec(
        labeled=data.labeled[labeled_pos],
        unlabeled=_epoch_batch(unlabeled_key, step, train.batch_unlabeled, data.images.shape[0]),
        sup_offsets=transforms.sample_crop_params(sup_crop_key, train.batch_labeled, padding),
        sup_flips=flips & config.augment.hflip,
        self_offsets=transforms.sample_crop_params(self_crop_key, train.batch_unlabeled, padding),
    )


def batch_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh | None:
    """A 1-D mesh over the batch axis; None on a single device (nothing to split)."""
    devices = list(devices or jax.devices())
    return Mesh(np.array(devices), ("batch",)) if len(devices) > 1 else None


def check_divisible(config: Config, num_proxy: int, mesh: Mesh | None) -> None:
    n = 1 if mesh is None else mesh.size
    for name, size in (("train.batch_labeled", config.train.batch_labeled),
                       ("train.batch_unlabeled * proxy views", config.train.batch_unlabeled * num_proxy)):
        if size % n:
            raise ConfigError(f"{name} ({size}) must be divisible by the {n} devices the batch is split over")


def _split_batch(x: jax.Array | None, mesh: Mesh | None) -> jax.Array | None:
    # Data parallelism: XLA partitions the step along the batch axis; BatchNorm statistics and
    # the loss stay global means, so 1 and N devices compute the same step.
    if x is None or mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec("batch")))


def _model_inputs(key: jax.Array, data: DeviceData, spec: BatchSpec, method: Method, config: Config):
    padding, mode = crop_geometry(config.augment)
    sup = transforms.apply_crop(data.images[spec.labeled], spec.sup_offsets, padding, mode)
    x_sup = transforms.lookup_normalized(transforms.apply_hflip(sup, spec.sup_flips), data.norm_table)
    if method.num_proxy == 0:
        return x_sup, None, None
    unlabeled = transforms.apply_crop(data.images[spec.unlabeled], spec.self_offsets, padding, mode)
    views, targets = method.make_views(key, unlabeled)
    return x_sup, transforms.lookup_normalized(views, data.norm_table), targets


def loss_and_grads(state: TrainState, data: DeviceData, spec: BatchSpec, *, method: Method,
                   config: Config, mesh: Mesh | None = None) -> tuple[jax.Array, Any, Any, dict, jax.Array]:
    """(loss, grads, new batch_stats, loss terms, supervised logits) of the batch `spec` describes."""
    step_key = jax.random.fold_in(jax.random.split(state.rng)[0], state.step)
    views_key, dropout_key = jax.random.split(step_key)
    x_sup, x_self, self_targets = (_split_batch(x, mesh) for x in _model_inputs(views_key, data, spec, method, config))
    labels = _split_batch(data.labels[spec.labeled], mesh)
    weight = config.method.self_weight * losses.sigmoid_rampup(state.step, config.method.rampup_steps)

    def loss_fn(params):
        (sup_logits, self_logits), updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats}, x_sup, x_self, train=True,
            joint_forward=config.model.joint_forward, mutable=["batch_stats"],
            rngs={"dropout": dropout_key})
        total, terms = method.loss(sup_logits, labels, self_logits, self_targets, weight)
        return total, (updates["batch_stats"], terms, sup_logits)

    (loss, (batch_stats, terms, sup_logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return loss, grads, batch_stats, terms, sup_logits


def train_step_on_spec(state: TrainState, data: DeviceData, spec: BatchSpec, *, method: Method,
                       config: Config, schedule: optax.Schedule, mesh: Mesh | None = None) -> tuple[TrainState, dict]:
    """One optimizer step on the batch described by `spec`."""
    loss, grads, batch_stats, terms, sup_logits = loss_and_grads(state, data, spec, method=method,
                                                                 config=config, mesh=mesh)
    labels = data.labels[spec.labeled]
    metrics = {"loss": loss, **terms, "lr": schedule(state.step),
               "train_accuracy": jnp.mean(jnp.argmax(sup_logits, -1) == labels)}
    return state.apply_gradients(grads=grads, batch_stats=batch_stats), metrics


def train_step(state: TrainState, data: DeviceData, *, method: Method, config: Config,
               schedule: optax.Schedule, mesh: Mesh | None = None) -> tuple[TrainState, dict]:
    """One step that draws its own batch on the device (the normal path)."""
    spec = sample_spec(jax.random.split(state.rng)[1], state.step, data, config)
    return train_step_on_spec(state, data, spec, method=method, config=config, schedule=schedule, mesh=mesh)


def jit_train_steps(method: Method, config: Config, schedule: optax.Schedule,
                    mesh: Mesh | None = None) -> tuple[Callable, Callable]:
    """(step drawing its own batch, step on a given `BatchSpec`), both jitted with the state donated."""
    kwargs = dict(method=method, config=config, schedule=schedule, mesh=mesh)
    options = compiler_options()
    own = jax.jit(partial(train_step, **kwargs), donate_argnums=0, compiler_options=options)
    on_spec = jax.jit(partial(train_step_on_spec, **kwargs), donate_argnums=0, compiler_options=options)
    return own, on_spec


def compiler_options() -> dict[str, str]:
    """XLA options for the train step. On CPU, jaxlib 0.10 hands the weight-gradient
    convolutions to YNNPACK, which runs them up to 7.6x slower than XLA's own Eigen kernels
    (149 ms against 19.6 ms for a 32x32 16->16 conv on 128 images); turning the YNNPACK
    fusions off made the ResNet-20 step 1.09x and the WRN-28-2 step 1.82x faster on one core
    (benchmarks/jax_speed_study.py). Only the kernel choice changes, not the maths."""
    if jax.default_backend() != "cpu":
        return {}
    return {"xla_cpu_experimental_ynn_fusion_type": ""}


def make_eval_logits(model) -> Callable:
    @jax.jit
    def eval_logits(variables, images, norm_table):
        sup_logits, _ = model.apply(variables, transforms.lookup_normalized(images, norm_table), train=False)
        return sup_logits
    return eval_logits


def predict_logits(eval_logits: Callable, variables: dict, images: np.ndarray, mean, std,
                   batch_size: int) -> np.ndarray:
    """Supervised-head logits of uint8 NHWC images; the last batch is padded so one shape compiles."""
    norm_table = jnp.asarray(normalization_table(mean, std))
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        outputs.append(np.asarray(eval_logits(variables, padded, norm_table))[:len(chunk)])
    return np.concatenate(outputs)


def accuracy(eval_logits: Callable, variables: dict, images: np.ndarray, labels: np.ndarray,
             mean, std, batch_size: int) -> float:
    logits = predict_logits(eval_logits, variables, images, mean, std, batch_size)
    return float(np.mean(logits.argmax(-1) == labels))
