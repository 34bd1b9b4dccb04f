"""Pack the CIFAR-10 JPEG ImageFolder tree into one .tar.gz for a machine without network.

    python benchmarks/pack_cifar.py [--root ../shared/data/cifar10-jpeg] [--out .gpu_data/cifar10-jpeg.tar.gz]

Why the JPEG tree and not the decoded arrays: `sesemi_common.datasets` has no loader for a
decoded .npz (it reads ImageFolder trees, CIFAR pickles and digits), and the decoded uint8
arrays are 184 MB (60,000 x 32 x 32 x 3) while the tree packs to about 20 MB (the small JPEGs
share their headers, which gzip removes), well under a 64 MiB transfer. The receiving side
unpacks it into a temporary folder and loads it with `data.dataset=imagefolder`, decoding the
very same JPEG bytes (benchmarks/gpu_trend.sh).

Members are the image files of train/<class>/ and test/<class>/ in sorted order, under the
tree's folder name, with fixed owner and times, so the archive's bytes depend on the images
alone. Prints the image count, size and SHA-256.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sesemi_common.datasets import IMAGE_EXTENSIONS  # noqa: E402

DEFAULT_ROOT = REPO.parent / "shared" / "data" / "cifar10-jpeg"
DEFAULT_OUT = REPO / ".gpu_data" / "cifar10-jpeg.tar.gz"


def image_files(root: Path) -> list[Path]:
    files = sorted(p for split in ("train", "test") for p in (root / split).rglob("*")
                   if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise SystemExit(f"error: no images under {root}/train or {root}/test: pass --root the ImageFolder tree")
    return files


def pack(root: Path, out: Path) -> int:
    files = image_files(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    # mtime=0 in the gzip header and fixed tar metadata: same images, same archive bytes.
    with open(partial, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            info = tar.gettarinfo(str(path), arcname=f"{root.name}/{path.relative_to(root).as_posix()}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)
    partial.replace(out)
    return len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="ImageFolder tree with train/ and test/")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not (args.root / "train").is_dir() or not (args.root / "test").is_dir():
        parser.error(f"--root {args.root} needs train/ and test/ folders: point it at the CIFAR-10 JPEG tree")
    count = pack(args.root.resolve(), args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"packed {count} images of {args.root} into {args.out} "
          f"({args.out.stat().st_size / 2**20:.1f} MiB, sha256 {digest})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
