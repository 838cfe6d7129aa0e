"""The accepted annotations of a Label Studio project on disk, the backend's source of truth for
learning: STATE/images/task<ID><ext> (the image as Label Studio served it) and one 0/255 PNG per region,
STATE/masks/task<ID>_ann<ANNOTATION>_<k>.png. Every file is written to a temporary name and renamed, so a
crash leaves the old annotation or the new one; an update replaces the annotation's masks, a deletion
(which Label Studio names by annotation id) removes them."""

from __future__ import annotations

import io
import os
import re
import threading
from pathlib import Path

import numpy as np
from PIL import Image

NAME = re.compile(r"^task(\d+)_ann(\d+)_(\d+)$")


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _suffix(data: bytes) -> str:
    fmt = Image.open(io.BytesIO(data)).format or "PNG"
    return {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp", "GIF": ".gif"}.get(
        fmt, ".png"
    )


class AnnotationStore:
    def __init__(self, folder: Path) -> None:
        self.images, self.masks = folder / "images", folder / "masks"
        self.images.mkdir(parents=True, exist_ok=True)
        self.masks.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()

    def put(self, task: int, annotation: int, image: bytes, masks: list[np.ndarray]) -> int:
        """Keep an annotation's regions as masks, replacing what it had; returns how many."""
        with self.lock:
            stale = set(self.masks.glob(f"task*_ann{annotation}_*.png"))
            if masks and not any(self.images.glob(f"task{task}.*")):
                _write(self.images / f"task{task}{_suffix(image)}", image)
            for k, m in enumerate(masks):
                buf = io.BytesIO()
                Image.fromarray(np.asarray(m, bool).astype(np.uint8) * 255).save(buf, format="PNG")
                path = self.masks / f"task{task}_ann{annotation}_{k}.png"
                _write(path, buf.getvalue())
                stale.discard(path)
            for path in stale:
                path.unlink()
            return len(masks)

    def remove(self, annotation: int) -> int:
        """A deleted annotation leaves the training set; returns the masks removed."""
        with self.lock:
            gone = list(self.masks.glob(f"task*_ann{annotation}_*.png"))
            for path in gone:
                path.unlink()
            return len(gone)

    def pairs(self) -> list[tuple[Path, Path]]:
        """(image, mask) per kept region, in task and annotation order."""
        images = {p.stem: p for p in self.images.iterdir() if not p.name.startswith(".")}
        named = [(m, NAME.match(m.stem)) for m in self.masks.glob("task*_ann*_*.png")]
        out = []
        for mask, m in sorted((x for x in named if x[1]), key=lambda x: tuple(map(int, x[1].groups()))):
            image = images.get(f"task{m.group(1)}")
            if image is not None:
                out.append((image, mask))
        return out
