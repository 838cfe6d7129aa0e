"""Shapes to pixels and pixels to shapes: polygons and COCO RLE rasterised with pycocotools (COCO's own
code, the reference every COCO user's masks come from), and polygons traced back from masks.

Tracing follows pixel edges, so before simplification a traced polygon rasterises back to exactly its
mask; Douglas-Peucker then drops vertices that stay within `tolerance` pixels of the traced outline
(default 0.5: a vertex moves less than half a pixel). Holes are kept: each hole's ring is joined to
the outer ring by a zero-width cut, which COCO's rasteriser (and an even-odd fill) leaves empty, since
formats such as YOLO and LabelMe have one point list per object and no holes of their own."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TOLERANCE = 0.5  # pixels: how far a simplified polygon may stray from the traced pixel outline


def _coco_mask():
    import pycocotools.mask as coco_mask  # a core dependency; imported here to keep `import unetkit` quick

    return coco_mask


@dataclass(frozen=True)
class Polygons:
    """One object as one or more polygons (flat x0, y0, x1, y1, ... in pixels, corner convention);
    several are unioned, as COCO does."""

    rings: tuple[tuple[float, ...], ...]

    def mask(self, h: int, w: int) -> np.ndarray:
        """pycocotools' pixels exactly; a small object is rasterised in its box only (most COCO objects
        cover under 1% of their picture, and decoding a whole-picture RLE per object was the cost)."""
        cm = _coco_mask()
        box, rings = _box_rings(self.rings, h, w)
        y0, x0, y1, x1 = box or (0, 0, h, w)
        rles = cm.frPyObjects(rings or [list(r) for r in self.rings], y1 - y0, x1 - x0)
        drawn = cm.decode(rles[0] if len(rles) == 1 else cm.merge(rles)).view(bool)  # 0/1 bytes: no copy
        if box is None:
            return drawn
        out = np.zeros((h, w), bool)
        out[y0:y1, x0:x1] = drawn
        return out

    def outside(self, h: int, w: int) -> bool:
        """Whether a point lies outside the image (the rasteriser clips it)."""
        a = np.concatenate([np.asarray(r, float) for r in self.rings])
        return bool((a[0::2] < 0).any() or (a[0::2] > w).any() or (a[1::2] < 0).any() or (a[1::2] > h).any())


@dataclass(frozen=True)
class CocoRle:
    """COCO RLE: compressed (counts a string) or uncompressed (counts a list)."""

    size: tuple[int, int]  # (h, w)
    counts: str | tuple[int, ...]

    def mask(self, h: int, w: int) -> np.ndarray:
        cm = _coco_mask()
        if isinstance(self.counts, str):
            rle = {"size": list(self.size), "counts": self.counts.encode()}
        else:
            rle = cm.frPyObjects({"size": list(self.size), "counts": list(self.counts)}, *self.size)
        return cm.decode(rle).view(bool)


def _box_rings(rings, h: int, w: int, margin: int = 2):
    """(box, rings moved into it) for rasterising a polygon inside its box, or (None, None) where the box
    is most of the image. pycocotools first maps each coordinate to the integer (int)(5 * v + 0.5); the
    moved rings are chosen so that it maps them to exactly those integers less 5 * the box's corner
    (shifting the floats themselves moved 1-20 pixels of 454 of coco320's 2,643 objects, at rounding
    ties), and the box keeps `margin` pixels around the polygon except where it meets the image's edge,
    as the image clips it."""
    xs = [v for r in rings for v in r[0::2]]
    ys = [v for r in rings for v in r[1::2]]
    x0, y0 = max(0, math.floor(min(xs)) - margin), max(0, math.floor(min(ys)) - margin)
    x1, y1 = min(w, math.ceil(max(xs)) + margin), min(h, math.ceil(max(ys)) + margin)
    if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) * 2 > h * w:
        return None, None
    moved = []  # plain floats: per coordinate, numpy's call overhead cost more than the arithmetic
    for r in rings:
        flat = [0.0] * len(r)
        flat[0::2] = [_moved(v, 5 * x0) for v in r[0::2]]
        flat[1::2] = [_moved(v, 5 * y0) for v in r[1::2]]
        moved.append(flat)
    return (y0, x0, y1, x1), moved


def _moved(v: float, offset: int) -> float:
    """A coordinate that pycocotools' (int)(5 * v + 0.5) maps to that of `v` less `offset` (C's cast
    truncates toward zero, as math.trunc does; the same double arithmetic in both)."""
    n = math.trunc(5.0 * v + 0.5) - offset
    return (n + 0.1) / 5 if n >= 0 else (n - 0.9) / 5


def rle_encode(mask: np.ndarray) -> dict:
    """A bool (h, w) mask as COCO's compressed RLE dict (counts a str, as COCO JSON holds it)."""
    rle = _coco_mask().encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode()}


# ----------------------------------------------------------------------------------------------
# Pixels to polygons


def trace(mask: np.ndarray, tolerance: float = TOLERANCE) -> list[list[float]]:
    """Polygons (flat x, y lists along pixel corners) whose union, rasterised, is `mask`: one per
    8-connected part, each with its holes joined in; vertices simplified within `tolerance`."""
    loops = _loops(np.asarray(mask, bool))
    outers = [lp for lp in loops if _signed_area(lp) > 0]
    holes = [lp for lp in loops if _signed_area(lp) < 0]
    rings = {i: lp for i, lp in enumerate(outers)}
    for hole in holes:
        point = (hole[0] + hole[1]) / 2 + 0.25 * _inward(hole)  # just outside the hole, on the object
        owners = [i for i, lp in enumerate(outers) if _inside(point, lp)]
        if owners:
            owner = min(owners, key=lambda i: _signed_area(outers[i]))  # the innermost
            rings[owner] = _bridge(rings[owner], hole)
    out = []
    for ring in rings.values():
        simple = simplify(ring, tolerance)
        if len(simple) >= 3:
            out.append(simple.astype(float).ravel().tolist())
    return out


def _loops(m: np.ndarray) -> list[np.ndarray]:
    """Closed rings of pixel corners around the mask's pixels, clockwise on screen (y down) around
    objects and anticlockwise around holes; diagonal neighbours stay in one ring (8-connected)."""
    p = np.pad(m, 1)
    ys, xs = np.nonzero(p)
    sides = (  # (neighbour offset dy, dx), edge start corner, edge end corner (x, y offsets)
        ((-1, 0), (0, 0), (1, 0)),  # top edge, going right
        ((0, 1), (1, 0), (1, 1)),  # right edge, going down
        ((1, 0), (1, 1), (0, 1)),  # bottom edge, going left
        ((0, -1), (0, 1), (0, 0)),  # left edge, going up
    )
    nxt: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for (dy, dx), (sx, sy), (ex, ey) in sides:
        keep = ~p[ys + dy, xs + dx]
        for x, y in zip(xs[keep].tolist(), ys[keep].tolist(), strict=True):
            nxt.setdefault((x + sx, y + sy), []).append((x + ex, y + ey))
    loops = []
    while nxt:
        start = next(iter(nxt))
        ring, here, heading = [start], start, None
        while True:
            outs = nxt[here]
            if len(outs) == 1 or heading is None:
                step = outs.pop(0)
            else:  # a saddle: turn so that diagonal object pixels stay joined (cross product -1)
                step = next((o for o in outs if heading[0] * (o[1] - here[1]) - heading[1] * (o[0] - here[0]) < 0),
                            outs[0])  # fmt: skip
                outs.remove(step)
            if not outs:
                del nxt[here]
            heading, here = (step[0] - here[0], step[1] - here[1]), step
            if here == start and (start not in nxt):
                break
            ring.append(here)
        loops.append(np.asarray(ring, float) - 1)  # back to image coordinates
    return loops


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _inward(ring: np.ndarray) -> np.ndarray:
    """A unit step from the ring's first edge into the region it bounds on its right (screen coords)."""
    d = ring[1] - ring[0]
    return np.array([-d[1], d[0]]) / max(1e-9, float(np.hypot(*d)))


def _inside(point: np.ndarray, ring: np.ndarray) -> bool:
    """Even-odd point-in-polygon test."""
    x, y = point
    x0, y0 = ring[:, 0], ring[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    xs = x0 + (y - y0) * (x1 - x0) / np.where(y1 == y0, 1, y1 - y0)
    return bool(np.count_nonzero(crosses & (x < xs)) % 2)


def _bridge(outer: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """One ring: the outer ring to its vertex nearest the hole, around the hole, and back."""
    d = ((outer[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(np.argmin(d), d.shape)
    around = np.concatenate([hole[j:], hole[: j + 1]])
    return np.concatenate([outer[: i + 1], around, outer[i:]])


def simplify(ring: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker on a closed ring: collinear corners always go; others within `tolerance`."""
    keep = np.zeros(len(ring), bool)
    keep[0] = True
    far = int(np.argmax(((ring - ring[0]) ** 2).sum(1)))
    keep[far] = True
    stack = [(0, far), (far, len(ring))]
    closed = np.concatenate([ring, ring[:1]])
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        seg = closed[a + 1 : b]
        p, q = closed[a], closed[b]
        d = q - p
        n = float(np.hypot(*d))
        dist = np.abs(d[0] * (seg[:, 1] - p[1]) - d[1] * (seg[:, 0] - p[0])) / n if n else np.hypot(*(seg - p).T)
        k = int(np.argmax(dist))
        if dist[k] > max(tolerance, 1e-9):
            keep[a + 1 + k] = True
            stack += [(a, a + 1 + k), (a + 1 + k, b)]
    return ring[keep]
