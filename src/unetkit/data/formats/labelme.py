"""LabelMe JSON (LabelMe, X-AnyLabeling): one JSON beside each image, `shapes` of polygons, rectangles,
circles and masks; shapes with the same label and group_id are one object. Lines and points have no
area and are left out (counted). Class order: the folder's labels.txt (LabelMe's --labels file) where
there is one, else the labels sorted by name. An image inline in `imageData` (no file at `imagePath`)
is decoded, size-checked, and kept in the cache folder so the pipeline reads it like any file."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from unetkit.data.formats.geometry import Polygons, trace
from unetkit.data.formats.labelset import Instance, LabeledImage, LabelSet
from unetkit.data.imageio import MAX_PIXELS, DataError

NAME = "labelme"
AREA_SHAPES = ("polygon", "rectangle", "circle", "mask")


def _is_labelme(doc) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("shapes"), list) and "imagePath" in doc


def _jsons(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.json") if not p.name.startswith("."))


def sniff(path: Path, doc) -> bool:
    if path.is_file():
        return _is_labelme(doc)
    for p in _jsons(path)[:3]:
        try:
            if _is_labelme(json.loads(p.read_text(encoding="utf-8"))):
                return True
        except (ValueError, UnicodeDecodeError, OSError):
            continue
    return False


@dataclass(frozen=True)
class Bitmap:
    """LabelMe's mask shape: a PNG of the box between its two points."""

    data: str
    box: tuple[int, int]  # (x0, y0)

    def mask(self, h: int, w: int) -> np.ndarray:
        part = np.asarray(Image.open(io.BytesIO(base64.b64decode(self.data)))).astype(bool)
        part = part[..., 0] if part.ndim == 3 else part
        out = np.zeros((h, w), bool)
        x0, y0 = self.box
        ph, pw = part[: max(0, h - y0), : max(0, w - x0)].shape
        out[y0 : y0 + ph, x0 : x0 + pw] = part[:ph, :pw]
        return out


def read(path: Path, doc, images: Path | None = None, annotator: str = "latest") -> LabelSet:
    files = [(path, doc)] if path.is_file() else [(p, json.loads(p.read_text(encoding="utf-8"))) for p in _jsons(path)]
    files = [(p, d) for p, d in files if _is_labelme(d)]
    folder = path if path.is_dir() else path.parent
    names = _class_order(folder, files)
    ids = {n: i for i, n in enumerate(names, start=1)}
    items, skipped = [], {}
    for p, d in files:
        image = _image_path(p, d, images)
        size = (int(d["imageHeight"]), int(d["imageWidth"])) if d.get("imageHeight") and d.get("imageWidth") else None
        items.append(LabeledImage(image, size, _instances(p, d, ids, skipped), None, p.name))
    notes = [f"{n} {kind} shapes have no area and were left out" for kind, n in sorted(skipped.items())]
    return LabelSet(NAME, path, ("background", *names), items, {}, notes)


def _class_order(folder: Path, files) -> list[str]:
    listed = folder / "labels.txt"
    found = sorted({s["label"] for _, d in files for s in d["shapes"] if s.get("shape_type", "polygon") in AREA_SHAPES})
    if not listed.is_file():
        return found
    order = [n.strip() for n in listed.read_text().splitlines() if n.strip() and n.strip() not in ("__ignore__",
             "_background_", "background")]  # fmt: skip
    missing = [n for n in found if n not in order]
    if missing:
        raise DataError(f"{listed}: labels {missing} are used by shapes but not listed; add them to labels.txt")
    return order


def _instances(path: Path, doc: dict, ids: dict[str, int], skipped: dict) -> list[Instance]:
    groups: dict[tuple, list] = {}
    for k, s in enumerate(doc["shapes"]):
        kind = s.get("shape_type") or "polygon"
        if kind not in AREA_SHAPES:
            skipped[kind] = skipped.get(kind, 0) + 1
            continue
        key = (s["label"], s.get("group_id")) if s.get("group_id") is not None else (s["label"], f"shape{k}")
        groups.setdefault(key, []).append(_shape(path, k, kind, s))
    out = []
    for (label, _), shapes in groups.items():
        rings = tuple(r for s in shapes if isinstance(s, Polygons) for r in s.rings)
        if rings:
            out.append(Instance(ids[label], Polygons(rings)))
        out += [Instance(ids[label], s) for s in shapes if not isinstance(s, Polygons)]
    return out


def _shape(path: Path, k: int, kind: str, s: dict):
    pts = [tuple(map(float, p)) for p in s.get("points") or []]
    need = {"polygon": 3, "rectangle": 2, "circle": 2, "mask": 2}[kind]
    if len(pts) < need:
        raise DataError(f"{path}: shape {k} ({kind} {s.get('label')!r}) has {len(pts)} points, a {kind} needs "
                        f"{need}; fix or remove the shape")  # fmt: skip
    if kind == "rectangle":
        (x0, y0), (x1, y1) = pts[:2]
        pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    elif kind == "circle":
        (cx, cy), (px, py) = pts[:2]
        r = math.hypot(px - cx, py - cy)
        pts = [(cx + r * math.cos(t), cy + r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 64, endpoint=False)]
    elif kind == "mask":
        return Bitmap(s["mask"], (int(round(min(p[0] for p in pts))), int(round(min(p[1] for p in pts)))))
    return Polygons((tuple(v for p in pts for v in p),))


def _image_path(path: Path, doc: dict, images: Path | None) -> Path:
    name = (doc.get("imagePath") or "").replace("\\", "/")
    for candidate in ([images / Path(name).name] if images else []) + [path.parent / name, path.with_suffix(
            Path(name).suffix or ".jpg")]:  # fmt: skip
        if name and candidate.is_file():
            return candidate
    if doc.get("imageData"):
        return _inline_image(path, doc["imageData"])
    raise DataError(f"{path}: its image {name!r} is not at {path.parent / name} and the JSON holds no imageData; "
                    "put the image there or pass --images DIR")  # fmt: skip


def _inline_image(path: Path, data: str) -> Path:
    raw = base64.b64decode(data)
    digest = hashlib.sha1(raw).hexdigest()[:16]
    out = Path(os.environ.get("UNETKIT_CACHE", Path.home() / ".cache" / "unetkit")) / "labelme" / f"{digest}.png"
    if out.is_file():
        return out
    try:
        img = Image.open(io.BytesIO(raw))
        if img.width * img.height > MAX_PIXELS:
            raise DataError(f"{path}: its imageData is {img.width}x{img.height}, over the {MAX_PIXELS:,} pixel limit")
        img.load()
    except (OSError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot decode its imageData ({e}); re-save it in LabelMe") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    img.save(tmp, format="PNG")
    os.replace(tmp, out)
    return out


def write(samples, classes: tuple[str, ...], out: Path, tolerance: float = 0.5) -> str:
    """OUT/<image> (copied by the caller) and OUT/<stem>.json for each, plus labels.txt (the class order)."""
    shapes = 0
    for s in samples:
        doc = {"version": "5.5.0", "flags": {}, "shapes": [], "imagePath": s.name, "imageData": None,
               "imageHeight": int(s.size[0]), "imageWidth": int(s.size[1])}  # fmt: skip
        for group, (category, m) in enumerate(s.objects):
            for ring in trace(m, tolerance):
                points = [[ring[i], ring[i + 1]] for i in range(0, len(ring), 2)]
                shape = {"label": classes[category], "points": points, "group_id": group, "description": ""}
                doc["shapes"].append({**shape, "shape_type": "polygon", "flags": {}, "mask": None})
        shapes += len(doc["shapes"])
        (out / f"{Path(s.name).stem}.json").write_text(json.dumps(doc, indent=1))
    (out / "labels.txt").write_text("\n".join(["__ignore__", "_background_", *classes[1:]]) + "\n")
    return f"{len(samples)} images, {shapes} polygons"
