"""What every label-format reader yields: images, each with its objects (a category and a shape), and
the one rule that turns objects into the masks the rest of unetkit trains on.

The rule (`render`), written down once for every format:
- semantic: 0 is background, category k is class index k (the order of `LabelSet.classes`); where
  objects overlap, the smaller one is drawn last and wins (`overlap="area"`, so a cup on a table stays a
  cup), or the later one in the file does (`overlap="order"`, the tool's z-order).
- binary: 1 wherever any object is, else 0.
- instances: one sample per object: 1 on that object, 0 elsewhere (other objects included).
- ignore (255) in every mode: crowd regions (COCO `iscrowd`) and VOC's 255 border, except where a
  non-crowd object covers them (semantic/binary) or the sample's own object does (instances).
Shapes are rasterised by pycocotools' rule for polygons, whatever tool wrote them: pixel (x, y) covers
[x, x+1) x [y, y+1), so a polygon along pixel corners gives back exactly those pixels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from unetkit.data.imageio import IGNORE, DataError

MODES = ("semantic", "binary", "instances")
OVERLAPS = ("area", "order")


class Shape(Protocol):
    def mask(self, h: int, w: int) -> np.ndarray:
        """bool (h, w): the pixels this shape covers on an image of that size."""
        ...


@dataclass(frozen=True)
class Instance:
    category: int  # class index, 1..K (0 only for an ignore region)
    shape: Shape
    crowd: bool = False  # an ignore region: counts in neither loss nor metrics
    area: float = 0.0  # for the overlap rule; 0 = unknown (computed from the mask when needed)


@dataclass
class LabeledImage:
    image: Path
    size: tuple[int, int] | None  # (h, w) the annotations declare, or None: read from the image
    instances: list[Instance] = field(default_factory=list)
    split: str | None = None  # the layout's own split (VOC ImageSets, YOLO train/val), if any
    entry: str = ""  # where it is in the source, for messages ("image id 9")


@dataclass
class LabelSet:
    format: str
    source: Path
    classes: tuple[str, ...]  # index 0 = background
    images: list[LabeledImage]
    category_ids: dict[int, int] = field(default_factory=dict)  # the file's category id -> class index
    notes: list[str] = field(default_factory=list)

    @property
    def num_instances(self) -> int:
        return sum(not i.crowd for im in self.images for i in im.instances)

    def summary(self) -> str:
        crowd = sum(i.crowd for im in self.images for i in im.instances)
        text = (f"{self.format} labels in {self.source}: {len(self.images)} images, {self.num_instances} objects"
                f"{f' (+{crowd} ignore regions)' if crowd else ''}, {len(self.classes) - 1} classes")  # fmt: skip
        return "; ".join([text, *self.notes])


def image_size(item: LabeledImage) -> tuple[int, int]:
    """(h, w) of an image: as declared, else from the file's header (no decoding)."""
    if item.size is not None:
        return item.size
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(item.image) as im:
            return im.height, im.width
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"{item.image}: cannot read image ({e}); re-export the file or remove it") from None


def render(item: LabeledImage, mode: str, overlap: str = "area", target: int | None = None) -> np.ndarray:
    """uint8 (h, w) mask of one image by the module's rule: class indices (semantic), 0/1 (binary, and
    instances with `target`, the index of the sample's object in item.instances), 255 = ignore."""
    h, w = image_size(item)
    out = np.zeros((h, w), np.uint8)
    ignore = np.zeros((h, w), bool)
    objects = [(i, inst) for i, inst in enumerate(item.instances) if not inst.crowd]
    for inst in item.instances:
        if inst.crowd:
            ignore |= _mask(inst, h, w, item)
    if mode == "instances":
        own = _mask(item.instances[target], h, w, item)
        out[ignore & ~own] = IGNORE
        out[own] = 1
        return out
    masks = [(i, inst, _mask(inst, h, w, item)) for i, inst in objects]
    if overlap == "area":
        masks.sort(key=lambda m: -(m[1].area or m[2].sum()))  # largest first, smallest drawn last
    covered = np.zeros((h, w), bool)
    for _, inst, m in masks:
        out[m] = 1 if mode == "binary" else inst.category
        covered |= m
    out[ignore & ~covered] = IGNORE
    return out


def _mask(inst: Instance, h: int, w: int, item: LabeledImage) -> np.ndarray:
    m = inst.shape.mask(h, w)
    if m.shape != (h, w):
        raise DataError(
            f"{item.image}: a mask of {item.entry or 'this image'} is {m.shape[1]}x{m.shape[0]} but the image is "
            f"{w}x{h}; re-export the labels for this image's size"
        )
    return m.astype(bool, copy=False)
