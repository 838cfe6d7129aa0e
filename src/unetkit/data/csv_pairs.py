"""A CSV of pairs (image,mask[,split]): mask files, or a label file's entries written FILE#ENTRY as a
run's splits.json names them, so one CSV can mix DUTS masks with COCO instances."""

from __future__ import annotations

import csv
from pathlib import Path

from unetkit.data.formats.source import label_entry
from unetkit.data.imageio import DataError
from unetkit.data.records import SPLITS, Pair, Problem


def read_csv_pairs(path: Path):
    """CSV with header image,mask[,split]; relative paths are relative to the CSV's folder."""
    if not path.is_file():
        raise DataError(f"{path}: CSV file not found")
    pairs, problems = [], []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        if not {"image", "mask"} <= cols:
            raise DataError(f"{path}: CSV needs a header with columns image,mask[,split]; found {sorted(cols)}")
        for i, row in enumerate(reader, start=2):
            split = (row.get("split") or "").strip() or None
            if split is not None and split not in SPLITS:
                problems.append(Problem(f"{path}:{i}", f"unknown split {split!r}", "use train, val or test"))
                continue
            img, mask = (path.parent / row["image"].strip()), (path.parent / row["mask"].strip())
            if "#" in row["mask"]:  # a label file's entry: FILE#ENTRY, as splits.json records them
                pair = _entry_pair(img if row["image"].strip() else None, mask, split, f"{path}:{i}")
                (pairs if isinstance(pair, Pair) else problems).append(pair)
            elif not img.is_file():
                problems.append(Problem(str(img), "image file missing", f"fix line {i} of {path.name}"))
            elif not mask.is_file():
                problems.append(Problem(str(mask), "mask file missing", f"fix line {i} of {path.name}"))
            else:
                pairs.append(Pair(img, mask, split))
    return pairs, problems


def _entry_pair(image: Path | None, ref: Path, split: str | None, where: str) -> Pair | Problem:
    """A CSV row naming a label file's entry; its image is the one the label file names (an image column,
    if filled, must agree)."""
    try:
        entry = label_entry(ref)
    except DataError as e:
        return Problem(where, str(e), "fix the row's mask entry")
    own = entry.labels.images[entry.index].image
    if image is not None and image.resolve() != own.resolve():
        return Problem(where, f"image {image} is not the image of {ref.name} ({own})", "leave the image column empty")
    return Pair(own, entry, split)
