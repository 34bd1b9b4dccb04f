"""How long the CIFAR-10 JPEG tree takes to decode (fresh cache) and to load from the cache.

    python benchmarks/decode_cifar.py [--root DIR] [--workers 1,2] [--repeats 5] [--json PATH]

For each worker count, in a fresh Python process: one load into an empty cache (list +
fingerprint + decode + cache write), its peak memory (`ru_maxrss` of that process right after
the load), then `--repeats` loads from that cache (median reported).
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sesemi_common.datasets import list_tree, load_imagefolder, tree_fingerprint  # noqa: E402

DEFAULT_ROOT = REPO.parent / "shared" / "data" / "cifar10-jpeg"


def measure(root: Path, workers: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="sesemi-decode-bench-") as cache:
        os.environ["SESEMI_CACHE_DIR"] = cache
        started = time.perf_counter()
        dataset = load_imagefolder(root, workers=workers)
        decode_s = time.perf_counter() - started
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        images = len(dataset.train_images) + len(dataset.test_images)
        del dataset
        cache_bytes = sum(p.stat().st_size for p in Path(cache).iterdir())
        load_s = []
        for _ in range(repeats):
            started = time.perf_counter()
            load_imagefolder(root, workers=workers)
            load_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        _, train, test = list_tree(root)
        tree_fingerprint(root, train + test)
        fingerprint_s = time.perf_counter() - started
    return {"workers": workers, "images": images, "decode_s": decode_s, "peak_rss_mib": peak_mib,
            "cache_load_s_median": statistics.median(load_s), "cache_load_s": load_s,
            "list_and_fingerprint_s": fingerprint_s, "cache_bytes": cache_bytes}


def measure_in_fresh_process(root: Path, workers: int, repeats: int) -> dict:
    """A process of its own, so that its peak memory is that of one decode."""
    done = subprocess.run([sys.executable, __file__, "--root", str(root), "--repeats", str(repeats),
                           "--single", str(workers)], check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def markdown(rows: list[dict]) -> str:
    lines = ["| workers | images | decode + cache write (s) | peak RSS (MiB) | cache load, median (s) "
             "| of which list + fingerprint (s) | cache on disk (MiB) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workers']} | {r['images']} | {r['decode_s']:.1f} | {r['peak_rss_mib']:.0f} | "
                     f"{r['cache_load_s_median']:.2f} | {r['list_and_fingerprint_s']:.2f} | "
                     f"{r['cache_bytes'] / 2**20:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="ImageFolder tree with train/ and test/")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts to compare")
    parser.add_argument("--repeats", type=int, default=5, help="cache loads per worker count")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)  # one measurement, JSON on stdout
    args = parser.parse_args(argv)
    if args.single is not None:
        print(json.dumps(measure(args.root, args.single, args.repeats)))
        return 0
    if not args.root.is_dir():
        print(f"error: {args.root} does not exist: pass --root with a CIFAR-10 JPEG ImageFolder tree", file=sys.stderr)
        return 2
    rows = [measure_in_fresh_process(args.root, int(w), args.repeats) for w in args.workers.split(",")]
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps({"root": str(args.root), "cpu_count": os.cpu_count(),
                                         "load_average": os.getloadavg(), "runs": rows},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
