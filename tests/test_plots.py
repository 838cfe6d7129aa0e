"""plots: the palette every picture and the server's legend share, overlays computed by hand, files written."""

import numpy as np
import torch
from PIL import Image

from unetkit import plots


def test_palette_background_black_ignore_grey_binary_white_and_distinct_classes():
    binary, many = plots.palette(2), plots.palette(11)
    assert binary[0].tolist() == [0, 0, 0] and binary[1].tolist() == [255, 255, 255]
    assert binary[255].tolist() == [128, 128, 128]
    assert len({tuple(c) for c in many[:11]}) == 11


def test_overlay_tints_only_labelled_pixels_by_alpha():
    image = np.full((2, 2, 3), 100, np.uint8)
    mask = np.array([[0, 1], [255, 1]], np.uint8)
    out = plots.overlay(image, mask, 2, alpha=0.5)
    assert out[0, 0].tolist() == [100, 100, 100] and out[1, 0].tolist() == [100, 100, 100]  # background, ignore
    assert out[0, 1].tolist() == [177, 70, 70]  # (100 + (255, 40, 40)) / 2, truncated


def test_to_rgb_and_grid_write_a_picture(tmp_path):
    grey = torch.full((1, 4, 5), 0.5)
    assert plots.to_rgb_uint8(grey).shape == (4, 5, 3) and plots.to_rgb_uint8(grey)[0, 0].tolist() == [127] * 3
    row = (plots.to_rgb_uint8(torch.rand(3, 16, 16)), np.zeros((16, 16), np.uint8), np.ones((16, 16), np.uint8))
    plots.grid([row], 2, tmp_path / "g.png", ["one"])
    with Image.open(tmp_path / "g.png") as im:
        assert im.width > 16 and im.height > 16
