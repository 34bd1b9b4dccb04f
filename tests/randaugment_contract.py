"""RandAugment ops against hand-computed expectations (worked out in the comments), the contract
both frameworks meet: tests/jax/test_randaugment.py and tests/torch/test_randaugment.py supply
the framework's calls, NHWC uint8 numpy in and out."""

import numpy as np
import pytest

from sesemi_common import randaugment as spec


def _image(levels, size=4):
    """One size x size RGB image of the given level(s)."""
    return np.broadcast_to(np.asarray(levels, np.uint8), (1, size, size, 3)).copy()


class RandAugmentContract:
    @staticmethod
    def op(images: np.ndarray, name: str, m: float) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def cutout(images: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def apply(images, ops, magnitudes, cutout) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def sample_params(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    @staticmethod
    def translate_pixels(m: float, size: int) -> int:
        raise NotImplementedError

    def test_solarize_inverts_levels_at_or_above_the_threshold(self):
        image = np.array([100, 200, 128, 255], np.uint8).reshape(1, 4, 1, 1)  # rows of 100, 200, 128, 255
        # m = 0.5: threshold floor(256 * 0.5) = 128 -> 200 -> 55, 128 -> 127; 100 stays
        np.testing.assert_array_equal(self.op(image, "solarize", 0.5)[0, :, 0, 0], [100, 55, 127, 0])
        # m = 0: threshold min(256, 255) = 255: only 255 is inverted
        np.testing.assert_array_equal(self.op(image, "solarize", 0.0)[0, :, 0, 0], [100, 200, 128, 0])

    def test_posterize_keeps_the_top_bits(self):
        image = _image(183)  # 0b10110111
        assert self.op(image, "posterize", 0.0)[0, 0, 0, 0] == 183  # 8 bits: unchanged
        assert self.op(image, "posterize", 0.99)[0, 0, 0, 0] == 176  # 4 bits: 0b10110000
        assert self.op(image, "posterize", 0.5)[0, 0, 0, 0] == 180  # 8 - floor(2.5) = 6 bits: 0b10110100

    def test_brightness_scales_and_truncates(self):
        # m = 0.5: factor 0.05 + 0.45 = 0.5; 201 * 0.5 = 100.5 truncates to 100
        assert self.op(_image(201), "brightness", 0.5)[0, 0, 0, 0] == 100

    def test_contrast_blends_with_the_floored_gray_mean(self):
        # Gray of (77, 77, 77) is floor(77 * 0.9999) = 76; m = 0 (factor 0.05): 77 * 0.05 + 76 * 0.95 = 76.05 -> 76
        assert (self.op(_image(77), "contrast", 0.0) == 76).all()

    def test_color_blends_with_the_floored_gray(self):
        # (200, 100, 0): gray floor(59.78 + 58.7 + 0) = 118; factor 0.5 (m = 0.5): (159, 109, 59)
        np.testing.assert_array_equal(self.op(_image([200, 100, 0]), "color", 0.5)[0, 0, 0], [159, 109, 59])

    def test_sharpness_keeps_the_border_and_a_flat_image(self):
        image = _image(90, size=5)
        np.testing.assert_array_equal(self.op(image, "sharpness", 0.3), image)
        spike = image.copy()
        spike[0, 2, 2] = 220
        out = self.op(spike, "sharpness", 0.0)  # factor 0.05: the centre moves towards its blur round((5*220 + 8*90)/13) = 140
        assert out[0, 2, 2, 0] == int(0.05 * 220 + 0.95 * 140)  # 143
        np.testing.assert_array_equal(out[0, 0], spike[0, 0])  # border rows stay

    def test_autocontrast_stretches_each_channel_and_leaves_a_flat_one(self):
        image = np.zeros((1, 2, 2, 3), np.uint8)  # RGB: torchvision takes 1 or 3 channels
        image[0, :, :, 0] = [[50, 100], [150, 150]]
        image[0, :, :, 1:] = 33
        out = self.op(image, "autocontrast", 0.0)
        # torchvision divides by float32(100 * float32(1/255)) = 0.39215687: 50 -> 127.5 -> 127, and 100 -> 254.99999
        # -> 254 (PIL would give 255)
        np.testing.assert_array_equal(out[0, :, :, 0], [[0, 127], [254, 254]])
        assert (out[0, :, :, 1:] == 33).all()

    def test_equalize_spreads_two_levels_to_the_ends(self):
        # 512 pixels of 10 and 512 of 250: step = 512 // 255 = 2, lut[k > 10] = (512 + 1) // 2 -> 255
        image = np.where(np.arange(32)[:, None, None] < 16, 10, 250).astype(np.uint8) * np.ones((1, 32, 3), np.uint8)
        out = self.op(image[None], "equalize", 0.0)
        np.testing.assert_array_equal(np.unique(out), [0, 255])
        assert (out[0, :16] == 0).all()

    def test_translate_moves_whole_pixels_and_fills(self):
        image = np.arange(32 * 32 * 3, dtype=np.int64).reshape(1, 32, 32, 3).astype(np.uint8)
        m = 0.65625  # 0.3 * (2m - 1) * 32 = 3.0 -> 3 px right
        assert self.translate_pixels(m, 32) == 3
        out = self.op(image, "translate_x", m)
        np.testing.assert_array_equal(out[:, :, 3:], image[:, :, :-3])
        assert (out[:, :, :3] == spec.FILL).all()
        out = self.op(image, "translate_y", m)
        np.testing.assert_array_equal(out[:, 3:], image[:, :-3])

    @pytest.mark.parametrize("name", ["rotate", "shear_x", "shear_y", "translate_x"])
    def test_geometric_ops_at_mid_magnitude_are_the_identity(self, name):
        image = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
        np.testing.assert_array_equal(self.op(image, name, 0.5), image)  # 2m - 1 = 0: no angle, shear or shift

    def test_rotate_turns_counter_clockwise(self):
        image = np.zeros((1, 9, 9, 1), np.uint8)
        image[0, 4, 8] = 255  # right of centre
        out = self.op(image, "rotate", 1.0)  # 30 (2 - 1) = 30 degrees counter-clockwise: the dot rises
        ys, xs = np.nonzero(out[0, :, :, 0] == 255)
        # (4 cos 30, -4 sin 30) = (3.46, -2) from the centre: row 2, columns 7 and 8 (nearest sampling of
        # the output grid reads the dot from both)
        assert ys.tolist() == [2, 2] and xs.tolist() == [7, 8]

    def test_cutout_box_and_fill(self):
        images = np.zeros((1, 32, 32, 3), np.uint8)
        out = self.cutout(images, np.array([[0.5, 0.5, 0.5]], np.float32))
        # side floor(0.5 * 0.5 * 32) = 8, top-left 16 - 4 = 12
        filled = (out[0, :, :, 0] == spec.FILL)
        assert filled.sum() == 64 and filled[12:20, 12:20].all()

    def test_apply_runs_both_layers_then_cutout(self):
        images = np.full((2, 8, 8, 3), 201, np.uint8)
        ops = np.array([[spec.op_index("brightness"), spec.op_index("identity")]] * 2, np.int32)
        magnitudes = np.full((2, 2), 0.5, np.float32)
        no_cutout = np.zeros((2, 3), np.float32)  # side 0
        out = self.apply(images, ops, magnitudes, no_cutout)
        assert (out == 100).all()

    def test_sample_params_shapes_and_ranges(self):
        ops, magnitudes, cutout = self.sample_params(1000)
        assert ops.shape == (1000, 2) and ops.dtype == np.int32 and magnitudes.dtype == np.float32
        assert set(np.unique(ops).tolist()) == set(range(len(spec.OPS)))
        assert 0 <= float(magnitudes.min()) and float(magnitudes.max()) < 1 and cutout.shape == (1000, 3)
