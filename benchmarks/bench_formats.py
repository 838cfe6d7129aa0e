"""Rasterising a COCO file: every non-crowd instance of ../shared/data/coco320 (2,643 polygon objects on
316 photos) drawn as unetkit's mask rule draws them (each object's shape.mask, pycocotools' polygon
rasteriser under it, inside each small object's box) against pycocotools' own `COCO.annToMask` loop, one
annotation at a time, in the same process; reading the JSON is timed apart. Median of 7 rounds, the two taking turns.

    python benchmarks/bench_formats.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import header, write_section  # noqa: E402
from unetkit.api import read_labels  # noqa: E402

COCO320 = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco320" / "annotations.json"


def median_seconds(fns: dict, rounds: int = 5) -> dict[str, float]:
    """Each function's median over `rounds`, the functions taking turns within a round (a slow spell of
    the shared machine slows both alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}


def main() -> None:
    from pycocotools.coco import COCO

    t = time.perf_counter()
    labels = read_labels(COCO320)
    read_s = time.perf_counter() - t
    ref = COCO(str(COCO320))
    anns = [a for a in ref.dataset["annotations"] if not a["iscrowd"]]

    def ours():
        return sum(i.shape.mask(*it.size).shape[0] > 0 for it in labels.images for i in it.instances if not i.crowd)

    def theirs():
        return sum(ref.annToMask(a).shape[0] > 0 for a in anns)

    assert ours() == theirs() == len(anns)
    timed = median_seconds({"ours": ours, "theirs": theirs}, rounds=7)
    a, b = timed["ours"], timed["theirs"]
    table = (
        "## Rasterising COCO objects: unetkit vs pycocotools (cpu, coco320)\n\n"
        f"{header('python benchmarks/bench_formats.py')}\n"
        "| what | seconds (median of 7) | objects/s |\n| --- | --- | --- |\n"
        f"| unetkit: read_labels (parse + index, once) | {read_s:.3f} | |\n"
        f"| unetkit: each object's shape.mask | {a:.3f} | {len(anns) / a:,.0f} |\n"
        f"| pycocotools: annToMask per annotation | {b:.3f} | {len(anns) / b:,.0f} |\n\n"
        f"unetkit / pycocotools speed: {b / a:.2f}x ({len(anns)} objects, {len(labels.images)} images).\n"
    )
    print(table)
    write_section("formats-rasterize", table)


if __name__ == "__main__":
    main()
