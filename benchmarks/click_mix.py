"""Click models on three kinds of objects (issue 45): which training data and which first-click zoom
finds small objects among many without losing the large ones. For each NAME=CHECKPOINT, 20 clicks per
object at view size 320, plain and with --zoom-in, on:

- GrabCut: all 50, the 128 band ignored (never trained on);
- CamVid: the test split's cars, pedestrians and signs, each connected component >= 400 px one object,
  every 6th image (103 objects, as click_table.py), void ignored (never trained on);
- coco320 held out: the test split of benchmarks/splits/coco320_instances.csv (pictures never trained
  on), objects >= 400 px, every --coco-every-th one (crowd regions ignored);
- --isbi: annotate_sim's first 100 ISBI cells (reported, never tuned on).

    python benchmarks/click_mix.py NAME=CKPT ... [--first-zoom 0,0.2] [--protocols grabcut,camvid,coco]

Rows go to click_mix.jsonl (a row already there is kept) and RESULTS.md section click-mix is rewritten
from all rows. --first-zoom overrides the checkpoint's share ("ckpt": as recorded).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from click_table import ISBI_NAME, camvid_objects, isbi_objects  # noqa: E402
from common import header, machine, write_section  # noqa: E402

HERE = Path(__file__).parent
SHARED = HERE.parent.parent / "shared" / "data"
ROWS = HERE / "click_mix.jsonl"
VIEW = 320
CLICKS = 20


def grabcut_objects():
    from PIL import Image

    for mask_path in sorted((SHARED / "grabcut" / "masks").glob("*.png")):
        m = np.array(Image.open(mask_path).convert("L"))
        image = next((SHARED / "grabcut" / "images").glob(mask_path.stem + ".*"))
        yield image, m == 255, m == 128, "grabcut"


def coco_objects(every: int, min_pixels: int = 400):
    """coco320's held-out objects (the CSV's test rows), as evaluate reads them: 1 = the object, 255 = crowd."""
    from unetkit import DataConfig
    from unetkit.api import find_pairs

    pairs, _ = find_pairs(DataConfig(csv=str(HERE / "splits" / "coco320_instances.csv")))
    kept = [p for p in pairs if p.split == "test"]
    n = 0
    for p in kept:
        m = p.mask.read()
        if (m == 1).sum() < min_pixels:
            continue
        if n % every == 0:
            yield p.image, m == 1, m == 255, "coco"
        n += 1


def run_objects(ckpt: str, objects, zoom_in: bool, first_zoom: float | None) -> dict:
    from PIL import Image

    from unetkit.api import ClickPredictor, load_segmenter, simulate_clicks, summarize_clicks

    seg = load_segmenter(ckpt)
    predictor = ClickPredictor(seg, VIEW, first_zoom)
    images, ious, t0 = {}, [], time.perf_counter()
    for path, gt, ignore, _ in objects:
        image = images.setdefault(path, seg.to_tensor(np.asarray(Image.open(path).convert("RGB"))))
        ious.append(simulate_clicks(predictor, image, gt, ignore, CLICKS, zoom_in)[0])
    s = summarize_clicks(np.stack(ious), CLICKS)
    return {
        **s,
        "first_zoom": predictor.first_zoom,
        "seconds_per_click": (time.perf_counter() - t0) / (len(ious) * CLICKS),
    }


def protocols(coco_every: int) -> dict:
    return {
        "grabcut": ("GrabCut (50)", grabcut_objects),
        "camvid": ("CamVid objects (103)", lambda: camvid_objects(400, 6)),
        "coco": (f"coco320 held-out >= 400 px, every {coco_every}", lambda: coco_objects(coco_every)),
        "isbi": (ISBI_NAME, isbi_objects),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| model | benchmark | zoom-in | first zoom | NoC@85 | NoC@90 | NoF@90 | IoU@1 | IoU@3 | objects | ms/click "
        "| CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        at = r["iou_at_clicks"]
        lines.append(
            f"| {r['model']} | {r['protocol']} | {'yes' if r['zoom_in'] else 'no'} | {r['first_zoom']:g} | "
            f"{r['noc85']:.2f} | {r['noc90']:.2f} | {r['nof90']} | {at[0]:.3f} | {at[2]:.3f} | {r['num_images']} | "
            f"{r['seconds_per_click'] * 1000:.0f} | {r['machine']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="NAME=CHECKPOINT")
    ap.add_argument("--protocols", default="grabcut,camvid,coco", help="of grabcut,camvid,coco,isbi")
    ap.add_argument("--zoom", default="no,yes", help="plain (no), RITM's --zoom-in (yes), or both")
    ap.add_argument("--first-zoom", default="ckpt", help="shares to try, comma-separated; ckpt = as recorded")
    ap.add_argument("--coco-every", type=int, default=2, help="coco320 held-out: every N-th object >= 400 px")
    args = ap.parse_args()
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()] if ROWS.is_file() else []
    known = protocols(args.coco_every)
    jobs = itertools.product(args.models, args.protocols.split(","), args.zoom.split(","), args.first_zoom.split(","))
    for spec, key, zoom, fz in jobs:
        name, ckpt = spec.split("=", 1)
        label, objects = known[key]
        job = {"model": name, "checkpoint": ckpt, "protocol": label, "zoom_in": zoom == "yes", "first_zoom_asked": fz}
        if any(all(r.get(k) == v for k, v in job.items()) for r in rows):
            continue
        s = run_objects(ckpt, objects(), zoom == "yes", None if fz == "ckpt" else float(fz))
        rows.append({**job, "machine": machine()["cpu"], **s})
        print(name, label, f"zoom-in {zoom}", f"first zoom {s['first_zoom']:g}", f"NoC@90 {s['noc90']:.2f}",
              f"IoU@1 {s['iou_at_clicks'][0]:.3f}", flush=True)  # fmt: skip
        ROWS.write_text("".join(json.dumps(r) + "\n" for r in rows))
    command = "python benchmarks/click_mix.py " + shlex.join(sys.argv[1:])
    title = "## Which training data and first-click zoom find small objects among many (cpu, 20 clicks, view 320)"
    write_section("click-mix", f"{title}\n\n{header(command)}\n{table(rows)}\n")


if __name__ == "__main__":
    main()
