"""Out of core: a synthetic set larger than RAM trains with data.placement=host in both frameworks,
with bounded memory (issue 25; docs/placement.md).

    python benchmarks/out_of_core.py [--images 160000] [--size 224] [--steps 100] [--folder DIR] [--keep]

The set is written straight into the form the CLIs already read, so the training commands are the
ones a user types (`sesemi_jax.cli train` / `sesemi_torch.cli train` with `data.dataset=imagefolder
data.placement=host`) and no code path exists for the benchmark alone:
  - an ImageFolder tree of empty placeholder files (`train/<class>/<i>.png`, `test/...`): their
    paths, sizes and mtimes are all the decoded cache's key depends on (`datasets.tree_fingerprint`);
  - the decoded cache entry of that tree in `SESEMI_CACHE_DIR` (a temp folder under --folder): the
    uint8 `.npy` written chunk by chunk through `mmap_cache.write_images` (random bytes, never the
    whole set in RAM) with its sidecar, and the JSON `load_imagefolder` reads (labels, classes).
A run then finds its images decoded and maps them; nothing is ever decoded. The files are
deleted afterwards unless --keep (then run again with --folder pointing at them to skip writing).

Each framework trains in its own process, `--steps` steps of the default method (SESEMI) on
resnet20, 8 labeled + 8 unlabeled images a step. Its memory is reported three ways:
  peak RSS         ru_maxrss of the training process (os.wait4): counts the pages of the map the
                   process touched while they stay resident, which the kernel may drop at will;
  peak anon        the largest sum of RssAnon over the process and its children, sampled every
                   0.1 s: the memory the process holds itself (model, buffers, gathered batches);
  peak file        the largest RssFile sampled alongside (the mapped cache's resident pages).
The goal (issue 25): peak anon under 4 GB beyond the model's own. Starting the run reads the whole
set once, in chunks, for the channel statistics (`stats.channel_stats`), so the page cache sees it
all: on a set larger than RAM that pass is disk-bound and takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sesemi_common import datasets, mmap_cache, resize  # noqa: E402
from sesemi_common.config import Config, apply_overrides  # noqa: E402

CLASSES = 10
TEST_PER_CLASS = 10
CHUNK = 256  # images written at a time: 38 MB at 224 px


def training_overrides(root: Path, size: int, steps: int) -> list[str]:
    return ["data.dataset=imagefolder", f"data.root={root}", f"data.image_size={size}", "data.placement=host",
            "data.n_labels=100", "model.backbone=resnet20", f"train.steps={steps}", "train.batch_labeled=8",
            "train.batch_unlabeled=8", f"train.log_every={max(1, steps // 4)}", f"train.eval_every={steps}",
            f"train.checkpoint_every={steps}", "train.eval_batch_size=50"]


def write_tree(root: Path, n_train: int) -> None:
    """Empty placeholder files: the cache key is made of their paths, sizes and mtimes only."""
    for split, count in (("train", n_train), ("test", CLASSES * TEST_PER_CLASS)):
        for label in range(CLASSES):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(label, count, CLASSES):
                (folder / f"{i:07d}.png").touch()


def write_cache(root: Path, n_train: int, size: int) -> Path:
    """The decoded cache of the tree at `root`, as `load_imagefolder(mapped=True)` would have left it."""
    config = apply_overrides(Config(), training_overrides(root, size, 1))
    policy = resize.policy_for(config.data, folder=True)
    fit_to = None if policy == "none" else (size, policy)
    class_names, train_files, test_files = datasets.list_tree(root.absolute())
    files = train_files + test_files
    fingerprint = datasets.tree_fingerprint(root.absolute(), files, fit_to)
    base = datasets.cache_dir() / f"{datasets._cache_stem(root.absolute(), 'imagefolder')}-{fingerprint[:16]}"
    rng = np.random.default_rng(0)
    shape = (len(files), size, size, 3)
    chunks = (rng.integers(0, 256, (min(CHUNK, len(files) - start), size, size, 3), dtype=np.uint8)
              for start in range(0, len(files), CHUNK))
    mmap_cache.write_images(base.with_suffix(".npy"), shape, chunks)
    meta = {"fingerprint": fingerprint, "source": str(root.resolve()), "class_names": class_names,
            "n_train": n_train, "labels": [f.label for f in files]}
    base.with_suffix(".json").write_text(json.dumps(meta))
    return base.with_suffix(".npy")


def tree_pids(pid: int) -> list[int]:
    pids, i = [pid], 0
    while i < len(pids):
        try:
            for task in os.listdir(f"/proc/{pids[i]}/task"):
                children = Path(f"/proc/{pids[i]}/task/{task}/children").read_text().split()
                pids.extend(int(c) for c in children)
        except OSError:
            pass
        i += 1
    return pids


def resident_kib(pid: int) -> tuple[int, int]:
    """(RssAnon, RssFile) of `pid` and its children, KiB."""
    anon = file = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    anon += int(line.split()[1])
                elif line.startswith("RssFile:"):
                    file += int(line.split()[1])
        except OSError:
            pass
    return anon, file


def train(framework: str, overrides: list[str], run_dir: Path, env: dict) -> dict:
    """One training process: its exit code, seconds, and memory peaks (MiB)."""
    command = [sys.executable, "-m", f"sesemi_{framework}.cli", "train", *overrides, "--run-dir", str(run_dir),
               "--no-progress"]
    log = run_dir.with_suffix(".log")
    peaks = {"anon": 0, "file": 0}
    started = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                anon, file = resident_kib(process.pid)
                peaks["anon"], peaks["file"] = max(peaks["anon"], anon), max(peaks["file"], file)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
    return {"framework": framework, "code": process.returncode, "seconds": time.perf_counter() - started,
            "peak_rss_mib": usage.ru_maxrss / 1024, "peak_anon_mib": peaks["anon"] / 1024,
            "peak_file_mib": peaks["file"] / 1024, "log_tail": log.read_text()[-3000:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=160_000, help="training images (default 160000)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    parser.add_argument("--steps", type=int, default=100, help="training steps per framework (default 100)")
    parser.add_argument("--folder", type=Path, default=None,
                        help="where the tree and cache go (default: a temp folder); reused if it holds them")
    parser.add_argument("--frameworks", default="jax,torch", help="comma-separated (default jax,torch)")
    parser.add_argument("--keep", action="store_true", help="keep the tree and the cache afterwards")
    args = parser.parse_args()
    if args.images < 100 or args.images % CLASSES:
        parser.error(f"--images {args.images}: expected a multiple of {CLASSES}, at least 100 (data.n_labels=100)")
    folder = args.folder or Path(tempfile.mkdtemp(prefix="sesemi-out-of-core-"))
    root, cache = folder / "tree", folder / "cache"
    env = {**os.environ, "SESEMI_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    os.environ["SESEMI_CACHE_DIR"] = str(cache)
    n_bytes = args.images * args.size * args.size * 3
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    print(f"set: {args.images} images at {args.size} px = {n_bytes / 2**30:.2f} GiB "
          f"({n_bytes / ram:.2f}x this machine's {ram / 2**30:.1f} GiB of RAM), in {folder}", flush=True)
    try:
        if not list(cache.glob("imagefolder-*.npy.json")):
            started = time.perf_counter()
            write_tree(root, args.images)
            path = write_cache(root, args.images, args.size)
            print(f"written in {time.perf_counter() - started:.0f} s: {path}", flush=True)
        results = [train(fw, training_overrides(root, args.size, args.steps), folder / f"run_{fw}", env)
                   for fw in args.frameworks.split(",")]
    finally:
        if not args.keep:  # what this script wrote; a --folder given stays, emptied of it
            for written in (root, cache, *folder.glob("run_*")):
                shutil.rmtree(written, ignore_errors=True) if written.is_dir() else written.unlink(missing_ok=True)
            if args.folder is None:
                shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{args.steps} steps, data.placement=host, resnet20, 8 + 8 images a step")
    print(f"{'framework':<10} {'exit':>4} {'seconds':>8} {'peak RSS MiB':>13} {'peak anon MiB':>14} "
          f"{'peak file MiB':>14}")
    for r in results:
        print(f"{r['framework']:<10} {r['code']:>4} {r['seconds']:>8.0f} {r['peak_rss_mib']:>13.0f} "
              f"{r['peak_anon_mib']:>14.0f} {r['peak_file_mib']:>14.0f}")
    failed = [r for r in results if r["code"] != 0]
    for r in failed:
        print(f"error: {r['framework']} exited {r['code']}; the end of its output:\n{r['log_tail']}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
