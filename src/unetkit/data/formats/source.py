"""Which label file (or label tool's folder) a data config points at, read once per file version."""

from __future__ import annotations

import functools
from pathlib import Path

from unetkit.config import DataConfig
from unetkit.data.formats import is_label_source, read_labels
from unetkit.data.formats.labelset import MODES, LabelSet
from unetkit.data.formats.pairs import LabelMask, label_pairs
from unetkit.data.imageio import DataError, file_stamp

SPLIT_NAMES = ("train", "val", "test")


def unetkit_layout(root: Path) -> bool:
    return (
        (root / "images").is_dir()
        and (root / "masks").is_dir()
        or any((root / s / "images").is_dir() for s in SPLIT_NAMES)
    )


def label_source(cfg: DataConfig) -> LabelSet | None:
    """The label set `cfg.root` holds when it is a label file or a label tool's folder, else None."""
    root = Path(cfg.root or "")
    if cfg.csv or not cfg.root or (root.is_dir() and unetkit_layout(root)):
        return None
    if root.is_file() or is_label_source(root):
        return _read_labels(str(root.resolve()), file_stamp(root), cfg.images, cfg.annotator)
    return None


@functools.lru_cache(maxsize=4)
def _read_labels(path: str, stamp: tuple, images: str | None, annotator: str) -> LabelSet:
    """Parsed once per file version: find_pairs runs several times per command, and every LabelMask
    shares this one set (keyed by the file's size and mtime, so an edited file is read again)."""
    return read_labels(path, images, annotator)


def label_mode(cfg: DataConfig) -> str:
    return "semantic" if cfg.labels == "auto" else cfg.labels


def label_entry(ref: str | Path) -> LabelMask:
    """`FILE#ENTRY` -> that entry of a label file, the way recorded splits name one (e.g.
    `annotations.json#imageid9/instances/3`): how a CSV row mixes a label file's objects with mask files."""
    file, _, fragment = str(ref).partition("#")
    path = Path(file)
    if not path.is_file():
        raise DataError(f"{path}: label file not found (named by {ref})")
    parts = fragment.split("/")
    mode = parts[-2] if len(parts) >= 3 and parts[-2] == "instances" else parts[-1]
    if mode not in MODES:
        raise DataError(f"{ref}: the entry must end in /semantic, /binary or /instances/K (as splits.json records)")
    entry = _entries(str(path.resolve()), file_stamp(path), mode).get(fragment)
    if entry is None:
        raise DataError(f"{ref}: no such entry in {path.name}; take entries from a run's splits.json")
    return entry


@functools.lru_cache(maxsize=8)
def _entries(path: str, stamp: tuple, mode: str) -> dict[str, LabelMask]:
    labels = _read_labels(path, stamp, None, "latest")
    return {p.mask.fragment: p.mask for p in label_pairs(labels, mode)}
