"""Leaving `unetkit annotate` with the labels: the labelled pairs of DIR (DIR/images + DIR/masks) as COCO
instances (a JSON naming DIR/images' files), a YOLO, LabelMe or VOC folder (formats/), or as a unetkit
CSV with a recorded split (image,mask,split: the seeded 70/15/15 split `unetkit train` makes, so
`train --data OUT.csv` trains on exactly it)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from unetkit.data.convert import mask_sample, write_samples
from unetkit.data.formats.coco import to_coco
from unetkit.data.imageio import MaskSpec
from unetkit.data.splits import Pair, pair_folder, split_pairs
from unetkit.errors import DataError

FORMATS = ("coco", "unetkit", "yolo", "labelme", "voc")


def labelled_pairs(folder: Path) -> list[Pair]:
    if not (folder / "images").is_dir():
        raise DataError(f"{folder}: no images/ folder; export reads DIR/images and DIR/masks")
    pairs, _ = pair_folder(folder / "images", folder / "masks")  # images without a mask are not labels yet
    if not pairs:
        raise DataError(f"{folder / 'masks'}: no masks yet; accept some in `unetkit annotate {folder}` first")
    return pairs


def mask_classes(pairs: list[Pair], names: list[str] | None) -> tuple[list[str], bool]:
    """(class names with background first, binary?) from the masks' values: 0/255 masks are binary."""
    values = set()
    for p in pairs:
        values |= set(np.unique(np.asarray(Image.open(p.mask))).tolist())
    binary = values <= {0, 255}
    count = 2 if binary else int(max(values)) + 1
    if names and len(names) != count:
        raise DataError(f"--classes names {len(names)} classes but the masks hold {count} (values {sorted(values)})")
    return names or (["background", "foreground"] if binary else [f"class_{i}" for i in range(count)]), binary


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def export_labels(folder: Path, fmt: str, out: Path, names: list[str] | None = None, seed: int = 0) -> str:
    """Write the labels of `folder` to `out` in `fmt`; returns a one-line summary."""
    if fmt not in FORMATS:
        raise DataError(f"--export {fmt}: use {' | '.join(FORMATS)}")
    pairs = labelled_pairs(folder)
    if fmt != "unetkit":
        classes, binary = mask_classes(pairs, names)
        spec = MaskSpec("binary", 2) if binary else MaskSpec("index", len(classes))
        samples = [mask_sample(p, spec) for p in pairs]
    if fmt in ("yolo", "labelme", "voc"):  # a folder in that tool's layout, images copied
        return write_samples(samples, tuple(classes), out, fmt)
    if fmt == "coco":
        coco = to_coco(samples, tuple(classes))
        write_atomic(out, json.dumps(coco))
        return f"wrote {out}: {len(coco['images'])} images, {len(coco['annotations'])} annotations, " + (
            "categories " + ", ".join(c["name"] for c in coco["categories"])
        )
    rows = [(p.image.resolve(), p.mask.resolve(), split) for split, ps in split_pairs(pairs, seed=seed).items()
            for p in ps]  # fmt: skip
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([("image", "mask", "split"), *rows])
    write_atomic(out, buf.getvalue())
    counts = {s: sum(r[2] == s for r in rows) for s in ("train", "val", "test")}
    return f"wrote {out}: " + ", ".join(f"{s} {n}" for s, n in counts.items()) + f" (train with --data {out})"
