"""torchvision's ImageNet weights by name (`model.weights=torchvision:resnet18`), hash-checked.

The URL is the one torchvision's weight enum holds (`ResNet18_Weights.IMAGENET1K_V1.url`);
`torch.hub.load_state_dict_from_url(..., check_hash=True)` downloads it into
`$TORCH_HOME/hub/checkpoints` and checks that the file's SHA-256 starts with the prefix in its
name (`resnet18-f37072fd.pth`). A file already in that folder is used as it is, as torchvision does.
"""

from __future__ import annotations

import contextlib
import sys
import urllib.error

import torch
import torchvision

from sesemi_common import pretrained
from sesemi_common.weights import WeightsError


def weights_enum(weights: pretrained.TorchvisionWeights) -> torchvision.models.WeightsEnum:
    """The member of torchvision's own enum, e.g. `torchvision.models.ResNet18_Weights.IMAGENET1K_V1`."""
    return torchvision.models.get_model_weights(weights.backbone)[weights.variant]


def weights_url(spec: str) -> str:
    """Where `spec` is downloaded from: torchvision's URL, or its file under $SESEMI_WEIGHTS_URL."""
    return pretrained.download_url(weights_enum(pretrained.parse(spec)).url)


def load_state_dict(spec: str) -> dict[str, torch.Tensor]:
    """The ImageNet state dict `spec` names (fc included), downloaded once and hash-checked."""
    url = weights_url(spec)
    file = url.rsplit("/", 1)[-1]
    try:
        # torch.hub announces the download on stdout, where the CLIs print their JSON summary.
        with contextlib.redirect_stdout(sys.stderr):
            return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=sys.stderr.isatty(),
                                                      check_hash=True, weights_only=True)
    except RuntimeError as err:
        if "invalid hash value" not in str(err):
            raise
        raise WeightsError(f"download of {url} failed its hash check ({err}): the transfer was corrupted or the "
                           f"server holds another file; run again to download it again") from err
    except (urllib.error.URLError, OSError) as err:
        reason = f"HTTP {err.code} {err.reason}" if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", err)
        raise WeightsError(f"cannot download {url} ({reason}): check the network, set {pretrained.URL_ENV} to a "
                           f"mirror that holds {file}, or put {file} in {torch.hub.get_dir()}/checkpoints") from err
