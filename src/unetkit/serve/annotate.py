"""`unetkit annotate DIR --model CKPT`: the page over a folder's images. Each image starts from the
model's automatic mask; clicks (click models) fix it; accept writes DIR/masks/<stem>.png atomically,
never replacing a mask without being asked (and then keeping the old one in DIR/masks/.backup/).
Images without a mask come first, the least confident automatic masks first. Requests name images
by their position in the server's list, never by path."""

from __future__ import annotations

import functools
import json
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

from unetkit import plots
from unetkit.data.imageio import IMAGE_EXTENSIONS
from unetkit.deploy.engines import load
from unetkit.errors import ConfigError, DataError
from unetkit.runtime import release_openmp_threads
from unetkit.serve.http import MAX_MASK_BYTES, UploadError, read_sized_png
from unetkit.serve.learning import STATE_DIR, LearnConfig, Learner, write_json
from unetkit.serve.routing import route_setter


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


@dataclass(frozen=True)
class LearnSpec:
    """What annotate's learning needs beyond the items: the folder, the model it was started with
    (version 1), the retrain settings, and how to load a model (the same engine and device)."""

    folder: Path
    initial_model: str
    config: LearnConfig
    engine: str = "torch"
    device: str = "auto"


def annotate_routes(items: list[Item], learn: LearnSpec | None = None, classes: list[str] | None = None):
    """The add-on `unetkit annotate` gives serve.app.create_app: the routes over the folder's items,
    with `learn` the retrains (serve/learning.py) that swap in better click models, and with `classes`
    (background first) a multi-class folder whose objects compose into a class-index mask."""

    def add_on(app, seg, limits) -> dict:
        names = list(classes or seg.meta.classes)
        flags = Flags(items[0].image.parent.parent / STATE_DIR / "flags.json")
        learner = None
        if learn is not None:
            swap = functools.partial(swap_model, app, items, learn)
            pairs = functools.partial(accepted_pairs, items, flags)
            base = functools.partial(load, learn.initial_model, learn.engine, learn.device, "auto", log=lambda m: None)
            route = route_setter(app.state.served, base)
            learner = Learner(learn.folder, learn.initial_model, learn.config, pairs, swap, route)
        app.state.learner = learner
        add_annotate_routes(app, Listing(items, flags), learner, len(names))
        colors = plots.legend_colors(len(names))
        return {"annotate": {"first": 0, "total": len(items), "learning": learner is not None, "classes": names,
                             "colors": colors}}  # fmt: skip

    return add_on


class Flags:
    """Images the user flagged (unsure, broken, for later): kept in DIR/.unetkit/flags.json, never
    trained on by the learning retrains."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.names = set(json.loads(path.read_text())) if path.is_file() else set()

    def set(self, name: str, flagged: bool) -> None:
        (self.names.add if flagged else self.names.discard)(name)
        write_json(self.path, sorted(self.names))


def accepted_pairs(items: list[Item], flags: Flags) -> list[tuple[Path, Path]]:
    return [(it.image, it.mask) for it in list(items) if it.mask.exists() and it.image.name not in flags.names]


def swap_model(app, items: list[Item], learn: LearnSpec, path: str) -> None:
    """Serve the model at `path` from now on, then re-rank the unlabelled images with it (in place, so
    the routes see the new order; a mask is sent with its image's name and lands on that image wherever
    the re-rank put it)."""
    try:
        seg = load(path, learn.engine, learn.device, "auto", log=lambda m: None)
    except ConfigError:  # an int8 graph of the new model that its own scoring refused: its fp32 runtime
        if not learn.engine.endswith("-int8"):
            raise
        seg = load(path, learn.engine.removesuffix("-int8"), learn.device, "auto", log=lambda m: None)
    app.state.served.seg = seg
    ranked = [Item(it.image, it.mask, 1.0 if it.mask.exists() else confidence(seg, it.image)) for it in list(items)]
    items[:] = sorted(ranked, key=lambda it: (it.mask.exists(), it.confidence, it.image.name))
    release_openmp_threads()  # this thread's team would slow the clicks' (runtime.release_openmp_threads)


class Listing:
    """The folder's images in the page's order (re-ranked in place by learning) and their flags."""

    def __init__(self, items: list[Item], flags: Flags) -> None:
        self.items, self.flags = items, flags

    def describe(self, i: int) -> dict:
        items = self.items
        return {
            "index": i,
            "name": items[i].image.name,
            "total": len(items),
            "done": sum(it.mask.exists() for it in items),
            "has_mask": items[i].mask.exists(),
            "flagged": items[i].image.name in self.flags.names,
            "confidence": round(items[i].confidence, 4),
            "previous": (i - 1) % len(items),
            "next": (i + 1) % len(items),
            "next_unlabelled": self.next_unlabelled(i),
        }

    def next_unlabelled(self, i: int) -> int | None:
        """Where the page goes after an accept: the first image of the current order without a mask
        (after a retrain re-ranks them: the one the model is least sure of), skipping flagged ones."""
        for j, it in enumerate(self.items):
            if j != i and not it.mask.exists() and it.image.name not in self.flags.names:
                return j
        return None

    def error(self, i: int) -> JSONResponse | None:
        """404 for an index out of range."""
        if not 0 <= i < len(self.items):
            return JSONResponse({"error": f"no image {i}: there are {len(self.items)}"}, 404)
        return None

    def locate(self, i: int, name: str) -> int | JSONResponse:
        """The image's current index: `i`, or where `name` is now when a retrain re-ranked the list while
        the page had it open (so the mask lands on the image it was drawn on); 404 when there is none."""
        if name and not (0 <= i < len(self.items) and self.items[i].image.name == name):
            found = [j for j, it in enumerate(self.items) if it.image.name == name]
            return found[0] if found else JSONResponse({"error": f"no image named {name}"}, 404)
        return self.error(i) or i


def add_annotate_routes(app, listing: Listing, learner: Learner | None, num_classes: int) -> None:
    items = listing.items

    @app.get("/v1/annotate/items")
    def list_items() -> list[dict]:
        return [listing.describe(i) for i in range(len(items))]

    @app.get("/v1/annotate/items/{index}")
    def item(index: int):
        return listing.error(index) or listing.describe(index)

    @app.get("/v1/annotate/items/{index}/image")
    def image(index: int):
        return listing.error(index) or FileResponse(items[index].image)

    @app.get("/v1/annotate/learning")
    def learning():
        return learner.status() if learner else {"version": 1, "learning": False}

    @app.post("/v1/annotate/items/{index}/flag")
    def flag(index: int, flagged: Annotated[bool, Form()] = True, name: Annotated[str, Form()] = ""):
        if isinstance(index := listing.locate(index, name), JSONResponse):
            return index
        listing.flags.set(items[index].image.name, flagged)
        return listing.describe(index)

    @app.post("/v1/annotate/items/{index}/mask")
    async def accept(
        index: int,
        mask: Annotated[UploadFile, File()],
        overwrite: Annotated[bool, Form()] = False,
        name: Annotated[str, Form()] = "",
    ):
        if isinstance(index := listing.locate(index, name), JSONResponse):
            return index
        it = items[index]
        with Image.open(it.image) as img:
            size = img.size
        try:
            array = read_sized_png(await mask.read(MAX_MASK_BYTES + 1), *size, "mask")
        except UploadError as e:
            return JSONResponse({"error": str(e)}, e.status)
        written = write_mask(it, array, num_classes == 2, overwrite)
        if written is None:
            return JSONResponse({"error": f"{it.mask} exists; send overwrite=true to replace it"}, 409)
        print(f"annotate: wrote {written}", file=sys.stderr)
        retraining = learner.accepted() if learner else False
        return {"written": str(written), "retrain_started": retraining, **listing.describe(index)}
