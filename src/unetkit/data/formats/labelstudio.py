"""Label Studio's JSON export: a list of tasks, each with its image under `data` and one or more
annotations (several annotators) of BrushLabels (Label Studio's own RLE of the RGBA brush layer) and
PolygonLabels (points in percent of the image); unrotated RectangleLabels count as boxes.

One annotation per task: the latest (by updated_at, then created_at, then id), or with
`--annotator` the one of that user (id or email); cancelled annotations never count. Images are found
by the name Label Studio gives them (uploads carry an 8-character prefix: `1a2b3c4d-photo.jpg`; local
files storage a `?d=` path): in `--images DIR`, an images/ folder beside the JSON, or beside it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from unetkit.data.formats.geometry import Polygons
from unetkit.data.formats.labelset import Instance, LabeledImage, LabelSet
from unetkit.data.imageio import IMAGE_EXTENSIONS, MAX_PIXELS, DataError

NAME = "labelstudio"
KINDS = ("brushlabels", "polygonlabels", "rectanglelabels")


def sniff(path: Path, doc) -> bool:
    return (isinstance(doc, list) and bool(doc) and isinstance(doc[0], dict) and "data" in doc[0]
            and ("annotations" in doc[0] or "completions" in doc[0]))  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Label Studio's RLE: a bit stream (most significant bit first): the value count (32 bits), the word
# size - 1 (5 bits), four run-length field sizes - 1 (4 bits each); then blocks of a flag bit, a
# field-size index (2 bits) and a length - 1: flag 1 = one value repeated, 0 = that many values.


def rle_decode(rle: list[int], count: int | None = None) -> np.ndarray:
    bits = np.unpackbits(np.asarray(rle, np.uint8))
    pos = 0

    def take(n: int) -> int:
        nonlocal pos
        if pos + n > bits.size:
            raise ValueError("the RLE ends early")
        v = int("".join("01"[b] for b in bits[pos : pos + n]) or "0", 2)
        pos += n
        return v

    num, word = take(32), take(5) + 1
    if count is not None and num != count:
        raise ValueError(f"it holds {num} values, the image needs {count}")
    sizes = [take(4) + 1 for _ in range(4)]
    out = np.zeros(num, np.uint32)
    i = 0
    while i < num:
        repeat = take(1)
        j = min(num, i + 1 + take(sizes[take(2)]))
        if repeat:
            out[i:j] = take(word)
        else:
            out[i:j] = [take(word) for _ in range(j - i)]
        i = j
    return out


def rle_encode(values: np.ndarray, word: int = 8, sizes: tuple[int, ...] = (3, 4, 8, 16)) -> list[int]:
    """Runs of equal values as repeat blocks (the shortest field that holds each run's length)."""
    v = np.asarray(values).ravel()
    bits = [format(v.size, "032b"), format(word - 1, "05b"), *(format(s - 1, "04b") for s in sizes)]
    starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
    for start, end in zip(starts.tolist(), [*starts[1:].tolist(), v.size], strict=True):
        while start < end:
            n = min(end - start, 2 ** sizes[-1])
            k = next(i for i, s in enumerate(sizes) if n - 1 < 2**s)
            bits.append("1" + format(k, "02b") + format(n - 1, f"0{sizes[k]}b") + format(int(v[start]), f"0{word}b"))
            start += n
    text = "".join(bits)
    text += "0" * (-len(text) % 8)
    return np.packbits(np.frombuffer(text.encode(), np.uint8) - 48).tolist()


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """A bool (h, w) mask as Label Studio's brush RLE (RGBA, 255 where the mask is)."""
    return rle_encode(np.repeat(np.asarray(mask, bool).ravel().astype(np.uint8) * 255, 4))


@dataclass(frozen=True)
class Brush:
    rle: tuple[int, ...]
    size: tuple[int, int]  # (h, w) the result declares
    entry: str

    def mask(self, h: int, w: int) -> np.ndarray:
        try:
            values = rle_decode(list(self.rle), self.size[0] * self.size[1] * 4)
        except ValueError as e:
            raise DataError(f"{self.entry}: its brush RLE does not decode ({e}); re-export the task") from None
        return values.reshape(*self.size, 4)[..., 3] >= 128


# ----------------------------------------------------------------------------------------------
# Tasks


def read(path: Path, doc: list, images: Path | None = None, annotator: str = "latest") -> LabelSet:
    chosen = [(t, _annotation(path, t, annotator)) for t in doc]
    names = sorted({n for _, a in chosen if a for r in a.get("result", []) if r.get("type") in KINDS
                    for n in r["value"].get(r["type"], [])})  # fmt: skip
    ids = {n: i for i, n in enumerate(names, start=1)}
    items = []
    for task, ann in chosen:
        entry = f"task {task.get('id')}"
        insts, size = _instances(path, entry, ann, ids) if ann else ([], None)
        items.append(LabeledImage(_image(path, task, images), size, insts, None, entry.replace(" ", "")))
    several = sum(len([a for a in t.get("annotations", []) if not a.get("was_cancelled")]) > 1 for t in doc)
    notes = [f"{several} tasks have several annotations: the {'latest' if annotator == 'latest' else annotator}'s "
             "used (--annotator ID|EMAIL picks one annotator)"] if several else []  # fmt: skip
    return LabelSet(NAME, path, ("background", *names), items, {}, notes)


def _annotation(path: Path, task: dict, annotator: str) -> dict | None:
    anns = [a for a in task.get("annotations", task.get("completions", [])) if not a.get("was_cancelled")]
    if annotator != "latest":
        anns = [a for a in anns if _who(a) & {annotator}]
    if not anns:
        return None
    return max(anns, key=lambda a: (a.get("updated_at") or "", a.get("created_at") or "", a.get("id") or 0))


def _who(ann: dict) -> set[str]:
    by = ann.get("completed_by")
    if isinstance(by, dict):
        return {str(by.get("id")), str(by.get("email"))}
    return {str(by)}


def _instances(path: Path, entry: str, ann: dict, ids: dict[str, int]):
    insts, size = [], None
    for k, r in enumerate(ann.get("result", [])):
        kind, value = r.get("type"), r.get("value", {})
        if kind not in KINDS or not value.get(kind):
            continue
        h, w = int(r.get("original_height") or 0), int(r.get("original_width") or 0)
        where = f"{path}: {entry} result {k} ({kind})"
        if h * w <= 0 or h * w > MAX_PIXELS:
            raise DataError(f"{where}: original size {w}x{h} is missing or over the pixel limit; re-export the task")
        if size and size != (h, w):
            raise DataError(f"{where}: sized {w}x{h}, another result of the task {size[1]}x{size[0]}; re-export it")
        size = (h, w)
        shape = _shape(where, kind, value, h, w)
        if shape is not None:
            insts.append(Instance(ids[value[kind][0]], shape))
    return insts, size


def _shape(where: str, kind: str, value: dict, h: int, w: int):
    if kind == "brushlabels":
        if value.get("format", "rle") != "rle" or not value.get("rle"):
            raise DataError(f"{where}: a brush without RLE; export with Label Studio's JSON export")
        return Brush(tuple(value["rle"]), (h, w), where)
    if kind == "rectanglelabels":
        if value.get("rotation"):
            return None
        x, y, bw, bh = (value[k] * s / 100 for k, s in (("x", w), ("y", h), ("width", w), ("height", h)))
        return Polygons(((x, y, x + bw, y, x + bw, y + bh, x, y + bh),))
    pts = value.get("points") or []
    if len(pts) < 3:
        raise DataError(f"{where}: a polygon with {len(pts)} points; it needs 3 or more: fix or delete it")
    return Polygons((tuple(v for x, y in pts for v in (x * w / 100, y * h / 100)),))


def _image(path: Path, task: dict, images: Path | None) -> Path:
    data = task.get("data", {})
    url = next((v for v in data.values() if isinstance(v, str) and Path(urlparse(v).path).suffix.lower()
                in IMAGE_EXTENSIONS or isinstance(v, str) and "?d=" in v), None)  # fmt: skip
    if url is None:
        raise DataError(f"{path}: task {task.get('id')} has no image in its data; export tasks with their images")
    parsed = urlparse(url)
    local = parse_qs(parsed.query).get("d", [None])[0]
    name = unquote(Path(parsed.path).name)
    names = [n for n in (local, name, re.sub(r"^[0-9a-f]{8}-", "", name)) if n]
    folders = [f for f in (images, path.parent / "images", path.parent) if f is not None]
    for folder in folders:
        for n in names:
            if (folder / n).is_file():
                return folder / n
    return folders[0] / names[-1]  # missing: the data check reports it by name


def result_masks(annotation: dict, where: str = "annotation") -> list[tuple[str, np.ndarray]]:
    """Each region of one annotation (brush, polygon, rectangle) as (its label, bool mask at the image's
    size): what the ML backend keeps of a submitted annotation."""
    out = []
    for k, r in enumerate(annotation.get("result", [])):
        kind, value = r.get("type"), r.get("value", {})
        if kind not in KINDS or not value.get(kind):
            continue
        h, w = int(r.get("original_height") or 0), int(r.get("original_width") or 0)
        if h * w <= 0 or h * w > MAX_PIXELS:
            raise DataError(f"{where} result {k}: original size {w}x{h} is missing or over the pixel limit")
        shape = _shape(f"{where} result {k} ({kind})", kind, value, h, w)
        if shape is not None:
            out.append((value[kind][0], shape.mask(h, w)))
    return out
