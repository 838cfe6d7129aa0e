"""`unetkit data convert SRC OUT --to FORMAT`: any dataset unetkit reads (its own folders, or a label
file of COCO, LabelMe, YOLO, VOC, CVAT, Label Studio) written as unetkit's layout (images/, masks/ of
class indices with 255 = ignore, classes.txt) or as COCO, YOLO, LabelMe or VOC. Objects are a label
file's own instances, or each connected part of a class in a mask. Written into a temporary folder
beside OUT and renamed at the end: an interrupted or failed conversion leaves no half-written OUT."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from unetkit.config import DataConfig
from unetkit.data.check import check_dataset, class_names
from unetkit.data.formats import WRITERS
from unetkit.data.formats.geometry import TOLERANCE
from unetkit.data.formats.labelset import image_size
from unetkit.data.formats.source import label_mode, label_source
from unetkit.data.imageio import IGNORE, DataError, read_mask
from unetkit.data.splits import SPLITS

TARGETS = ("unetkit", *WRITERS)


@dataclass
class Sample:
    """One image to write: its file, size (h, w), objects (class index, bool mask), ignored pixels."""

    image: Path
    name: str
    size: tuple[int, int]
    objects: list[tuple[int, np.ndarray]] = field(default_factory=list)
    ignore: np.ndarray | None = None
    split: str | None = None


def components(mask: np.ndarray, num_classes: int) -> Iterator[tuple[int, np.ndarray]]:
    """(class index, bool part) for each 8-connected part of each class > 0 of a class-index mask."""
    from scipy import ndimage  # here, not at the top: only the commands that need it pay its import

    for c in range(1, num_classes):
        labels, n = ndimage.label(mask == c, structure=np.ones((3, 3)))
        for k in range(1, n + 1):
            yield c, labels == k


def samples_of(cfg: DataConfig) -> tuple[list[Sample], tuple[str, ...]]:
    """Every pair of a dataset as samples, and its class names; a failed data check is an error."""
    report, splits, spec = check_dataset(cfg)
    if report.problems:
        raise DataError("the data check found problems; fix them first (`unetkit data check`):\n"
                        + "\n".join(f"  {p}" for p in report.problems))  # fmt: skip
    classes = class_names(cfg, spec)
    labels = label_source(cfg)
    out = []
    for split in SPLITS:
        for p in splits[split]:
            layout_split = p.split if p.split and (labels is None or _has_splits(labels)) else None
            if labels is not None and label_mode(cfg) != "binary":
                out.append(_from_labels(labels, p.mask.index, layout_split))
                continue
            out.append(mask_sample(p, spec, layout_split))
    return _unique_names(out), classes


def mask_sample(p, spec, split: str | None = None) -> Sample:
    """A pair with a mask file as a sample: each connected part of each class one object."""
    mask = read_mask(p.mask, spec)
    ignore = mask == IGNORE
    return Sample(p.image, p.image.name, mask.shape, list(components(mask, spec.num_classes)),
                  ignore if ignore.any() else None, split)  # fmt: skip


def _has_splits(labels) -> bool:
    return any(item.split for item in labels.images)


def _from_labels(labels, index: int, split: str | None) -> Sample:
    item = labels.images[index]
    h, w = image_size(item)
    objects = [(i.category, i.shape.mask(h, w)) for i in item.instances if not i.crowd]
    crowd = [i.shape.mask(h, w) for i in item.instances if i.crowd]
    ignore = np.logical_or.reduce(crowd) & ~np.logical_or.reduce([m for _, m in objects] or [np.zeros((h, w), bool)])
    return Sample(item.image, item.image.name, (h, w), [(c, m) for c, m in objects if m.any()],
                  ignore if crowd and ignore.any() else None, split)  # fmt: skip


def _unique_names(samples: list[Sample]) -> list[Sample]:
    """Output file names: the image's, numbered where two images of different folders share one."""
    seen: dict[str, int] = {}
    for s in samples:
        n = seen.get(s.name.lower(), 0)
        seen[s.name.lower()] = n + 1
        if n:
            s.name = f"{Path(s.name).stem}_{n}{Path(s.name).suffix}"
    return samples


def write_unetkit(samples: list[Sample], classes: tuple[str, ...], out: Path) -> str:
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for s in samples:
        mask = np.zeros(s.size, np.uint8)
        for category, m in sorted(s.objects, key=lambda o: -o[1].sum()):  # smaller objects drawn last
            mask[m] = category
        if s.ignore is not None:
            mask[s.ignore] = IGNORE
        Image.fromarray(mask).save(out / "masks" / f"{Path(s.name).stem}.png")
    (out / "classes.txt").write_text("\n".join(classes) + "\n")
    return f"{len(samples)} images, masks of {len(classes)} classes (255 = ignore), classes.txt"


IMAGE_FOLDER = {"unetkit": "images", "coco": "images", "labelme": ".", "voc": "JPEGImages"}


def convert(cfg: DataConfig, out: Path, to: str, polygons: bool = False, tolerance: float = TOLERANCE) -> str:
    """Write the dataset of `cfg` to `out` in format `to`; returns a one-line summary."""
    if to not in TARGETS:
        raise DataError(f"--to {to}: use {' | '.join(TARGETS)}")
    samples, classes = samples_of(cfg)
    return write_samples(samples, classes, Path(out), to, polygons, tolerance)


def write_samples(samples: list[Sample], classes: tuple[str, ...], out: Path, to: str, polygons: bool = False,
                  tolerance: float = TOLERANCE) -> str:  # fmt: skip
    """The samples in format `to` under `out` (a new or empty folder), all or nothing."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: exists and is not empty; choose a new folder or remove it")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for s in samples:
            folder = tmp / (f"images/{s.split or 'train'}" if to == "yolo" else IMAGE_FOLDER[to])
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(s.image, folder / s.name)
        if to == "unetkit":
            summary = write_unetkit(samples, classes, tmp)
        elif to == "coco":
            summary = WRITERS[to].write(samples, classes, tmp, polygons, tolerance)
        else:
            summary = WRITERS[to].write(samples, classes, tmp, tolerance)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return f"wrote {out} ({to}): {summary}"
