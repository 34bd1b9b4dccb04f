"""The article's workflow end to end (issue 24 item 5), in both frameworks, on tiny generated photos:
class folders of mixed-size JPEG and PNG images (RGB, grayscale, RGBA), a nested folder of
unlabeled ones, SESEMI for a few steps from the shipped `own_data` preset, `predict` on new photos
of other sizes, and `sesemi verify` (the run's model in both frameworks on the test set)."""

import csv
import importlib
import json

import numpy as np
import pytest
from PIL import Image

from sesemi_common import cli as sesemi_cli
from sesemi_common.runs import RunDir

CLASSES = ("apple", "pear")
SIZES = [(50, 40), (36, 60), (64, 64), (45, 30), (80, 33)]
FRAMEWORKS = {"jax": "sesemi_jax.cli", "torch": "sesemi_torch.cli"}
# The preset with a small image side and a few steps; its resnet18, center_crop and pool stay.
# Random weights: the pretrained download is tested on its own (tests/torch/test_pretrained.py).
TINY = ["model.weights=", "data.image_size=32", "train.steps=2", "train.batch_labeled=4", "train.batch_unlabeled=2",
        "train.log_every=1", "train.eval_every=2", "train.checkpoint_every=2", "optim.warmup_steps=0"]


def _photo(path, width, height, rng, tint, kind):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.clip(rng.normal(tint, 40, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    if kind == "gray":
        image = image.convert("L")
    elif kind == "rgba":
        image = image.convert("RGBA")
    image.save(path)


def _photos(root):
    """Labeled train/ and test/ class folders, an unlabeled folder and new photos to predict."""
    rng, n = np.random.default_rng(0), 0
    for split, count in (("train", 4), ("test", 2)):
        for c, name in enumerate(CLASSES):
            for k in range(count):
                n += 1
                kind = ("rgb", "gray", "rgba")[n % 3] if n % 2 else "rgb"
                suffix = "png" if kind == "rgba" or k % 2 else "jpg"
                _photo(root / "photos" / split / name / f"IMG_{n:04d}.{suffix}", *SIZES[n % 5], rng,
                       (60, 180, 60) if c else (200, 50, 40), kind)
    for k in range(10):
        kind = ("rgb", "gray", "rgba")[k % 3]
        suffix = "png" if kind == "rgba" or k % 2 else "jpg"
        _photo(root / "unlabeled" / f"day{k % 3}" / ("raw" if k % 2 else "") / f"{k}.{suffix}",
               *SIZES[(k + 2) % 5], rng, (130, 120, 50), kind)
    for k, (w, h) in enumerate([(120, 90), (31, 77), (200, 200)]):
        _photo(root / "new" / f"new{k}.jpg", w, h, rng, (60, 180, 60) if k % 2 else (200, 50, 40), "rgb")


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_own_photos_train_predict_and_verify(tmp_path, monkeypatch, capsys, framework):
    monkeypatch.setenv("SESEMI_CACHE_DIR", str(tmp_path / "cache"))
    _photos(tmp_path)
    main = importlib.import_module(FRAMEWORKS[framework]).main
    run = tmp_path / "run"
    code = main(["train", "--config", "own_data", f"data.root={tmp_path / 'photos'}",
                 f"data.unlabeled_root={tmp_path / 'unlabeled'}", *TINY, "--run-dir", str(run), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    split = RunDir(run).read_split()
    assert split["labeled"].tolist() == list(range(8))  # data.n_labels=0: every labeled photo
    assert int(split["data_pool_n"]) == 18  # the 8 training photos and the 10 unlabeled ones
    summary = json.loads((run / "summary.json").read_text())
    assert summary["class_names"] == list(CLASSES) and 0.0 <= summary["final_test_accuracy"] <= 1.0

    out = tmp_path / "predictions.csv"
    assert main(["predict", str(run), str(tmp_path / "new"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == ["new0.jpg", "new1.jpg", "new2.jpg"]
    assert all(r["class_name"] in CLASSES and 0.5 <= float(r["probability"]) <= 1.0 for r in rows)

    capsys.readouterr()
    assert sesemi_cli.main(["verify", str(run)]) == 0, capsys.readouterr().err
    verified = json.loads((run / "verify.json").read_text())
    assert verified["test_images"] == 4 and verified["trained_by"] == framework
