"""Decode + resize images/s per core: sesemi's `data.resize=center_crop` against torchvision's pipeline.

    python benchmarks/decode_resize.py [--folder DIR | --images 500] [--size 96] [--repeats 5] [--json PATH]

Both variants read the same JPEG files in this one process, on one core (PIL decodes and resizes
on the calling thread; torch is held to one thread), so images/s is images/s per core:

  sesemi       `sesemi_common.datasets.decode_images(files, workers=1, fit_to=(size, "center_crop"))`:
               what each decode worker runs per file (`_open_rgb`, then `resize.fit`), in one process.
  torchvision  `PIL.Image.open(f).convert("RGB")`, `transforms.Resize(size)`, `transforms.CenterCrop(size)`,
               then `np.asarray` (uint8), file by file into one array.

After an untimed pass of each over the first 8 files (first-call costs), the repetitions are
interleaved (sesemi, torchvision, sesemi, ...) so load from other processes hits both alike; the
table gives the median and the load average. It also checks that both give the same pixels
(sesemi's center_crop is meant to equal torchvision's Resize + CenterCrop).

Without `--folder`, real JPEGs of mixed sizes are made in a temp folder (deleted afterwards): `--images`
CIFAR-10 training JPEGs (`--cifar`), each upscaled with PIL (bicubic) to a random width and height of
300-800 px (seeded) and saved as JPEG quality 90.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sesemi_common.datasets import IMAGE_EXTENSIONS, decode_images  # noqa: E402

# ../shared beside the checkout (/work/main), or two levels up from a worktree (/work/wt/NAME)
DEFAULT_CIFAR = next((p for p in (REPO.parent / "shared" / "data" / "cifar10-jpeg" / "train",
                                  REPO.parents[1] / "shared" / "data" / "cifar10-jpeg" / "train") if p.is_dir()),
                     REPO.parent / "shared" / "data" / "cifar10-jpeg" / "train")
SIDES = (300, 800)  # px, each side drawn uniformly in this range


def make_mixed_jpegs(cifar_train: Path, count: int, out: Path, seed: int) -> list[Path]:
    """`count` CIFAR-10 JPEGs (a seeded choice over all classes) upscaled to random 300-800 px sides."""
    sources = sorted(cifar_train.rglob("*.jpg"))
    if len(sources) < count:
        raise SystemExit(f"error: {cifar_train} holds {len(sources)} JPEGs, fewer than --images {count}")
    rng = np.random.default_rng(seed)
    files = []
    for i, index in enumerate(sorted(rng.choice(len(sources), count, replace=False))):
        width, height = (int(s) for s in rng.integers(SIDES[0], SIDES[1] + 1, 2))
        with Image.open(sources[index]) as image:
            big = image.convert("RGB").resize((width, height), Image.BICUBIC)
        files.append(out / f"{i:06d}.jpg")
        big.save(files[-1], quality=90)
    return files


def sesemi_decode(files: list[Path], size: int) -> np.ndarray:
    return decode_images([str(f) for f in files], workers=1, fit_to=(size, "center_crop"))


def torchvision_decode(files: list[Path], size: int) -> np.ndarray:
    pipeline = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size)])
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(files):
        with Image.open(path) as image:
            out[i] = np.asarray(pipeline(image.convert("RGB")))
    return out


VARIANTS = {"sesemi": sesemi_decode, "torchvision": torchvision_decode}


def compare(ours: np.ndarray, theirs: np.ndarray) -> dict:
    differ = np.any(ours != theirs, axis=(1, 2, 3))
    diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
    return {"identical": bool(not differ.any()), "images_differing": int(differ.sum()),
            "max_abs_diff": int(diff.max()), "pixels_differing": int(np.any(diff > 0, axis=-1).sum())}


def measure(files: list[Path], size: int, repeats: int) -> tuple[dict[str, list[float]], dict]:
    """Seconds per pass of each variant, interleaved; the pixel comparison of the first pass."""
    for decode in VARIANTS.values():  # untimed: imports, PIL plugin and first-call costs
        decode(files[:8], size)
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    outputs = {}
    for _ in range(repeats):
        for name, decode in VARIANTS.items():
            started = time.perf_counter()
            outputs[name] = decode(files, size)
            seconds[name].append(time.perf_counter() - started)
    return seconds, compare(outputs["sesemi"], outputs["torchvision"])


def rows_for(seconds: dict[str, list[float]], count: int) -> list[dict]:
    rates = {name: count / statistics.median(s) for name, s in seconds.items()}
    return [{"variant": name, "images_per_s_per_core": rate, "vs_torchvision": rate / rates["torchvision"],
             "seconds": seconds[name]} for name, rate in rates.items()]


def markdown(rows: list[dict], load: tuple[float, float, float]) -> str:
    lines = ["| variant | images/s per core | vs torchvision | load average (1, 5, 15 min) |", "|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['images_per_s_per_core']:,.1f} | {r['vs_torchvision']:.2f}x | "
                     f"{', '.join(f'{x:.2f}' for x in load)} |")
    return "\n".join(lines)


def folder_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise SystemExit(f"error: {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}): pass a folder of JPEGs")
    return files


def run(args: argparse.Namespace, files: list[Path]) -> dict:
    sides = []
    for path in files:
        with Image.open(path) as image:
            sides.append(image.size)
    print(f"{len(files)} images, {min(min(s) for s in sides)}-{max(max(s) for s in sides)} px per side, to "
          f"{args.size} px; {args.repeats} interleaved repeats", flush=True)
    seconds, pixels = measure(files, args.size, args.repeats)
    load = os.getloadavg()
    rows = rows_for(seconds, len(files))
    print(markdown(rows, load))
    same = "identical pixels" if pixels["identical"] else (
        f"DIFFERENT pixels: {pixels['images_differing']} of {len(files)} images, {pixels['pixels_differing']} "
        f"pixels, max |diff| {pixels['max_abs_diff']}")
    print(f"\nsesemi center_crop against torchvision Resize + CenterCrop: {same}")
    return {"images": len(files), "size": args.size, "repeats": args.repeats, "load_average": load,
            "cpu_count": os.cpu_count(), "pixels": pixels, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="a folder of images to use (default: make mixed-size JPEGs)")
    parser.add_argument("--images", type=int, default=500, help="JPEGs to make when no --folder is given")
    parser.add_argument("--cifar", type=Path, default=DEFAULT_CIFAR, help="CIFAR-10 JPEG train folder to upscale")
    parser.add_argument("--size", type=int, default=96, help="data.image_size: the side of the output")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved passes per variant; median reported")
    parser.add_argument("--seed", type=int, default=0, help="picks and sizes the made JPEGs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.images < 1 or args.size < 1:
        parser.error("--repeats, --images and --size must be at least 1")
    torch.set_num_threads(1)  # one core: PIL runs on this thread, torch must not spread anything
    if args.folder is not None:
        if not args.folder.is_dir():
            parser.error(f"--folder {args.folder} is not a folder")
        result = run(args, folder_files(args.folder))
    else:
        if not args.cifar.is_dir():
            parser.error(f"--cifar {args.cifar} does not exist: pass the CIFAR-10 JPEG train folder, or --folder DIR")
        with tempfile.TemporaryDirectory(prefix="sesemi-decode-resize-") as temp:
            result = run(args, make_mixed_jpegs(args.cifar, args.images, Path(temp), args.seed))
    if args.json:
        args.json.write_text(json.dumps({"folder": str(args.folder) if args.folder else "made", **result},
                                        indent=2) + "\n")
    return 0 if result["pixels"]["identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
