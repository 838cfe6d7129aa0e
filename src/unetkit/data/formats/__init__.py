"""Label formats behind one seam: each format is one module with `sniff(path, doc)` (is this mine, by
content) and `read(path, doc, images, annotator) -> LabelSet`; writers `write(samples, classes, out)`.
A new format is one file plus an entry in READERS (and WRITERS)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from unetkit.data.formats import coco, cvat, labelme, labelstudio, voc, yolo
from unetkit.data.formats.labelset import LabelSet
from unetkit.data.imageio import DataError


@dataclass(frozen=True)
class Reader:
    title: str  # as a message names it
    kind: str  # json | xml | yaml | folder: what is parsed before sniffing
    module: object


READERS = {
    "coco": Reader("COCO JSON", "json", coco),
    "labelstudio": Reader("Label Studio JSON", "json", labelstudio),
    "labelme": Reader("LabelMe JSON", "json", labelme),
    "cvat": Reader("CVAT for images XML", "xml", cvat),
    "yolo": Reader("YOLO data.yaml", "yaml", yolo),
    "voc": Reader("Pascal VOC folder", "folder", voc),
    "yolo-folder": Reader("YOLO folder", "folder", yolo),
    "labelme-folder": Reader("LabelMe folder", "folder", labelme),
}
WRITERS = {"coco": coco, "yolo": yolo, "labelme": labelme, "voc": voc}
SUFFIX_KIND = {".json": "json", ".xml": "xml", ".yaml": "yaml", ".yml": "yaml"}


def is_label_source(path: Path) -> bool:
    """A file of a kind some reader parses, or a folder some folder reader recognises."""
    if path.is_file():
        return path.suffix.lower() in SUFFIX_KIND
    return path.is_dir() and any(r.module.sniff(path, None) for r in READERS.values() if r.kind == "folder")


def parse(path: Path, kind: str):
    """The parsed file a sniffer looks at: JSON, an XML root, a YAML mapping, or None for folders."""
    try:
        if kind == "json":
            return json.loads(path.read_text(encoding="utf-8"))
        if kind == "xml":
            from xml.etree import ElementTree

            return ElementTree.parse(path).getroot()
        if kind == "yaml":
            return yolo.load_yaml(path)
    except (ValueError, SyntaxError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid {kind.upper()} ({e}); re-export the file") from None
    return None


def read_labels(path: str | Path, images: str | Path | None = None, annotator: str = "latest") -> LabelSet:
    """The label set of a label file or folder, its format recognised by content."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found; give --data a folder or a label file (COCO, LabelMe, YOLO, VOC, CVAT, "
                        "Label Studio)")  # fmt: skip
    kind = "folder" if path.is_dir() else SUFFIX_KIND.get(path.suffix.lower())
    candidates = [r for r in READERS.values() if r.kind == kind]
    if not candidates:
        raise DataError(f"{path}: unetkit reads labels from .json, .xml and .yaml files and from folders; "
                        "convert it to one of the formats `unetkit data convert --help` lists")  # fmt: skip
    doc = parse(path, kind)
    for reader in candidates:
        if reader.module.sniff(path, doc):
            return reader.module.read(path, doc, Path(images) if images else None, annotator)
    tried = ", ".join(r.title for r in candidates)
    raise DataError(f"{path}: none of the label formats unetkit reads (tried {tried}); check the export's format")
