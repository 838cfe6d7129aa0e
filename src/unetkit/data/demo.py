"""A procedurally generated segmentation dataset, so `unetkit train` works on a fresh machine.

Textured backgrounds, several shapes and colours that occlude each other, thin distractor
strokes and noise; masks are exact (drawn, never resampled). Deterministic for a given seed.
Binary: every shape is foreground. Multi-class: classes by shape (ellipse, rectangle, triangle).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

MULTICLASS_NAMES = ("background", "ellipse", "rectangle", "triangle")


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    coarse = rng.uniform(0.15, 0.75, size=(4, 4, 3)).astype(np.float32)
    base = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    freq = rng.uniform(0.05, 0.3)
    angle = rng.uniform(0, np.pi)
    stripes = np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 6.3))
    base = base / 255 + 0.08 * stripes[..., None] * rng.uniform(0.3, 1.0, size=3)
    return base


def _shape_polygon(kind: str, rng: np.random.Generator, h: int, w: int):
    s = min(h, w)
    cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
    rx, ry = rng.uniform(0.08, 0.22) * s, rng.uniform(0.08, 0.22) * s
    if kind == "ellipse":
        return "ellipse", [cx - rx, cy - ry, cx + rx, cy + ry]
    if kind == "rectangle":
        a = rng.uniform(0, np.pi / 2)
        corners = [(-rx, -ry), (rx, -ry), (rx, ry), (-rx, ry)]
    else:
        a = rng.uniform(0, 2 * np.pi)
        corners = [(0, -ry * 1.2), (rx * 1.1, ry * 0.8), (-rx * 1.1, ry * 0.8)]
    pts = [(cx + x * np.cos(a) - y * np.sin(a), cy + x * np.sin(a) + y * np.cos(a)) for x, y in corners]
    return "polygon", pts


def make_sample(
    rng: np.random.Generator, size: tuple[int, int] = (128, 128), multiclass: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 (H, W, 3), mask uint8 (H, W)) pair. Binary masks are 0/255."""
    h, w = size
    image = _background(rng, h, w)
    labels = np.zeros((h, w), np.uint8)
    kinds = MULTICLASS_NAMES[1:]
    for _ in range(rng.integers(1, 5)):
        k = int(rng.integers(0, 3))
        how, geom = _shape_polygon(kinds[k], rng, h, w)
        canvas = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(canvas)
        (draw.ellipse if how == "ellipse" else draw.polygon)(geom, fill=1)
        region = np.asarray(canvas, bool)
        colour = rng.uniform(0, 1, size=3)
        colour[rng.integers(0, 3)] = rng.uniform(0.8, 1.0)  # saturated, so it differs from the background
        shade = 1 + 0.15 * np.linspace(-1, 1, w)[None, :] * rng.choice([-1, 1])
        image[region] = np.broadcast_to(colour[None, None, :] * shade[..., None], image.shape)[region]
        labels[region] = k + 1
    # Thin distractor strokes: background class, drawn over shapes (occluding them).
    strokes = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(strokes)
    for _ in range(rng.integers(0, 3)):
        pts = [tuple(rng.uniform(0, 1, 2) * (w, h)) for _ in range(2)]
        draw.line(pts, fill=1, width=int(rng.integers(1, 3)))
    stroke = np.asarray(strokes, bool)
    image[stroke] = rng.uniform(0.2, 0.6)
    labels[stroke] = 0
    image = image + rng.normal(0, 0.03, size=image.shape)
    pic = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
    mask = labels if multiclass else (labels > 0).astype(np.uint8) * 255
    return np.asarray(pic), mask


def write_demo(
    out: str | Path,
    num_images: int = 240,
    size: tuple[int, int] = (128, 128),
    multiclass: bool = False,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> Path:
    """Write OUT/{train,val,test}/{images,masks}/demo_NNNN.png; returns OUT."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    n_train = round(num_images * fractions[0])
    n_val = round(num_images * fractions[1])
    for i in range(num_images):
        split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
        image, mask = make_sample(rng, size, multiclass)
        for sub, arr in (("images", image), ("masks", mask)):
            folder = out / split / sub
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(folder / f"demo_{i:04d}.png")
    return out
