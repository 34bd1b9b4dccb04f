"""The worked example of docs/ADDING_A_METHOD.md: a method added with its own files and one
registry entry (examples/flip_proxy) trains in both frameworks, and its views agree exactly.

Training runs in a subprocess: registering a method changes which knobs a new `Config` has,
and the other tests of this process must keep seeing the shipped registry."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, sys
import examples.flip_proxy  # the one registry entry
from sesemi_common.config import Config, apply_overrides
from sesemi_common.runs import RunDir
from sesemi_jax.loop import fit as jax_fit
from sesemi_torch.loop import fit as torch_fit

config = apply_overrides(Config(), ["method.name=flip_proxy", "method.flip_proxy.weight=0.5", *sys.argv[2:]])
result = {}
for name, fit in (("jax", jax_fit), ("torch", torch_fit)):
    fit(config, f"{sys.argv[1]}/{name}", show_progress=False)
    result[name] = [m for m in RunDir(f"{sys.argv[1]}/{name}").read_metrics() if "loss" in m]

# Its views from the same parameters, in both frameworks (the transforms rung).
import numpy as np, jax.numpy as jnp, torch
from sesemi_jax import methods as jm
from sesemi_torch import methods as tm
images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
offsets = np.random.default_rng(1).integers(0, 3, (3, 2)).astype(np.int32)  # 2 px at 32 is 1 px at 16: [0, 2]
(jv, jt), (tv, tt) = (jm.load(config).apply_views(jnp.asarray(images), {"offsets": offsets}, config),
                      tm.load(config).apply_views(torch.from_numpy(images).permute(0, 3, 1, 2),
                                                  {"offsets": torch.from_numpy(offsets)}, config))
result["views_equal"] = bool(np.array_equal(np.asarray(jv["flips"]), tv["flips"].permute(0, 2, 3, 1).numpy()))
result["targets"] = [np.asarray(jt["flip"]).tolist(), tt["flip"].tolist()]
result["lr_flip_is_width"] = bool(np.array_equal(np.asarray(jv["flips"])[1], np.asarray(jv["flips"])[0][:, ::-1]))
print(json.dumps(result))
"""
TINY = ["data.image_size=16", "data.n_labels=20", "train.steps=4", "train.batch_labeled=8",
        "train.batch_unlabeled=2", "train.log_every=2", "train.eval_every=4", "train.checkpoint_every=4"]


@pytest.mark.slow
def test_flip_proxy_example_trains_in_both_frameworks(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), *TINY], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads(done.stdout.strip().splitlines()[-1])
    for framework in ("jax", "torch"):
        assert [m["step"] for m in records[framework]] == [2, 4]
        for m in records[framework]:
            assert m["loss"] == pytest.approx(m["loss_sup"] + 0.5 * m["loss_flip"], rel=1e-5)
            assert 0.5 < m["loss_flip"] < 2.0  # about ln 3 = 1.1 for an untrained 3-way head
    assert records["views_equal"] and records["lr_flip_is_width"]
    assert records["targets"] == [[0, 1, 2] * 3] * 2
