"""How far a click model's view lets a mask go: the exact object mask sent through the round trip a
prediction takes (scaled so the image's longer side is the view size, as a soft map, then back to the
image's size, bilinear, threshold 0.5), scored against itself. An IoU below 0.90 here means no click
model at that view can reach the clicks-to-0.90 protocol's bar on that object, however well trained.

Objects: annotate_sim.py's isbi-cells (the first 100: 500-20,000 px cells in 512x512 slices) and its
camvid-cars, and GrabCut's 50 objects.

    python benchmarks/view_ceiling.py [--sizes 320,512]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from annotate_sim import SHARED, camvid_car_masks, isbi_cell_masks  # noqa: E402
from click_focus import grabcut_pairs  # noqa: E402
from common import header, write_section  # noqa: E402


def round_trip_iou(mask: np.ndarray, view: int) -> float:
    """IoU of `mask` with itself after the view's round trip (area down, bilinear up, > 0.5)."""
    h, w = mask.shape
    s = view / max(h, w)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    small = F.interpolate(m, size=size, mode="area") if s < 1 else F.interpolate(m, size=size, mode="bilinear")
    back = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy() > 0.5
    return float((back & mask).sum() / max((back | mask).sum(), 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="320,512")
    args = ap.parse_args()
    if not (SHARED / "isbi2012_em").is_dir():
        raise SystemExit(f"{SHARED} lacks isbi2012_em: the data lives in ../shared/data beside the repo")
    sets = {
        "isbi-cells (annotate_sim's first 100)": [m for _, _, m in itertools.islice(isbi_cell_masks(), 100)],
        "camvid-cars (annotate_sim's first 100)": [m for _, m in itertools.islice(camvid_car_masks(), 100)],
        "GrabCut (50)": [gt for _, gt, _ in grabcut_pairs()],
    }
    lines = [
        "## The view's ceiling: an exact mask after a prediction's round trip (cpu)",
        "",
        header("python benchmarks/view_ceiling.py " + " ".join(sys.argv[1:])),
        __doc__.split("\n\n")[0].replace("\n", " "),
        "",
        "| objects | view (longer side) | mean IoU | objects at IoU >= 0.90 | median object px |",
        "|---|---|---|---|---|",
    ]
    for name, masks in sets.items():
        for view in (int(v) for v in args.sizes.split(",")):
            ious = np.array([round_trip_iou(m, view) for m in masks])
            px = int(np.median([m.sum() for m in masks]))
            lines.append(f"| {name} | {view} | {ious.mean():.3f} | {(ious >= 0.9).sum()} of {len(ious)} | {px:,} |")
            print(lines[-1], flush=True)
    write_section("view-ceiling", "\n".join(lines))


if __name__ == "__main__":
    main()
