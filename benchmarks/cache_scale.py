"""Decoded-cache size and load time at STL-10 scale (100,000 unlabeled images at 96 px).

    python benchmarks/cache_scale.py [--images 100000] [--size 96] [--repeats 5] [--json PATH]

Decoding 100,000 image files would measure the decoder (benchmarks/decode_resize.py does that), so
a synthetic uint8 (N, size, size, 3) array goes straight through the project's own cache functions,
`sesemi_common.datasets._write_cache` and `_read_cache`, as `load_unlabeled_folder` calls them (kind
`unlabeled`, meta `count`), into a temp `SESEMI_CACHE_DIR` that is deleted afterwards.

Each measurement runs in a fresh Python process, so its peak RSS (`ru_maxrss`) is its own:
  write   makes the array (seeded random bytes: `.npy` is not compressed, so content does not
          change the size) and writes the cache; bytes on disk, write seconds, peak RSS.
  load    `_read_cache` of that entry, `--repeats` times, each in its own process, in two page
          cache states, interleaved: `warm` (the file just read or written, as on a second run)
          and `cold` (the file's pages evicted first with fsync + posix_fadvise(DONTNEED), which
          needs no root; best effort: pages another process holds mapped stay). Median reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sesemi_common import datasets  # noqa: E402

FINGERPRINT = "c0ffee" * 10 + "abcd"  # 64 hex digits: any fixed key; the cache only matches it
KIND = "unlabeled"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def cache_files() -> list[Path]:
    return sorted(p for p in datasets.cache_dir().iterdir() if p.is_file())


def write(root: Path, count: int, size: int) -> dict:
    images = np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    rss_with_array = peak_rss_mib()
    started = time.perf_counter()
    datasets._write_cache(root, FINGERPRINT, images, {"count": count}, KIND)
    write_s = time.perf_counter() - started
    files = cache_files()
    if not any(p.suffix == ".npy" for p in files):
        raise SystemExit(f"error: no cache was written in {datasets.cache_dir()} (see the warning above)")
    return {"write_s": write_s, "array_bytes": images.nbytes, "bytes_on_disk": sum(p.stat().st_size for p in files),
            "files": [p.name for p in files], "peak_rss_mib_array": rss_with_array, "peak_rss_mib": peak_rss_mib()}


def evict(path: Path) -> None:
    """Drops the file's clean pages from the page cache (no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def load(root: Path, count: int, cold: bool) -> dict:
    if cold:
        for path in cache_files():
            evict(path)
    started = time.perf_counter()
    cached = datasets._read_cache(root, FINGERPRINT, KIND, lambda meta, images: meta["count"] == len(images))
    load_s = time.perf_counter() - started
    if cached is None or len(cached[0]) != count:
        raise SystemExit("error: the cache entry just written did not load")
    return {"load_s": load_s, "peak_rss_mib": peak_rss_mib()}


def in_fresh_process(step: str, args: argparse.Namespace, cache: str) -> dict:
    env = {**os.environ, "SESEMI_CACHE_DIR": cache}
    done = subprocess.run([sys.executable, __file__, "--single", step, "--images", str(args.images),
                           "--size", str(args.size)], env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def measure(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="sesemi-cache-scale-") as cache:
        written = in_fresh_process("write", args, cache)
        loads: dict[str, list[dict]] = {"warm": [], "cold": []}
        for _ in range(args.repeats):
            for state in loads:
                loads[state].append(in_fresh_process(f"load-{state}", args, cache))
    return {"images": args.images, "size": args.size, "repeats": args.repeats, "write": written, "loads": loads,
            "load_average": os.getloadavg(), "cpu_count": os.cpu_count()}


def markdown(result: dict) -> str:
    w = result["write"]
    lines = ["| images | side (px) | on disk (MiB) | write (s) | write peak RSS (MiB) | page cache | load, median (s) "
             "| load peak RSS (MiB) |", "|---:|---:|---:|---:|---:|---|---:|---:|"]
    for state, runs in result["loads"].items():
        lines.append(f"| {result['images']:,} | {result['size']} | {w['bytes_on_disk'] / 2**20:,.1f} | "
                     f"{w['write_s']:.2f} | {w['peak_rss_mib']:,.0f} | {state} | "
                     f"{statistics.median(r['load_s'] for r in runs):.3f} | "
                     f"{max(r['peak_rss_mib'] for r in runs):,.0f} |")
    load = ", ".join(f"{x:.2f}" for x in result["load_average"])
    return "\n".join(lines) + f"\n\nload average (1, 5, 15 min) at the end: {load}; {result['cpu_count']} CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000, help="images in the cache (STL-10 unlabeled: 100,000)")
    parser.add_argument("--size", type=int, default=96, help="side in px (STL-10: 96)")
    parser.add_argument("--repeats", type=int, default=5, help="loads per page-cache state; median reported")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--single", help=argparse.SUPPRESS)  # write | load-warm | load-cold: JSON on stdout
    args = parser.parse_args(argv)
    if args.images < 1 or args.size < 1 or args.repeats < 1:
        parser.error("--images, --size and --repeats must be at least 1")
    root = Path(tempfile.gettempdir()) / "sesemi-cache-scale-synthetic-stl10"  # names the entry; never read
    if args.single:
        step = write(root, args.images, args.size) if args.single == "write" \
            else load(root, args.images, cold=args.single == "load-cold")
        print(json.dumps(step))
        return 0
    result = measure(args)
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
