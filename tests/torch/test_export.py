"""Issue 16: `sesemi export --torchvision` gives a plain torchvision ResNet state dict; bad runs are one line."""

import numpy as np
import pytest
import torch
import torchvision

from sesemi_common import cli
from sesemi_common.commands import load_classifier
from sesemi_common.datasets import load_dataset
from sesemi_common.runs import RunDir
from sesemi_common.verify import RTOL
from sesemi_torch import cli as torch_cli
from tests.cli_contract import TINY


@pytest.fixture(scope="module")
def resnet18_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "r18"
    assert torch_cli.main(["train", *TINY, "model.backbone=resnet18", "--run-dir", str(run_dir), "--no-progress"]) == 0
    return RunDir(run_dir)


def test_torchvision_export_loads_strictly_and_reproduces_the_logits(resnet18_run, tmp_path, capsys):
    out = tmp_path / "resnet18.pth"
    assert cli.main(["export", str(resnet18_run.path), "--to", str(out), "--torchvision"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: torchvision.models.resnet18 state dict, 10 classes, "
                                              "step 2 trained by torch")
    # What a user without this package does: plain torchvision, strict loading.
    model = torchvision.models.resnet18(num_classes=10)
    model.load_state_dict(torch.load(out, weights_only=True), strict=True)
    model.eval()
    config = resnet18_run.read_config()
    images = load_dataset(config.data).test_images[:64]
    split = resnet18_run.read_split()
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - torch.as_tensor(split["mean"])[:, None, None]) \
        / torch.as_tensor(split["std"])[:, None, None]
    with torch.no_grad():
        logits = model(x).numpy()
    classify, _ = load_classifier(torch_cli.TorchBackend(), resnet18_run, config)
    # The user's normalization (x / 255 - mean) / std rounds unlike sesemi's lookup table by an ulp of the
    # input; two steps at batch 8 leave logits in the thousands, so the bound is sesemi verify's relative one.
    scale = np.abs(logits).max()
    np.testing.assert_allclose(logits, classify(images), rtol=0, atol=RTOL * scale)
    assert (logits.argmax(-1) == classify(images).argmax(-1)).all() and scale > 0.1  # not vacuous


def _one_line_error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err.strip()


def test_exports_that_cannot_be_made_are_one_line(resnet18_run, tmp_path, capsys):
    tiny_run = tmp_path / "r8"
    assert torch_cli.main(["train", *TINY, "--run-dir", str(tiny_run), "--no-progress"]) == 0
    capsys.readouterr()
    assert _one_line_error(capsys, ["export", str(tiny_run), "--to", str(tmp_path / "x.pth"), "--torchvision"]) == (
        "error: --torchvision needs a run of resnet18 or resnet50, and this run's backbone is resnet8: drop "
        "--torchvision to export the SesemiNet state dict")
    # A weights file of another backbone, copied into the run by hand.
    (tiny_run / "model.npz").write_bytes((resnet18_run.path / "model.npz").read_bytes())
    copied = (f"error: {tiny_run / 'model.npz'} holds a resnet18 and its run trains a resnet8: the weights file "
              "was copied from another run; use that run instead")
    assert _one_line_error(capsys, ["export", str(tiny_run), "--to", str(tmp_path / "x.pth")]) == copied
    assert torch_cli.main(["eval", str(tiny_run)]) == 2 and capsys.readouterr().err.strip() == copied
    # A missing weights file of a kept step, and a run with no finished step.
    assert _one_line_error(capsys, ["export", str(tiny_run), "--to", str(tmp_path / "x.pth"), "--checkpoint", "1"]) \
        == f"error: {tiny_run} keeps no weights of step 1: its weights files are of steps 2 (pass one of them to " \
           "--checkpoint)"
    RunDir(tmp_path / "new").write_config(RunDir(tiny_run).read_config())
    assert _one_line_error(capsys, ["export", str(tmp_path / "new"), "--to", str(tmp_path / "x.pth")]).startswith(
        f"error: {tmp_path / 'new'} has no checkpoint yet (its training stopped before step ")
    assert _one_line_error(capsys, ["export", str(tiny_run), "--to", str(tmp_path / "no" / "x.pth")]) == (
        f"error: --to {tmp_path / 'no' / 'x.pth'}: folder {tmp_path / 'no'} does not exist: create it or choose "
        "another path")
    assert not (tmp_path / "x.pth").exists()
