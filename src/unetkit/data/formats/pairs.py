"""A label set as the (image, mask) pairs the rest of unetkit takes: each mask a `LabelMask`, an entry of
the label file rendered only when a batch (or the check) reads it, so a file of 10,000 images is
indexed without drawing a single mask."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unetkit.data.formats.labelset import LabelSet, render
from unetkit.data.imageio import IGNORE, MaskSource, MaskSpec
from unetkit.data.records import Pair


@dataclass(frozen=True, eq=False)
class LabelMask(MaskSource):
    labels: LabelSet = field(repr=False)
    index: int  # the image in labels.images
    mode: str  # semantic | binary | instances
    overlap: str = "area"
    target: int | None = None  # instances: the object in that image's instances

    @property
    def path(self) -> Path:
        return self.labels.source

    @property
    def fragment(self) -> str:
        item = self.labels.images[self.index]
        name = item.image.name if not item.entry else item.entry.replace(" ", "")
        return f"{name}/{self.mode}" + (f"/{self.target}" if self.target is not None else "")

    def read(self) -> np.ndarray:
        return render(self.labels.images[self.index], self.mode, self.overlap, self.target)

    def __eq__(self, other) -> bool:
        return isinstance(other, LabelMask) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


def label_pairs(labels: LabelSet, mode: str, overlap: str = "area") -> list[Pair]:
    """semantic/binary: one pair per image (images without objects are all background); instances:
    one pair per object (crowd regions are no samples: they stay ignore in their image's samples)."""
    pairs = []
    for i, item in enumerate(labels.images):
        if mode != "instances":
            pairs.append(Pair(item.image, LabelMask(labels, i, mode, overlap), item.split))
            continue
        for k, inst in enumerate(item.instances):
            if not inst.crowd:
                pairs.append(Pair(item.image, LabelMask(labels, i, mode, overlap, k), item.split))
    return pairs


def label_spec(labels: LabelSet, mode: str) -> MaskSpec:
    """What LabelMask.read gives: class indices 0..K or 0/1, with 255 ignored."""
    if mode == "semantic":
        return MaskSpec("index", max(2, len(labels.classes)), IGNORE)
    return MaskSpec("binary", 2, IGNORE)


def label_classes(labels: LabelSet, mode: str) -> tuple[str, ...]:
    if mode == "semantic":
        return labels.classes if len(labels.classes) >= 2 else (*labels.classes, "object")
    return ("background", "object")
