"""Run by test_multiprocess.py as each of 2 processes with one CPU device each: 2 SESEMI steps in
float64 on the global mesh over both processes, and the same 2 steps on process 0's device alone
(a 1-process, 1-device run); process 0 writes both results to OUT.npz.

    python -m tests.jax.multiprocess_step PORT PROCESS_ID OUT.npz [host]

With `host`, the 2-process run is fed by data.placement=host (`sesemi_jax.placement.HostBatches`
over a memory-mapped copy of the images), and each process also writes OUT.npz.rows<ID>.npz: the
rows it gathered at each step and the step's spec.

float64 as in the one-step rung (docs/DESIGN.md section 5): in float32 a ReLU input within rounding of
0 may flip sides between two summation orders and hide a real difference in the noise."""

import sys
import tempfile

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from sesemi_common.config import Config, apply_overrides  # noqa: E402
from sesemi_common.experiment import prepare  # noqa: E402
from sesemi_common.methods import ema_decay  # noqa: E402
from sesemi_common import mmap_cache  # noqa: E402
from sesemi_jax import distributed, methods, placement, train  # noqa: E402
from sesemi_jax.models import init_variables, make_model  # noqa: E402
from sesemi_jax.optim import lr_schedule, make_optimizer  # noqa: E402
from tests.kill_resume import TINY  # noqa: E402

STEPS = 2


def main() -> None:
    port, process_id, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    host = sys.argv[4:] == ["host"]
    process = distributed.initialize(f"127.0.0.1:{port}", 2, process_id)
    config = apply_overrides(Config(), [*TINY, f"train.steps={STEPS}"])
    with tempfile.TemporaryDirectory() as tmp:
        exp = prepare(config, f"{tmp}/run", process=process)
    method = methods.load(config)
    model = make_model(config.model.backbone, exp.num_classes, method.spec.heads, config.model.dropout)
    variables = he_normal_variables(model, config.data.image_size)
    data = train.device_data(exp.dataset.train_images, exp.dataset.train_labels, exp.labeled, exp.mean, exp.std)
    # The reference first, in process 0 alone while process 1 waits: a 2-core machine runs it sooner.
    results = run(model, variables, data, config, method, None) if process.writer else {}
    distributed.sync("reference done")
    if host:
        with tempfile.TemporaryDirectory() as tmp:
            cache = RecordingCache(mmap_cache.save_images(f"{tmp}/images.npy", exp.dataset.train_images))
            results.update(run(model, variables, data, config, method, train.batch_mesh(),
                               feed=(cache, exp.dataset.train_labels, exp.labeled)))
        np.savez(f"{out}.rows{process_id}.npz", **cache.record)
    else:
        results.update(run(model, variables, data, config, method, train.batch_mesh()))
    if process.writer:
        np.savez(out, **results)


class RecordingCache(mmap_cache.MappedImages):
    """The map, recording the rows each gather read."""

    def __init__(self, path):
        super().__init__(path)
        self.record: dict[str, np.ndarray] = {}

    def gather(self, indices):
        self.record[f"gathered/{len([k for k in self.record if k.startswith('gathered/')])}"] = np.asarray(indices)
        return super().gather(indices)


def he_normal_variables(model, image_size: int) -> dict:
    """float64 variables of the usual shape and scale, drawn with numpy: compiling the model's init
    would cost each process seconds this test does not need to spend."""
    shapes = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0), image_size))
    rng = np.random.default_rng(3)

    def draw(path, leaf) -> np.ndarray:
        name = jax.tree_util.keystr(path)
        if "kernel" in name:
            return rng.normal(0.0, np.sqrt(2.0 / np.prod(leaf.shape[:-1])), leaf.shape)
        return np.ones(leaf.shape) if "scale" in name or "var" in name else np.zeros(leaf.shape)
    return jax.tree_util.tree_map_with_path(draw, shapes)


def run(model, variables: dict, data: train.DeviceData, config: Config, method, mesh,
        feed: tuple | None = None) -> dict[str, np.ndarray]:
    """{'<name>/<leaf path>': params and batch_stats after STEPS steps, '<name>/loss', '<name>/devices'}.
    `feed` (cache, labels, labeled): the steps take their batches from host placement's HostBatches."""
    name = "one_device" if mesh is None else "processes"
    tx, schedule = make_optimizer(config.optim, STEPS), lr_schedule(config.optim, STEPS)
    state = train.create_state(model, variables, tx, config.train.seed, ema_decay(config))
    state = distributed.replicated(state, mesh)
    step, spec_step = train.jit_train_steps(method, config, schedule, mesh)
    if feed is None:
        data = distributed.replicated(data, mesh)
        for _ in range(STEPS):
            state, metrics = step(state, data)
    else:
        cache, labels, labeled = feed
        empty = data.replace(images=data.images[:0], labels=data.labels[:0])
        batches = placement.HostBatches(cache, labels, labeled, None, state.rng, config, method,
                                        distributed.replicated(empty, mesh), mesh)
        for step_index in range(STEPS):
            cache.record[f"labeled/{step_index}"], cache.record[f"unlabeled/{step_index}"] = (
                batches.spec(step_index).labeled, batches.spec(step_index).unlabeled)
            state, metrics = spec_step(state, *batches(step_index))
    leaves = jax.tree_util.tree_leaves_with_path({"params": state.params, "batch_stats": state.batch_stats})
    results = {f"{name}/{jax.tree_util.keystr(path)}": np.asarray(leaf) for path, leaf in leaves}
    return {**results, f"{name}/loss": np.asarray(metrics["loss"]),
            f"{name}/devices": np.asarray(1 if mesh is None else mesh.size)}


if __name__ == "__main__":
    main()
