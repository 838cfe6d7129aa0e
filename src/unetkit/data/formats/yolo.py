"""YOLO segmentation (Ultralytics, Roboflow): `data.yaml` naming the classes and the train/val/test
image folders, a labels/ folder beside each images/ folder, one line per object: a class id and
its polygon's x y pairs normalised to [0, 1]. A line of exactly 4 numbers is a box (detection
labels) and counts as one. A folder without data.yaml works too (images/ + labels/, class names from
classes.txt if present). Splits come from data.yaml's keys."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from unetkit.data.formats.geometry import Polygons, trace
from unetkit.data.formats.labelset import Instance, LabeledImage, LabelSet
from unetkit.data.imageio import IMAGE_EXTENSIONS, DataError

NAME = "yolo"
SPLIT_KEYS = {"train": "train", "val": "val", "valid": "val", "test": "test"}


def sniff(path: Path, doc) -> bool:
    if path.is_dir():
        return (path / "data.yaml").is_file() or ((path / "images").is_dir() and (path / "labels").is_dir())
    return isinstance(doc, dict) and "names" in doc


def _names(doc: dict, where: Path) -> list[str]:
    names = doc.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise DataError(f"{where}: 'names' must list the class names (a list, or a mapping id: name)")


def read(path: Path, doc, images: Path | None = None, annotator: str = "latest") -> LabelSet:
    if path.is_dir() and (path / "data.yaml").is_file():
        path, doc = path / "data.yaml", load_yaml(path / "data.yaml")
    if path.is_dir():
        listed = path / "classes.txt"
        names = [n.strip() for n in listed.read_text().splitlines() if n.strip()] if listed.is_file() else None
        splits = {None: [path / "images"]}
        root = path
    else:
        names = _names(doc, path)
        root = (path.parent / doc.get("path", "")) if doc.get("path") else path.parent
        splits = {SPLIT_KEYS[k]: _folders(root, doc[k]) for k in SPLIT_KEYS if doc.get(k)}
    items, top, seen = [], [0], set()
    for split, folders in splits.items():
        for folder in folders:
            for image in sorted(p for p in (images or folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS):
                if image not in seen:  # a folder named by two splits (val: images/train) counts for the first
                    seen.add(image)
                    items.append(_item(image, _label_file(image, folder), split, top))
    if names is None:
        names = [f"class_{i}" for i in range(top[0] + 1)]
    bad = next(((it, i) for it in items for i in it.instances if i.category > len(names)), None)
    if bad:
        raise DataError(f"{bad[0].entry}: class {bad[1].category - 1} but only {len(names)} names; name every class")
    return LabelSet(NAME, path, ("background", *names), items, {i: i + 1 for i in range(len(names))})


def load_yaml(path: Path) -> dict:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid YAML ({e}); fix the file") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: not a YOLO data.yaml (a mapping with names, train, val)")
    return doc


def _folders(root: Path, value) -> list[Path]:
    return [root / v for v in (value if isinstance(value, list) else [value])]


def _label_file(image: Path, folder: Path) -> Path:
    parts = list(image.parts)
    i = len(parts) - 1 - parts[::-1].index("images") if "images" in parts else None
    if i is None:
        return image.with_suffix(".txt")
    return Path(*parts[:i], "labels", *parts[i + 1 :]).with_suffix(".txt")


@dataclass(frozen=True)
class Normalised:
    """A polygon in [0, 1] image coordinates, scaled when rasterised."""

    points: tuple[float, ...]

    def mask(self, h: int, w: int) -> np.ndarray:
        p = np.asarray(self.points).reshape(-1, 2) * (w, h)
        return Polygons((tuple(p.ravel().tolist()),)).mask(h, w)


def _item(image: Path, labels: Path, split: str | None, top: list[int]) -> LabeledImage:
    insts = []
    lines = labels.read_text().splitlines() if labels.is_file() else []
    for n, line in enumerate(lines, start=1):
        values = line.split()
        if not values:
            continue
        where = f"{labels}:{n}"
        try:
            cls, coords = int(values[0]), [float(v) for v in values[1:]]
        except ValueError:
            raise DataError(f"{where}: not a class id and numbers; fix the line") from None
        if len(coords) % 2 or len(coords) < 4:
            raise DataError(f"{where}: {len(coords)} coordinates; a polygon needs x y pairs (3 or more points)")
        if min(coords) < 0 or max(coords) > 1:
            raise DataError(f"{where}: coordinates outside [0, 1]; YOLO labels are normalised by the image size")
        if len(coords) == 4:  # a box: centre x, centre y, width, height
            cx, cy, bw, bh = coords
            coords = [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, cx - bw / 2,
                      cy + bh / 2]  # fmt: skip
        top[0] = max(top[0], cls)
        insts.append(Instance(cls + 1, Normalised(tuple(coords))))
    return LabeledImage(image, None, insts, split, str(labels))


def write(samples, classes: tuple[str, ...], out: Path, tolerance: float = 0.5) -> str:
    """OUT/labels/<split>/<stem>.txt beside OUT/images/<split>/ (copied by the caller), OUT/data.yaml."""
    lines = 0
    for s in samples:
        h, w = s.size
        rows = []
        for category, m in s.objects:
            for ring in trace(m, tolerance):
                xy = np.asarray(ring).reshape(-1, 2) / (w, h)
                rows.append(f"{category - 1} " + " ".join(f"{v:.6f}" for v in xy.ravel()))
        target = out / "labels" / (s.split or "train") / f"{Path(s.name).stem}.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(rows) + ("\n" if rows else ""))
        lines += len(rows)
    splits = sorted({s.split or "train" for s in samples})
    text = ["path: .", *(f"{k}: images/{k}" for k in splits)]
    if "val" not in splits:
        text.append("val: images/train  # no val split in the source")
    text += ["names:", *(f"  {i}: {json.dumps(n)}" for i, n in enumerate(classes[1:]))]
    (out / "data.yaml").write_text("\n".join(text) + "\n")
    return f"{len(samples)} images, {lines} polygons"
