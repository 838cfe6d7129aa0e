"""Masks as COCO instance annotations (`unetkit annotate DIR --export coco OUT.json`): one annotation
per connected component of each class, its pixels as COCO's compressed RLE (column-major runs,
starting with background, each run written in COCO's 5-bit LEB128-like string code with deltas from
the run two before, as pycocotools' maskApi does), with area and bbox; categories from the class
names. `rle_decode` reads it back, so the round trip is checked without pycocotools."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def rle_counts(mask: np.ndarray) -> list[int]:
    """Run lengths of a boolean (H, W) mask in column-major order, the first run background."""
    flat = np.asarray(mask, bool).flatten(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat.size and flat[0] else runs


def encode_counts(counts: list[int]) -> str:
    """COCO's compressed RLE string: each count (after the second, as a delta from the count two
    before) in 5-bit groups with a continuation bit, offset by 48 into printable characters."""
    out = []
    for i, c in enumerate(counts):
        x = c - counts[i - 2] if i > 2 else c
        more = True
        while more:
            group = x & 0x1F
            x >>= 5
            more = not ((group & 0x10) == 0 and x == 0 or (group & 0x10) != 0 and x == -1)
            out.append(chr(group + 48 + (0x20 if more else 0)))
    return "".join(out)


def decode_counts(text: str) -> list[int]:
    counts, i = [], 0
    while i < len(text):
        x, shift, more = 0, 0, True
        while more:
            group = ord(text[i]) - 48
            x |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            i += 1
            shift += 5
            if not more and group & 0x10:
                x |= -1 << shift
        counts.append(x + counts[-2] if len(counts) > 2 else x)
    return counts


def rle_encode(mask: np.ndarray) -> dict:
    h, w = mask.shape
    return {"size": [int(h), int(w)], "counts": encode_counts(rle_counts(mask))}


def rle_decode(rle: dict) -> np.ndarray:
    h, w = rle["size"]
    counts = rle["counts"] if isinstance(rle["counts"], list) else decode_counts(rle["counts"])
    values = np.repeat(np.arange(len(counts)) % 2 == 1, counts)
    return values.reshape((w, h)).T


def instances(mask: np.ndarray, num_classes: int):
    """(class index, boolean component) for each connected component (8-connected) of each class > 0."""
    from scipy import ndimage  # here, not at the top: only the commands that need it pay its import

    for c in range(1, num_classes):
        labels, n = ndimage.label(mask == c, structure=np.ones((3, 3)))
        for k in range(1, n + 1):
            yield c, labels == k


def annotation(ann_id: int, image_id: int, category: int, component: np.ndarray) -> dict:
    ys, xs = np.nonzero(component)
    x0, y0 = int(xs.min()), int(ys.min())
    return {"id": ann_id, "image_id": image_id, "category_id": category, "segmentation": rle_encode(component),
            "area": int(component.sum()), "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
            "iscrowd": 0}  # fmt: skip


def to_coco(pairs: list[tuple[Path, Path]], classes: list[str], binary: bool) -> dict:
    """The COCO dict of these (image, mask) pairs; binary masks are 0/255, others class indices."""
    images, annotations = [], []
    for image_id, (img, mask_path) in enumerate(pairs, start=1):
        mask = np.asarray(Image.open(mask_path))
        mask = (mask > 127).astype(np.uint8) if binary else mask
        h, w = mask.shape[:2]
        images.append({"id": image_id, "file_name": img.name, "width": int(w), "height": int(h)})
        for category, component in instances(mask, len(classes)):
            annotations.append(annotation(len(annotations) + 1, image_id, category, component))
    categories = [{"id": i, "name": name, "supercategory": "object"} for i, name in enumerate(classes) if i > 0]
    return {"images": images, "annotations": annotations, "categories": categories}
