import dataclasses

import torch

from unetkit.config import AugmentConfig
from unetkit.data.imageio import IGNORE
from unetkit.data.transforms import augment, gaussian_blur, normalize

ALL_ON = AugmentConfig(hflip=0.5, vflip=0.5, rot90=0.5, affine=1.0, elastic=0.5, blur=0.5)
GEOMETRY_ONLY = dataclasses.replace(ALL_ON, brightness=0, contrast=0, gamma=0, saturation=0, hue=0, noise=0, blur=0)


def blocks(n=8, size=48, seed=0):
    """Masks of large constant blocks with labels 0, 2, 5, and images whose channel 0 encodes them."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.tensor([0, 2, 5])[torch.randint(0, 3, (n, 6, 6), generator=g)]
    masks = coarse.repeat_interleave(size // 6, 1).repeat_interleave(size // 6, 2)
    images = (masks.float() / 5).unsqueeze(1).repeat(1, 3, 1, 1)
    return images, masks


def test_masks_keep_their_label_set():
    images, masks = blocks()
    for seed in range(5):
        _, out = augment(images, masks, ALL_ON, torch.Generator().manual_seed(seed))
        assert out.shape == masks.shape and out.dtype == masks.dtype
        assert set(out.unique().tolist()) <= {0, 2, 5, IGNORE}


def test_image_and_mask_stay_aligned():
    images, masks = blocks(size=96)
    for seed in range(3):
        img, m = augment(images, masks, GEOMETRY_ONLY, torch.Generator().manual_seed(seed))
        # Interior pixels (all 8 neighbours share the label): the bilinear image must equal the label.
        p = torch.nn.functional.pad(m, (1, 1, 1, 1), value=-1)
        same = torch.ones_like(m, dtype=torch.bool)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                same &= p[:, dy : dy + m.shape[1], dx : dx + m.shape[2]] == m
        interior = same & (m != IGNORE)
        err = (img[:, 0] * 5 - m.float()).abs()
        assert interior.float().mean() > 0.5
        assert (err[interior] < 0.5).float().mean() > 0.999


def test_flips_and_rot90_are_exact():
    images, masks = blocks()
    cfg = dataclasses.replace(GEOMETRY_ONLY, affine=0.0, elastic=0.0)
    img, m = augment(images, masks, cfg, torch.Generator().manual_seed(1))
    assert torch.equal((img[:, 0] * 5).round().long(), m)
    assert not torch.equal(m, masks)  # something actually moved


def test_same_generator_seed_same_result():
    images, masks = blocks()
    a = augment(images, masks, ALL_ON, torch.Generator().manual_seed(3))
    b = augment(images, masks, ALL_ON, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_photometric_changes_image_not_mask_and_stays_in_range():
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(4, 16, 16, dtype=torch.long)
    cfg = AugmentConfig(hflip=0, affine=0, blur=1.0)
    img, m = augment(images, masks, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(m, masks)
    assert img.min() >= 0 and img.max() <= 1 and not torch.allclose(img, images)


def test_blur_preserves_constant_images_and_normalize_uses_stats():
    x = torch.full((1, 3, 9, 9), 0.4)
    torch.testing.assert_close(gaussian_blur(x, 1.0), x)
    out = normalize(torch.ones(1, 2, 2, 2), [0.5, 1.0], [0.25, 2.0])
    assert out[0, 0, 0, 0] == 2.0 and out[0, 1, 0, 0] == 0.0
