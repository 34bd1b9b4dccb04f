"""Image transforms on uint8 NCHW batches, split into `sample_*` (random) and pure `apply_*`.

The reference twin of `sesemi_jax.transforms`. Random numbers differ across frameworks by
design (docs/DESIGN.md section 5), so each random transform draws its parameters with `sample_*`
(from a `torch.Generator`; None means torch's global generator) and applies them with a pure
`apply_*`. The batch functions serve the trainer; `Translate` and `PadCrop` are the same crops
for one CHW image as `torchvision.transforms.v2` transforms, for per-image DataLoader pipelines.
"""

from __future__ import annotations

from typing import Any

import PIL.Image
import numpy as np
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import is_pure_tensor

from sesemi_common.config import AugmentConfig
from sesemi_common.stats import normalization_table
from sesemi_common.whitening import GCN_SCALE


def nchw(images_nhwc: np.ndarray) -> torch.Tensor:
    """uint8 NHWC numpy images as an NCHW tensor sharing their memory. A read-only array (a view of
    a memory-mapped cache) is copied first: torch cannot mark a tensor read-only, so from_numpy
    warns on one and a write through the tensor would fault. A writable array is not copied."""
    return torch.from_numpy(np.require(images_nhwc, requirements=("C", "W"))).permute(0, 3, 1, 2)

# Views per proxy task, in target order: k quarter turns (k = 0..3), left-right flip, up-down flip.
PROXY_VIEWS = {"rotate_flip": 6, "rotation": 4}
PAD_MODES = ("reflect", "constant")


def _check_batch(images: torch.Tensor) -> None:
    if images.ndim != 4:
        raise ValueError(f"images of shape {tuple(images.shape)} are not a batch: pass (N, C, H, W) NCHW")


def proxy_views(images: torch.Tensor, proxy: str = "rotate_flip") -> tuple[torch.Tensor, torch.Tensor]:
    """All proxy views of every image, image-major `[img0 t0..t5, img1 t0..t5, ...]`, and int64 targets."""
    if proxy not in PROXY_VIEWS:
        raise ValueError(f"unknown proxy '{proxy}': use one of {', '.join(PROXY_VIEWS)}")
    _check_batch(images)
    n, _, height, width = images.shape
    if height != width:
        raise ValueError(f"proxy views need square images (quarter turns swap H and W), got {height}x{width}")
    num_views = PROXY_VIEWS[proxy]
    rotations = [torch.rot90(images, k, dims=(2, 3)) for k in range(4)]
    flips = [images.flip(3), images.flip(2)]  # width axis, then height axis
    views = torch.stack((rotations + flips)[:num_views], dim=1)  # (N, views, C, H, W)
    targets = torch.arange(num_views, device=images.device).repeat(n)
    return views.reshape((n * num_views,) + tuple(images.shape[1:])), targets


def sample_crop_params(rng: torch.Generator | None, n: int, max_offset: int) -> torch.Tensor:
    """int32 (n, 2) crop offsets (dy, dx), uniform in [0, 2 * max_offset]; max_offset is the shift."""
    return torch.randint(0, 2 * max_offset + 1, (n, 2), generator=rng, dtype=torch.int32)


def apply_crop(images: torch.Tensor, offsets, padding: int, mode: str) -> torch.Tensor:
    """Pad H and W by `padding` (reflect or zero) and crop the original size at each image's offsets.

    Offsets (dy, dx) lie in [0, 2 * padding]; offset == padding is the identity.
    """
    if mode not in PAD_MODES:
        raise ValueError(f"unknown pad mode '{mode}': use 'reflect' (translate) or 'constant' (pad_crop)")
    _check_batch(images)
    n, _, height, width = images.shape
    if mode == "reflect" and padding >= min(height, width):
        raise ValueError(f"reflect padding {padding} needs images larger than it, got {height}x{width}")
    offsets = torch.as_tensor(offsets).long()
    if offsets.shape != (n, 2):
        raise ValueError(f"offsets of shape {tuple(offsets.shape)} do not fit {n} images: pass ({n}, 2)")
    if n and (offsets.min() < 0 or offsets.max() > 2 * padding):
        raise ValueError(f"crop offsets must lie in [0, {2 * padding}] for padding {padding}, "
                         f"got {offsets.min().item()}..{offsets.max().item()}")
    # Reflect padding works on uint8 directly (torch 2.x); it mirrors without repeating the edge.
    padded = F.pad(images, (padding,) * 4, mode=mode)
    # Every crop window as a view, (N, C, 2p+1, 2p+1, H, W); each image then picks its own.
    windows = padded.unfold(2, height, 1).unfold(3, width, 1)
    offsets = offsets.to(images.device)
    return windows[torch.arange(n, device=images.device), :, offsets[:, 0], offsets[:, 1]]


def sample_flip_params(rng: torch.Generator | None, n: int) -> torch.Tensor:
    """bool (n,): flip image i left-right where True, each with probability 1/2."""
    return torch.rand(n, generator=rng) < 0.5


def apply_hflip(images: torch.Tensor, flags) -> torch.Tensor:
    """Flip the width axis of the images whose flag is True."""
    _check_batch(images)
    flags = torch.as_tensor(flags, dtype=torch.bool, device=images.device)[:, None, None, None]
    return torch.where(flags, images.flip(3), images)


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """float32 `(x / 255 - mean) / std` per channel (axis -3: NCHW or CHW); mean, std on the 0..1 scale.

    The 256 levels per channel are normalized once with numpy (`normalization_table`) and looked
    up, the same table JAX uses, so both frameworks' inputs are bit-identical.
    """
    table = normalization_table(np.asarray(torch.as_tensor(mean).cpu()), np.asarray(torch.as_tensor(std).cpu()))
    return lookup_normalized(images, torch.from_numpy(table).to(images.device))


def lookup_normalized(images: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Normalize uint8 NCHW (or CHW) images with a (C, 256) table from `normalization_table`."""
    levels = images.movedim(-3, 0)  # (C, ...): one row of the table per channel
    # gather along a flat row is ~5x faster on CPU than indexing table[channel, level]
    flat = table.gather(1, levels.reshape(levels.shape[0], -1).long())
    return flat.reshape(levels.shape).movedim(0, -3).contiguous()


def gcn_zca(images: torch.Tensor, zca_mean: torch.Tensor, zca_matrix: torch.Tensor) -> torch.Tensor:
    """float32 NCHW: global contrast normalization, then ZCA whitening, of uint8 NCHW images
    (`sesemi_common.whitening`). The statistics index pixels in H, W, C order, as JAX's and the
    paper's: each image is flattened in that order and the result put back to NCHW."""
    n, c, h, w = images.shape
    x = images.permute(0, 2, 3, 1).reshape(n, -1).float()
    centered = x - x.sum(dim=1, keepdim=True) / x.shape[1]  # the sum of uint8 levels is exact
    norm = (centered * centered).sum(dim=1, keepdim=True).sqrt()
    gcn = centered * (GCN_SCALE / torch.where(norm > 0, norm, torch.ones_like(norm)))  # a constant image stays 0
    white = (gcn - zca_mean) @ zca_matrix
    return white.reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous()


def normalize_inputs(images: torch.Tensor, mean, std, zca: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """The trainer's one normalization: per channel with `mean` and `std`, or GCN + ZCA when the
    run has ZCA statistics (`augment.normalize=zca`, tensors on the images' device)."""
    return normalize(images, mean, std) if zca is None else gcn_zca(images, *zca)


def zca_tensors(zca: tuple[np.ndarray, np.ndarray] | None,
                device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor] | None:
    """A run's GCN + ZCA (mean, matrix) as float32 tensors on `device`; None stays None."""
    if zca is None:
        return None
    mean, matrix = (torch.as_tensor(np.asarray(a, np.float32), device=device) for a in zca)
    return mean, matrix


def sample_noise_params(rng: torch.Generator | None, shape: tuple[int, ...], std: float,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """float32 additive Gaussian noise of standard deviation `std` (the paper's input noise)."""
    return std * torch.randn(shape, generator=rng, device=device)


def apply_noise(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Normalized inputs plus the sampled noise: one float32 addition, exact across frameworks."""
    return x + noise


class RandomPadCrop(v2.Transform):
    """`apply_crop` on one CHW uint8 image with offsets drawn by `sample_crop_params` from torch's global RNG.

    Transforms plain tensors and `tv_tensors.Image`; other tv_tensors (boxes, masks) pass through.
    """

    _transformed_types = (is_pure_tensor, tv_tensors.Image, PIL.Image.Image)

    def __init__(self, padding: int, mode: str):
        super().__init__()
        if mode not in PAD_MODES:
            raise ValueError(f"unknown pad mode '{mode}': use 'reflect' or 'constant'")
        self.padding = padding
        self.mode = mode

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"offsets": sample_crop_params(None, 1, self.padding)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, PIL.Image.Image):
            raise TypeError(f"{type(self).__name__} takes CHW uint8 tensors: put v2.PILToTensor() before it")
        cropped = apply_crop(inpt[None], params["offsets"], self.padding, self.mode)[0]
        return tv_tensors.wrap(cropped, like=inpt) if isinstance(inpt, tv_tensors.Image) else cropped


class Translate(RandomPadCrop):
    """Random translation by up to `max_shift` px per axis, reflect padding (the `translate` crop)."""

    def __init__(self, max_shift: int = 2):
        super().__init__(max_shift, "reflect")


class PadCrop(RandomPadCrop):
    """Zero padding by `padding` px, then a random crop of the original size (the `pad_crop` crop)."""

    def __init__(self, padding: int = 4):
        super().__init__(padding, "constant")


def crop_transform(augment: AugmentConfig) -> RandomPadCrop:
    """The per-image v2 transform of the configured crop."""
    return Translate(augment.translate) if augment.crop == "translate" else PadCrop(augment.crop_padding)
