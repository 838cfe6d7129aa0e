"""Many objects, many sizes, from pictures of one: objects cut out of other pictures of the batch by their
masks and pasted, shrunk, at random places (the covered parts of the objects below leave their masks).

Click training learns from one object per sample; salient-object data (DUTS) holds one large central
object per picture, so a model trained on it alone misses small objects among many. Each pasted object
gets a label of its own (2, 3, ...), so the click target (training.pick_object) is drawn among all of a
picture's objects alike: a small pasted object is trained as often as the large one below it."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from unetkit.data.imageio import IGNORE

MIN_DONOR_PIXELS = 64  # smaller objects are not cut out (too few pixels to shrink)
SIDE_RANGE = (0.06, 0.5)  # a pasted object's longer side, as a share of the picture's longer side (log-uniform)


def paste_objects(
    images: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator, share: float, most: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """images (N, C, H, W) float, masks (N, H, W) long -> the same, where a `share` of the pictures get
    1..`most` objects of the others pasted on them. Returns new tensors; the inputs are unchanged."""
    n = len(images)
    if n < 2 or share <= 0:
        return images, masks
    images, masks = images.clone(), masks.clone()
    donors = [_donor(images[j], masks[j]) for j in range(n)]
    for i in range(n):
        others = [j for j in range(n) if j != i and donors[j] is not None]
        if not others or rng.random() >= share:
            continue
        for _ in range(int(rng.integers(1, most + 1))):
            label = int(masks[i][masks[i] != IGNORE].max()) + 1
            if label >= IGNORE:
                break
            _paste(images[i], masks[i], donors[others[rng.integers(len(others))]], label, rng)
    return images, masks


def _donor(image: torch.Tensor, mask: torch.Tensor):
    """(image crop, object crop) of a picture's labelled foreground, or None if it is too small."""
    obj = (mask > 0) & (mask != IGNORE)
    if int(obj.sum()) < MIN_DONOR_PIXELS:
        return None
    ys, xs = torch.nonzero(obj, as_tuple=True)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    return image[:, y0:y1, x0:x1], obj[y0:y1, x0:x1]


def _paste(image: torch.Tensor, mask: torch.Tensor, donor, label: int, rng: np.random.Generator) -> None:
    """Shrink the donor to a random size, put it at a random place (wholly inside), in place."""
    crop, obj = donor
    h, w = mask.shape
    dh, dw = obj.shape
    side = math.exp(rng.uniform(math.log(SIDE_RANGE[0]), math.log(SIDE_RANGE[1]))) * max(h, w)
    s = min(1.0, side / max(dh, dw), (h - 1) / dh, (w - 1) / dw)  # only ever shrunk, and it must fit
    th, tw = max(4, round(dh * s)), max(4, round(dw * s))
    if th >= h or tw >= w:
        return
    small = F.interpolate(crop[None].float(), size=(th, tw), mode="bilinear", align_corners=False, antialias=True)
    where = F.interpolate(obj[None, None].float(), size=(th, tw), mode="bilinear", align_corners=False)[0, 0] > 0.5
    if not where.any():
        return
    y, x = int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1))
    region = image[:, y : y + th, x : x + tw]
    region[:, where] = small[0][:, where].to(image.dtype)
    mask[y : y + th, x : x + tw][where] = label
