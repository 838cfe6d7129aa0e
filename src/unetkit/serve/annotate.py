"""`unetkit annotate DIR --model CKPT`: the page over a folder's images. Each image starts from the
model's automatic mask; clicks (click models) fix it; accept writes DIR/masks/<stem>.png atomically,
never replacing a mask without being asked (and then keeping the old one in DIR/masks/.backup/).
Images without a mask come first, the least confident automatic masks first. Requests name images
by their position in the server's list, never by path."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import File, Form, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image
from tqdm import tqdm

from unetkit.data.imageio import IMAGE_EXTENSIONS
from unetkit.errors import DataError
from unetkit.serve.http import MAX_MASK_BYTES, UploadError, read_sized_png


@dataclass
class Item:
    image: Path
    mask: Path
    confidence: float  # mean |2p - 1| of the automatic prediction: 0 = unsure everywhere, 1 = sure


def confidence(seg, path: Path) -> float:
    probs = seg.predict_proba(path)
    if probs.ndim == 3:  # multi-class: the top class's probability, scaled like the binary case
        return float(np.mean(2 * probs.max(0) - 1))
    return float(np.mean(np.abs(2 * probs - 1)))


def scan(folder: Path, seg, progress: bool = True) -> list[Item]:
    """The folder's images, unlabelled ones first (least confident first), then labelled ones."""
    images_dir = folder / "images"
    if not images_dir.is_dir():
        raise DataError(f"{folder}: no images/ folder; annotate DIR expects DIR/images/ (masks go to DIR/masks/)")
    paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise DataError(f"{images_dir}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    items = []
    for p in tqdm(paths, desc="automatic masks", disable=not progress, unit="img", file=sys.stderr):
        mask = folder / "masks" / f"{p.stem}.png"
        items.append(Item(p, mask, 1.0 if mask.exists() else confidence(seg, p)))
    return sorted(items, key=lambda it: (it.mask.exists(), it.confidence, it.image.name))


def write_mask(item: Item, mask: np.ndarray, binary: bool, overwrite: bool) -> Path | None:
    """Atomic write of DIR/masks/<stem>.png (0/255 for binary models, class indices otherwise). An
    existing mask is replaced only with `overwrite`, after a copy to masks/.backup/; else None."""
    if item.mask.exists() and not overwrite:
        return None
    item.mask.parent.mkdir(parents=True, exist_ok=True)
    if item.mask.exists():
        backup = item.mask.parent / ".backup" / f"{item.mask.stem}-{time.strftime('%Y%m%d-%H%M%S')}.png"
        backup.parent.mkdir(exist_ok=True)
        os.replace(item.mask, backup)
    values = (mask > 0).astype(np.uint8) * 255 if binary else mask.astype(np.uint8)
    tmp = item.mask.with_name(f".{item.mask.name}.{os.getpid()}.tmp")
    Image.fromarray(values).save(tmp, format="PNG")
    os.replace(tmp, item.mask)
    return item.mask


def annotate_routes(items: list[Item]):
    """The add-on `unetkit annotate` gives serve.app.create_app: the routes over the folder's items."""

    def add_on(app, seg, limits) -> dict:
        add_annotate_routes(app, seg, items)
        return {"annotate": {"first": 0, "total": len(items)}}

    return add_on


def add_annotate_routes(app, seg, items: list[Item]) -> None:
    def describe(i: int) -> dict:
        return {
            "index": i,
            "name": items[i].image.name,
            "total": len(items),
            "done": sum(it.mask.exists() for it in items),
            "has_mask": items[i].mask.exists(),
            "confidence": round(items[i].confidence, 4),
            "previous": (i - 1) % len(items),
            "next": (i + 1) % len(items),
        }

    def missing(i: int) -> JSONResponse | None:
        ok = 0 <= i < len(items)
        return None if ok else JSONResponse({"error": f"no image {i}: there are {len(items)}"}, 404)

    @app.get("/v1/annotate/items")
    def list_items() -> list[dict]:
        return [describe(i) for i in range(len(items))]

    @app.get("/v1/annotate/items/{index}")
    def item(index: int):
        return missing(index) or describe(index)

    @app.get("/v1/annotate/items/{index}/image")
    def image(index: int):
        return missing(index) or FileResponse(items[index].image)

    @app.post("/v1/annotate/items/{index}/mask")
    async def accept(index: int, mask: Annotated[UploadFile, File()], overwrite: Annotated[bool, Form()] = False):
        if (err := missing(index)) is not None:
            return err
        it = items[index]
        with Image.open(it.image) as img:
            size = img.size
        try:
            array = read_sized_png(await mask.read(MAX_MASK_BYTES + 1), *size, "mask")
        except UploadError as e:
            return JSONResponse({"error": str(e)}, e.status)
        written = write_mask(it, array, seg.meta.binary, overwrite)
        if written is None:
            return JSONResponse({"error": f"{it.mask} exists; send overwrite=true to replace it"}, 409)
        print(f"annotate: wrote {written}", file=sys.stderr)
        return {"written": str(written), **describe(index)}
