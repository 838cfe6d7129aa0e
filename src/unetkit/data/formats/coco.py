"""COCO instances JSON (what CVAT, Label Studio, Roboflow, X-AnyLabeling and most papers export):
polygons, compressed and uncompressed RLE, `iscrowd` regions (ignored in training and scoring).

Images are looked for where COCO layouts keep them: `--images DIR`, else beside the JSON, in an
images/ folder beside it or one level up, or in the folder the file is named after
(annotations/instances_train2017.json -> train2017/)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unetkit.data.formats.geometry import CocoRle, Polygons, rle_encode, trace
from unetkit.data.formats.labelset import Instance, LabeledImage, LabelSet
from unetkit.data.imageio import MAX_PIXELS, DataError

NAME = "coco"


def sniff(path: Path, doc) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("images"), list) and isinstance(doc.get("annotations"), list)


def image_folders(path: Path, images: Path | None) -> list[Path]:
    if images is not None:
        return [images]
    base = path.parent
    named = base.parent / path.stem.removeprefix("instances_")  # annotations/instances_train2017.json
    return [base / "images", base, base.parent / "images", named, base.parent]


def find_folder(path: Path, names: list[str], images: Path | None) -> Path:
    """The first candidate folder that holds the first listed image; an error naming them all if none."""
    folders = image_folders(path, images)
    for name in names[:1]:
        for folder in folders:
            if (folder / name).is_file():
                return folder
        tried = ", ".join(str(f) for f in folders)
        raise DataError(f"{path}: image {name!r} (the first listed) is in none of {tried}; pass --images DIR")
    return folders[0]


def read(path: Path, doc: dict, images: Path | None = None, annotator: str = "latest") -> LabelSet:
    categories = doc.get("categories") or []
    if not categories:
        raise DataError(f"{path}: no categories; a COCO file lists its categories under 'categories'")
    cats = sorted(categories, key=lambda c: c["id"])
    ids = {c["id"]: i for i, c in enumerate(cats, start=1)}
    folder = find_folder(path, [im["file_name"] for im in doc["images"]], images)
    by_image: dict[int, list[dict]] = {}
    for ann in doc["annotations"]:
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    items, clipped = [], [0]
    for im in doc["images"]:
        size = _size(path, im)
        entry = f"image id {im['id']}"
        anns = by_image.pop(im["id"], [])
        insts = [_instance(path, a, ids, size, clipped) for a in anns]
        items.append(LabeledImage(folder / im["file_name"], size, insts, None, entry))
    if by_image:
        image_id = next(iter(by_image))
        raise DataError(f"{path}: annotation {by_image[image_id][0].get('id')} names image_id {image_id}, which "
                        "is not under 'images'; add the image or remove its annotations")  # fmt: skip
    notes = [f"{clipped[0]} polygons reach outside their image (clipped at its border)"] if clipped[0] else []
    return LabelSet(NAME, path, ("background", *(c["name"] for c in cats)), items, ids, notes)


def _size(path: Path, im: dict) -> tuple[int, int]:
    h, w = int(im.get("height") or 0), int(im.get("width") or 0)
    if h <= 0 or w <= 0:
        raise DataError(f"{path}: image id {im.get('id')} has no width/height; give each image its size")
    if h * w > MAX_PIXELS:
        raise DataError(f"{path}: image id {im['id']} declares {w}x{h}, over the {MAX_PIXELS:,} pixel limit")
    return h, w


def _instance(path: Path, ann: dict, ids: dict[int, int], size: tuple[int, int], clipped: list[int]) -> Instance:
    where = f"{path}: annotation {ann.get('id')}"
    if ann.get("category_id") not in ids:
        raise DataError(f"{where} has category_id {ann.get('category_id')}, which is not under 'categories'; "
                        "add the category or remove the annotation")  # fmt: skip
    seg = ann.get("segmentation")
    crowd = bool(ann.get("iscrowd", 0))
    if isinstance(seg, list):
        if not seg or any(len(p) < 6 or len(p) % 2 for p in seg):
            raise DataError(f"{where}: a polygon with fewer than 3 points (x, y pairs); remove it or give it 3+")
        shape = Polygons(tuple(tuple(float(v) for v in p) for p in seg))
        clipped[0] += shape.outside(*size)
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if tuple(seg["size"]) != size:
            h, w = seg["size"]
            raise DataError(f"{where}: its RLE is {w}x{h} but the image is {size[1]}x{size[0]}; re-export the "
                            "masks at the image's size")  # fmt: skip
        counts = seg["counts"] if isinstance(seg["counts"], str) else tuple(int(c) for c in seg["counts"])
        shape = CocoRle(size, counts)
    else:
        raise DataError(f"{where} has no polygon or RLE segmentation; COCO segmentation is a list of polygons or "
                        "an RLE dict (boxes alone make no mask)")  # fmt: skip
    return Instance(ids[ann["category_id"]], shape, crowd, float(ann.get("area") or 0))


# ----------------------------------------------------------------------------------------------
# Writing


def to_coco(samples, classes: tuple[str, ...], polygons: bool = False, tolerance: float = 0.5) -> dict:
    """The COCO dict of samples (convert.Sample: image, size, [(class index, bool mask)]): one annotation
    per object, as compressed RLE (exact) or, with `polygons`, traced polygons (within `tolerance`)."""
    images, annotations = [], []
    for image_id, s in enumerate(samples, start=1):
        h, w = s.size
        images.append({"id": image_id, "file_name": s.name, "width": int(w), "height": int(h)})
        for category, m in s.objects:
            seg = trace(m, tolerance) if polygons else rle_encode(m)
            if polygons and not seg:
                continue
            ys, xs = np.nonzero(m)
            x0, y0 = int(xs.min()), int(ys.min())
            bbox = [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(category),
                                "segmentation": seg, "area": int(m.sum()), "bbox": bbox, "iscrowd": 0})  # fmt: skip
    categories = [{"id": i, "name": n, "supercategory": "object"} for i, n in enumerate(classes) if i > 0]
    return {"images": images, "annotations": annotations, "categories": categories}


def write(samples, classes: tuple[str, ...], out: Path, polygons: bool = False, tolerance: float = 0.5) -> str:
    """OUT/annotations.json and OUT/images/ (the images copied by the caller)."""
    coco = to_coco(samples, classes, polygons, tolerance)
    (out / "annotations.json").write_text(json.dumps(coco))
    return f"{len(coco['images'])} images, {len(coco['annotations'])} objects"
