"""data.resize=center_crop is torchvision's own Resize + CenterCrop on a PIL image, pixel for pixel,
so a network pretrained through that pipeline sees the images it was trained on."""

import numpy as np
import pytest
from PIL import Image
from torchvision.transforms import v2

from sesemi_common import resize


@pytest.mark.parametrize("width, height, size", [(300, 200, 96), (201, 333, 96), (97, 800, 64), (50, 51, 224),
                                                 (640, 480, 224), (33, 32, 32)])
def test_center_crop_is_torchvisions_resize_then_center_crop(width, height, size):
    pixels = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    pipeline = v2.Compose([v2.Resize(size), v2.CenterCrop(size)])
    expected = np.asarray(pipeline(Image.fromarray(pixels)))
    np.testing.assert_array_equal(resize.fit(pixels, size, "center_crop"), expected)


def test_squash_is_torchvisions_resize_to_both_sides():
    pixels = np.random.default_rng(1).integers(0, 256, (120, 70, 3), dtype=np.uint8)
    expected = np.asarray(v2.Resize((32, 32))(Image.fromarray(pixels)))
    np.testing.assert_array_equal(resize.fit(pixels, 32, "squash"), expected)
