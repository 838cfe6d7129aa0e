"""Clicks and the field's evaluation protocol (RITM: isegm/inference/clicker.py and utils.py).

A click is a point in image coordinates, positive (on the object) or negative (on a mistake). The
network sees clicks as two disk maps rasterised at its own input resolution. The evaluation clicker
places each next click at the centre of the largest remaining error, exactly as RITM does."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

RADIUS = 5  # px at the network's input resolution
MAX_CLICKS = 20


@dataclass(frozen=True)
class Click:
    y: float
    x: float
    positive: bool

    def to_dict(self) -> dict:
        return {"y": self.y, "x": self.x, "positive": self.positive}

    @classmethod
    def from_dict(cls, d: dict) -> Click:
        return cls(float(d["y"]), float(d["x"]), bool(d["positive"]))


@dataclass(frozen=True)
class View:
    """How image coordinates map onto the network's input: the box (y0, x0, y1, x1) of the image that
    is shown, resized to (h, w). The identity view shows the whole image at its own size."""

    box: tuple[int, int, int, int]
    size: tuple[int, int]

    @classmethod
    def whole(cls, h: int, w: int, size: tuple[int, int] | None = None) -> View:
        return cls((0, 0, h, w), size or (h, w))

    def to_net(self, y: float, x: float) -> tuple[float, float]:
        y0, x0, y1, x1 = self.box
        return (y - y0 + 0.5) * self.size[0] / (y1 - y0) - 0.5, (x - x0 + 0.5) * self.size[1] / (x1 - x0) - 0.5

    def contains(self, click: Click) -> bool:
        y0, x0, y1, x1 = self.box
        return y0 <= click.y < y1 and x0 <= click.x < x1


def click_maps(clicks: list[Click], view: View, radius: float = RADIUS) -> torch.Tensor:
    """(2, h, w) float32: 1 inside a disk of `radius` network pixels around each positive / negative click.
    Drawn with numpy, each disk in its bounding box only: torch ran its ops on the whole map threaded,
    several times slower for a page's clicks, and slower still beside an engine's own threads."""
    h, w = view.size
    maps = np.zeros((2, h, w), np.float32)
    for c in clicks:
        cy, cx = view.to_net(c.y, c.x)
        y0, y1 = max(0, math.floor(cy - radius)), min(h, math.ceil(cy + radius) + 1)
        x0, x1 = max(0, math.floor(cx - radius)), min(w, math.ceil(cx + radius) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        ys = (np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)) ** 2
        xs = (np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)) ** 2
        box = maps[0 if c.positive else 1, y0:y1, x0:x1]
        np.maximum(box, ys + xs <= np.float32(radius) ** 2, out=box)
    return torch.from_numpy(maps)


def error_distances(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None):
    """Exact Euclidean distance transforms of the false-negative and false-positive regions, with the
    image border counting as a boundary (the maps are zero-padded by one pixel, as in RITM)."""
    from scipy import ndimage  # here, not at the top: only the commands that need it pay its import

    valid = np.ones_like(gt, bool) if ignore is None else ~ignore
    fn = gt & ~pred & valid
    fp = ~gt & pred & valid
    fn_dt = ndimage.distance_transform_edt(np.pad(fn, 1))[1:-1, 1:-1]
    fp_dt = ndimage.distance_transform_edt(np.pad(fp, 1))[1:-1, 1:-1]
    return fn_dt, fp_dt


def next_click(
    pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None, clicked: np.ndarray | None = None
) -> Click | None:
    """RITM's evaluation clicker: positive if the largest false-negative distance exceeds the largest
    false-positive one (ties: negative), on the first pixel in raster order at that distance. Pixels
    clicked before are not clicked again. None when there is no error left."""
    fn_dt, fp_dt = error_distances(pred.astype(bool), gt.astype(bool), ignore)
    if clicked is not None:
        fn_dt, fp_dt = fn_dt * ~clicked, fp_dt * ~clicked
    fn_max, fp_max = fn_dt.max(), fp_dt.max()
    if fn_max == 0 and fp_max == 0:
        return None
    positive = bool(fn_max > fp_max)
    dt = fn_dt if positive else fp_dt
    y, x = np.unravel_index(int(np.argmax(dt)), dt.shape)  # argmax: the first maximum in raster order
    return Click(int(y), int(x), positive)


def iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Foreground IoU with ignored pixels left out (RITM's get_iou); 1.0 when both are empty."""
    valid = np.ones_like(gt, bool) if ignore is None else ~ignore
    pred, gt = pred.astype(bool) & valid, gt.astype(bool) & valid
    union = (pred | gt).sum()
    return float((pred & gt).sum() / union) if union else 1.0


def clicks_to_reach(ious: list[float] | np.ndarray, threshold: float, max_clicks: int = MAX_CLICKS) -> int:
    """NoC for one image: the first click (1-based) with IoU >= threshold, or max_clicks if none."""
    reached = np.asarray(ious[:max_clicks]) >= threshold
    return int(np.argmax(reached)) + 1 if reached.any() else max_clicks


def sample_click(error: np.ndarray, rng: np.random.Generator, positive: bool) -> Click | None:
    """Training's corrective click: a random pixel where the error's distance transform exceeds half
    its maximum (RITM's iterative training), so clicks land inside errors, not on their edges."""
    from scipy import ndimage  # here, not at the top: only the commands that need it pay its import

    dt = ndimage.distance_transform_edt(np.pad(error, 1))[1:-1, 1:-1]
    peak = dt.max()
    if peak == 0:
        return None
    ys, xs = np.nonzero(dt > peak / 2) if peak > 1 else np.nonzero(dt >= peak)
    i = rng.integers(len(ys))
    return Click(int(ys[i]), int(xs[i]), positive)
