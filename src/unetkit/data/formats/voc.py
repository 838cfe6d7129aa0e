"""Pascal VOC segmentation layouts (VOC2012 itself, CVAT's and Roboflow's "VOC" exports): JPEGImages/,
SegmentationClass/ palette PNGs (index = class, 255 = the border to ignore), SegmentationObject/
(index = object), ImageSets/Segmentation/{train,val,test}.txt for the splits. Class names from
labelmap.txt (CVAT's `name:r,g,b::` lines, whose colours also read RGB masks), else VOC's 20 classes.
The root may be the VOC folder itself or a VOCdevkit above it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from unetkit.data.formats.labelset import Instance, LabeledImage, LabelSet
from unetkit.data.imageio import IGNORE, IMAGE_EXTENSIONS, DataError, read_mask_raw

NAME = "voc"
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")  # fmt: skip


def voc_root(path: Path) -> Path | None:
    if not path.is_dir():
        return None
    for cand in (path, *sorted(path.glob("VOC*")), *sorted(path.glob("*/VOC*"))):
        if (cand / "JPEGImages").is_dir() and ((cand / "SegmentationClass").is_dir()
                                               or (cand / "SegmentationObject").is_dir()):  # fmt: skip
            return cand
    return None


def sniff(path: Path, doc) -> bool:
    return voc_root(path) is not None


def palette() -> list[int]:
    """VOC's colour map (bit-interleaved), the palette its PNGs carry."""
    out = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out += [r, g, b]
    return out


@dataclass(frozen=True)
class Values:
    """The pixels of a mask PNG holding `value` (mapped through `colors` for RGB PNGs)."""

    png: Path
    value: int
    colors: tuple[tuple[int, int, int], ...] = ()

    def mask(self, h: int, w: int) -> np.ndarray:
        return class_indices(self.png, self.colors) == self.value


def class_indices(png: Path, colors: tuple = ()) -> np.ndarray:
    raw = read_mask_raw(png)
    if raw.ndim == 2:
        return raw
    out = np.full(raw.shape[:2], IGNORE, np.int64)
    for i, c in enumerate(colors):
        out[(raw == c).all(-1)] = i
    return out


def read(path: Path, doc, images: Path | None = None, annotator: str = "latest") -> LabelSet:
    root = voc_root(path)
    names, colors = _labelmap(root)
    splits = _splits(root)
    masks = root / "SegmentationClass"
    stems = sorted(p.stem for p in masks.glob("*.png")) if masks.is_dir() else []
    if not stems:
        raise DataError(f"{masks}: no PNG masks; a VOC root holds SegmentationClass/*.png beside JPEGImages/")
    folder = images or root / "JPEGImages"
    found = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    items = []
    for stem in stems:
        image = found.get(stem, folder / f"{stem}.jpg")
        items.append(LabeledImage(image, None, _instances(root, stem, colors), splits.get(stem), stem))
    top = max((i.category for it in items[:20] for i in it.instances), default=0)
    if top >= len(names):
        raise DataError(f"{root}: masks hold class {top} but only {len(names) - 1} classes are named; add a "
                        "labelmap.txt (one `name:r,g,b::` line per class, background first)")  # fmt: skip
    return LabelSet(NAME, path, names, items, {i: i for i in range(1, len(names))})


def _instances(root: Path, stem: str, colors) -> list[Instance]:
    cls_png = root / "SegmentationClass" / f"{stem}.png"
    obj_png = root / "SegmentationObject" / f"{stem}.png"
    classes = class_indices(cls_png, colors)
    insts = [Instance(0, Values(cls_png, IGNORE, colors), crowd=True)] if (classes == IGNORE).any() else []
    if obj_png.is_file():
        objects = read_mask_raw(obj_png)
        for k in np.unique(objects).tolist():
            if k in (0, IGNORE):
                continue
            values, counts = np.unique(classes[objects == k], return_counts=True)
            keep = values != IGNORE
            if keep.any() and values[keep][np.argmax(counts[keep])] > 0:
                insts.append(Instance(int(values[keep][np.argmax(counts[keep])]), Values(obj_png, int(k))))
        return insts
    return insts + [Instance(int(c), Values(cls_png, int(c), colors)) for c in np.unique(classes).tolist()
                    if c not in (0, IGNORE)]  # fmt: skip


def _labelmap(root: Path) -> tuple[tuple[str, ...], tuple]:
    path = root / "labelmap.txt"
    if not path.is_file():
        return VOC_CLASSES, tuple(tuple(palette()[3 * i : 3 * i + 3]) for i in range(len(VOC_CLASSES)))
    names, colors = [], []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        rgb = rest.partition(":")[0]
        names.append(name.strip())
        colors.append(tuple(int(v) for v in rgb.split(",")) if rgb else tuple(palette()[3 * len(colors) :][:3]))
    if not names:
        raise DataError(f"{path}: no classes; one `name:r,g,b::` line per class, background first")
    return tuple(names), tuple(colors)


def _splits(root: Path) -> dict[str, str]:
    out = {}
    for split in ("train", "val", "test"):
        listed = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if listed.is_file():
            out |= {line.split()[0]: split for line in listed.read_text().splitlines() if line.strip()}
    return out


def write(samples, classes: tuple[str, ...], out: Path, tolerance: float = 0.5) -> str:
    """OUT/JPEGImages (copied by the caller), SegmentationClass and SegmentationObject palette PNGs,
    ImageSets/Segmentation/<split>.txt, labelmap.txt."""
    pal = palette()
    for sub in ("SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for s in samples:
        h, w = s.size
        cls, obj = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
        objects = sorted(s.objects[:254], key=lambda o: -o[1].sum())  # smaller objects drawn last (on top)
        for k, (category, m) in enumerate(objects, start=1):
            cls[m], obj[m] = category, k
        if s.ignore is not None:
            cls[s.ignore], obj[s.ignore] = IGNORE, IGNORE
        for arr, sub in ((cls, "SegmentationClass"), (obj, "SegmentationObject")):
            img = Image.fromarray(arr, mode="P")
            img.putpalette(pal)
            img.save(out / sub / f"{Path(s.name).stem}.png")
    for split in sorted({s.split or "train" for s in samples}):
        stems = [Path(s.name).stem for s in samples if (s.split or "train") == split]
        (out / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(stems) + "\n")
    lines = [f"{n}:{','.join(map(str, pal[3 * i : 3 * i + 3]))}::" for i, n in enumerate(classes)]
    (out / "labelmap.txt").write_text("# label:color_rgb:parts:actions\n" + "\n".join(lines) + "\n")
    return f"{len(samples)} images, {sum(len(s.objects) for s in samples)} objects"
