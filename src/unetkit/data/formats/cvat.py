"""CVAT for images 1.1 XML: <image> elements holding <polygon>, <polyline> (closed into its polygon),
<box> and <mask> (CVAT's own RLE: alternating background/object run lengths, row by row, inside the
box left/top/width/height). Class order: the labels under <meta>, else by name; `z_order` is the
tool's drawing order (`--overlap order`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetkit.data.formats.geometry import Polygons
from unetkit.data.formats.labelset import Instance, LabeledImage, LabelSet
from unetkit.data.imageio import MAX_PIXELS, DataError

NAME = "cvat"


def sniff(path: Path, root) -> bool:
    return root is not None and root.tag == "annotations" and root.find("image") is not None


@dataclass(frozen=True)
class CvatMask:
    counts: tuple[int, ...]
    box: tuple[int, int, int, int]  # left, top, width, height
    entry: str

    def mask(self, h: int, w: int) -> np.ndarray:
        left, top, bw, bh = self.box
        if sum(self.counts) != bw * bh:
            raise DataError(f"{self.entry}: its RLE covers {sum(self.counts)} pixels, its box {bw}x{bh}; re-export it")
        flat = np.repeat(np.arange(len(self.counts)) % 2 == 1, self.counts).reshape(bh, bw)
        out = np.zeros((h, w), bool)
        part = flat[: max(0, h - top), : max(0, w - left)]
        out[top : top + part.shape[0], left : left + part.shape[1]] = part
        return out


def read(path: Path, root, images: Path | None = None, annotator: str = "latest") -> LabelSet:
    listed = [e.findtext("name") for e in root.iter("label") if e.findtext("name")]
    used = sorted({s.get("label") for im in root.iter("image") for s in im if s.tag in ("polygon", "polyline",
                   "box", "mask")})  # fmt: skip
    names = list(dict.fromkeys(listed)) + [n for n in used if n not in listed]
    ids = {n: i for i, n in enumerate(names, start=1)}
    folders = [images] if images else [path.parent / "images", path.parent]
    items = []
    for im in root.iter("image"):
        h, w = int(im.get("height", 0)), int(im.get("width", 0))
        entry = f"image id {im.get('id')} ({im.get('name')})"
        if h * w <= 0 or h * w > MAX_PIXELS:
            raise DataError(f"{path}: {entry} has size {w}x{h}, missing or over the pixel limit; re-export it")
        shapes = sorted((s for s in im if s.tag in ("polygon", "polyline", "box", "mask")),
                        key=lambda s: int(s.get("z_order", 0)))  # fmt: skip
        insts = [Instance(ids[s.get("label")], _shape(path, entry, k, s)) for k, s in enumerate(shapes)]
        name = im.get("name", "")
        image = next((f / name for f in folders if (f / name).is_file()), folders[0] / name)
        items.append(LabeledImage(image, (h, w), insts, None, f"image{im.get('id')}"))
    return LabelSet(NAME, path, ("background", *names), items)


def _shape(path: Path, entry: str, k: int, s):
    where = f"{path}: {entry}, {s.tag} {k} ({s.get('label')})"
    if s.tag == "mask":
        try:
            counts = tuple(int(c) for c in s.get("rle", "").split(","))
            box = tuple(int(float(s.get(a))) for a in ("left", "top", "width", "height"))
        except (TypeError, ValueError):
            raise DataError(f"{where}: its rle or box is not numbers; re-export the task") from None
        return CvatMask(counts, box, where)
    if s.tag == "box":
        x0, y0, x1, y1 = (float(s.get(a)) for a in ("xtl", "ytl", "xbr", "ybr"))
        return Polygons(((x0, y0, x1, y0, x1, y1, x0, y1),))
    try:
        pts = [tuple(map(float, p.split(","))) for p in s.get("points", "").split(";") if p]
    except ValueError:
        raise DataError(f"{where}: points are not x,y;x,y...; re-export the task") from None
    if len(pts) < 3:
        raise DataError(f"{where}: {len(pts)} points, an area needs 3 or more; fix or delete the shape")
    return Polygons((tuple(v for p in pts for v in p),))
