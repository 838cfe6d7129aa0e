"""A lever for time per click, measured and not adopted: from the second click on, re-predict only a
square window around the new click (at the view's scale, its edge blended into the previous map;
FocalClick's idea without its refiner) instead of the whole view, so the network sees fewer pixels.

Scored as `click_table.py` scores GrabCut (all 50 images, the 128 band ignored, RITM's clicker, 20
clicks, the shipped view size) with the full view and with each window; the pixel column is the mean of
the network's input over the clicks after the first, against the full view's.

    python benchmarks/click_focus.py [--model builtin:clicks] [--windows 160,224] [--feather 24]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import header, write_section  # noqa: E402

GRABCUT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "grabcut"


def window_box(h: int, w: int, y: float, x: float, side: float) -> tuple[int, int, int, int]:
    """A side x side box (image pixels) centred on (y, x), shifted inside the image (a constant network
    input size whatever the click's place); a side longer than the image keeps the whole of it."""
    out = []
    for c, limit in ((y, h), (x, w)):
        n = min(limit, int(round(side)))
        a = min(max(0, int(round(c - n / 2))), limit - n)
        out.append((a, a + n))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def feather(box, h: int, w: int, width: int) -> np.ndarray:
    """Weights of the new prediction in the box: 1 inside, falling to 0 over `width` pixels towards
    each box edge that lies inside the image (no seam where the old map takes over)."""
    y0, x0, y1, x1 = box
    ramps = []
    for lo, hi, limit in ((y0, y1, h), (x0, x1, w)):
        i = np.arange(hi - lo, dtype=np.float32)
        near_lo = i if lo > 0 else np.full_like(i, np.inf)
        near_hi = i[::-1] if hi < limit else np.full_like(i, np.inf)
        ramps.append(np.minimum(near_lo, near_hi))
    return np.clip(np.minimum(ramps[0][:, None], ramps[1][None, :]) / max(width, 1), 0, 1)


@dataclass
class FocusSession:
    """A click session that re-predicts only `side` view pixels around each click after the first."""

    predictor: object
    image: torch.Tensor
    side: int
    blend: int

    def __post_init__(self) -> None:
        self.clicks, self.pixels, self.windows = [], [], {}
        self.probs = np.zeros(self.image.shape[-2:], np.float32)

    def add(self, click):
        from unetkit.api import ClickPredictor

        p = self.predictor
        self.clicks.append(click)
        if len(self.clicks) == 1:
            self.probs = p.probs(self.image, self.clicks, self.probs)
            return self.probs
        _, h, w = self.image.shape
        box = window_box(h, w, click.y, click.x, self.side * max(h, w) / p.view_size)
        y0, x0, y1, x1 = box
        # the box's longer side at the whole view's scale: the same scale, on fewer pixels
        size = round(max(y1 - y0, x1 - x0) * p.view_size / max(h, w))
        if size not in self.windows:  # one predictor per window size: each keeps its resized view
            self.windows[size] = ClickPredictor(p.seg, view_size=size)
        window = self.windows[size]
        new = window.probs(self.image, self.clicks, self.probs, box)[y0:y1, x0:x1]
        a = feather(box, h, w, self.blend)
        self.probs = self.probs.copy()
        self.probs[y0:y1, x0:x1] = a * new + (1 - a) * self.probs[y0:y1, x0:x1]
        self.pixels.append(int(np.prod(window.net_size(box, False))))
        return self.probs


class FocusPredictor:
    """The predictor `simulate_clicks` drives, handing out focus sessions (side 0: the plain session)."""

    def __init__(self, predictor, side: int, blend: int) -> None:
        self.base, self.side, self.blend, self.sessions = predictor, side, blend, []
        self.threshold = predictor.threshold

    def session(self, image, zoom_in: bool = False):
        if not self.side:
            return self.base.session(image)
        self.sessions.append(FocusSession(self.base, self.base.seg.to_tensor(image), self.side, self.blend))
        return self.sessions[-1]


def grabcut_pairs():
    """(RGB image, object mask, ignore mask: the 128 band) of each GrabCut image."""
    for mask_path in sorted((GRABCUT / "masks").glob("*.png")):
        m = np.asarray(Image.open(mask_path).convert("L"))
        image = next(p for p in (GRABCUT / "images").glob(mask_path.stem + ".*"))
        yield np.asarray(Image.open(image).convert("RGB")), m == 255, m == 128


def score(predictor, side: int, blend: int) -> dict:
    from unetkit.api import simulate_clicks, summarize_clicks

    focus, t0 = FocusPredictor(predictor, side, blend), time.perf_counter()
    ious = np.stack([simulate_clicks(focus, image, gt, ignore, 20)[0] for image, gt, ignore in grabcut_pairs()])
    pixels = [n for s in focus.sessions for n in s.pixels]
    return {**summarize_clicks(ious, 20), "pixels": float(np.mean(pixels)) if pixels else None,
            "ms_per_click": (time.perf_counter() - t0) / ious.size * 1000}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin:clicks")
    ap.add_argument("--windows", default="160,224", help="window sides in view pixels")
    ap.add_argument("--feather", type=int, default=24, help="blend width in image pixels at the window's edge")
    args = ap.parse_args()
    if not GRABCUT.is_dir():
        raise SystemExit(f"{GRABCUT} not found: GrabCut lives in ../shared/data beside the repo")
    from unetkit.api import ClickPredictor, load_segmenter

    predictor = ClickPredictor(load_segmenter(args.model))
    full = score(predictor, 0, 0)
    shapes = [image.shape[:2] for image, _, _ in grabcut_pairs()]
    full_pixels = float(np.mean([np.prod([round(n * predictor.view_size / max(hw)) for n in hw]) for hw in shapes]))
    rows = [("whole view (shipped)", full, full_pixels)]
    for side in (int(s) for s in args.windows.split(",")):
        name = f"window {side}x{side}, edge blended over {args.feather} px"
        rows.append((name, score(predictor, side, args.feather), None))
        print(rows[-1], flush=True)
    lines = [
        "## A window around the click instead of the whole view (cpu, GrabCut)",
        "",
        header("python benchmarks/click_focus.py " + " ".join(sys.argv[1:])),
        __doc__.split("\n\n")[1].replace("\n", " ") + f" Model {args.model}, view {predictor.view_size}.",
        "",
        "| prediction after the first click | NoC@85 | NoC@90 | NoF@90 | IoU@3 | IoU@5 "
        "| network pixels (of the whole view) | ms/click |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r, px in rows:
        px = r["pixels"] if px is None else px
        ious = r["iou_at_clicks"]
        lines.append(f"| {name} | {r['noc85']:.2f} | {r['noc90']:.2f} | {r['nof90']} | {ious[2]:.3f} | {ious[4]:.3f} "
                     f"| {px:,.0f} ({px / full_pixels:.0%}) | {r['ms_per_click']:.0f} |")  # fmt: skip
    print("\n".join(lines))
    write_section("click-focus", "\n".join(lines))


if __name__ == "__main__":
    main()
