"""Click models side by side (issue 21, items 3 and 4): clicks-to-IoU on GrabCut (all 50, band ignored,
20 clicks, plain and --zoom-in) at each view size, and on CamVid's test split with each car, pedestrian
and sign instance (a connected component of at least --min-pixels) as one object, void ignored; and
on the cells benchmarks/annotate_sim.py labels (--isbi-sizes): is the view size what limits that domain?

    python benchmarks/click_table.py NAME=CHECKPOINT ... [--sizes 0,320,400,512] [--camvid-size 400]

NAME=CHECKPOINT pairs name the table's rows (builtin:clicks works too). Rows go to click_table.jsonl
(one per model, protocol and size; a row already there is kept, so the table grows run by run) and
the RESULTS.md section is rewritten from all rows. GrabCut and CamVid are never trained on.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from common import header, machine, write_section  # noqa: E402

HERE = Path(__file__).parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"
ROWS = HERE / "click_table.jsonl"
CAMVID_OBJECTS = {"sign": 6, "car": 8, "pedestrian": 9}  # CamVid's class indices (SOURCE.md); 11 = void
VOID = 11
ISBI_NAME = "ISBI train cells 500-20,000 px, 4 per slice (annotate_sim's first 100)"


def grabcut(ckpt: str, size: int, zoom: bool, out: Path) -> dict:
    cmd = [sys.executable, "-m", "unetkit", "evaluate", ckpt, "--data", str(SHARED / "grabcut"), "--split",
           "all", "--ignore-value", "128", "--clicks", "20", "--view-size", str(size), "--out", str(out)]  # fmt: skip
    cmd += ["--json"]
    cmd += ["--zoom-in"] if zoom else []
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout)


def camvid_objects(min_pixels: int, every: int):
    """(image path, object mask, ignore mask, class) for each instance in every `every`-th test image."""
    from PIL import Image

    masks = sorted((SHARED / "camvid" / "test" / "masks").glob("*.png"))[::every]
    for mask_path in masks:
        m = np.array(Image.open(mask_path))
        image = next((SHARED / "camvid" / "test" / "images").glob(mask_path.stem + ".*"))
        for name, c in CAMVID_OBJECTS.items():
            labels, n = ndimage.label(m == c)
            sizes = np.bincount(labels.ravel(), minlength=n + 1)
            for k in range(1, n + 1):
                if sizes[k] >= min_pixels:
                    yield image, labels == k, m == VOID, name


def isbi_objects(n: int = 100):
    """annotate_sim.py's isbi-cells objects, the first `n`: nothing ignored."""
    from annotate_sim import isbi_cell_masks

    for _, image, mask in itertools.islice(isbi_cell_masks(), n):
        yield image, mask, np.zeros_like(mask), "cell"


def click_objects(ckpt: str, size: int, objects, kinds: tuple[str, ...], zoom_in: bool = False) -> dict:
    """Clicks-to-IoU over (image, object mask, ignore mask, kind) items, 20 clicks each."""
    from PIL import Image

    from unetkit.api import ClickPredictor, load_segmenter, simulate_clicks, summarize_clicks

    seg = load_segmenter(ckpt)
    predictor = ClickPredictor(seg, size)
    images, ious, names, t0 = {}, [], [], time.perf_counter()
    for path, gt, ignore, name in objects:
        image = images.setdefault(path, seg.to_tensor(np.asarray(Image.open(path).convert("RGB"))))
        ious.append(simulate_clicks(predictor, image, gt, ignore, 20, zoom_in)[0])
        names.append(name)
    ious = np.stack(ious)
    per_kind = {k: summarize_clicks(ious[[i for i, n in enumerate(names) if n == k]], 20)["noc90"] for k in kinds}
    return {**summarize_clicks(ious, 20), "noc90_by_kind": per_kind, "images": len(images),
            "seconds_per_click": (time.perf_counter() - t0) / (len(ious) * 20)}  # fmt: skip


def camvid(ckpt: str, size: int, min_pixels: int, every: int, zoom_in: bool = False) -> dict:
    return click_objects(ckpt, size, camvid_objects(min_pixels, every), tuple(CAMVID_OBJECTS), zoom_in)


def isbi(ckpt: str, size: int, zoom_in: bool = False) -> dict:
    return click_objects(ckpt, size, isbi_objects(), ("cell",), zoom_in)


def row(name: str, ckpt: str, protocol: str, size: int, s: dict) -> dict:
    keep = ("noc85", "noc90", "nof85", "nof90", "num_images", "iou_at_clicks", "seconds_per_click", "noc90_by_kind")
    return {"model": name, "checkpoint": ckpt, "protocol": protocol, "view_size": size, "machine": machine()["cpu"],
            **{k: s[k] for k in keep if k in s}}  # fmt: skip


def table(rows: list[dict]) -> str:
    lines = [
        "| model | benchmark | view size | NoC@85 | NoC@90 | NoF@90 | IoU@1 | IoU@3 | IoU@5 | objects | ms/click "
        "| CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        at = r["iou_at_clicks"]
        size = r["view_size"] or "own"
        lines.append(
            f"| {r['model']} | {r['protocol']} | {size} | {r['noc85']:.2f} | {r['noc90']:.2f} | {r['nof90']} | "
            f"{at[0]:.3f} | {at[2]:.3f} | {at[4]:.3f} | {r['num_images']} | {r['seconds_per_click'] * 1000:.0f} | "
            f"{r.get('machine', '?')} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="NAME=CHECKPOINT (or NAME=builtin:clicks)")
    ap.add_argument("--sizes", default="0", help="GrabCut view sizes, comma-separated; 0 = the image at its own size")
    ap.add_argument("--zoom-size", type=int, default=None, help="also GrabCut --zoom-in at this view size")
    ap.add_argument("--camvid-size", type=int, default=None, help="also CamVid instances at this view size")
    ap.add_argument("--camvid-zoom", action="store_true", help="CamVid instances with --zoom-in (RITM's object box)")
    ap.add_argument("--isbi-sizes", default="", help="also annotate_sim's 100 ISBI cells at these view sizes")
    ap.add_argument("--isbi-zoom", action="store_true", help="the ISBI cells with --zoom-in")
    ap.add_argument("--min-pixels", type=int, default=400, help="smallest CamVid instance, in pixels")
    ap.add_argument("--every", type=int, default=1, help="CamVid: every N-th test image")
    args = ap.parse_args()
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()] if ROWS.is_file() else []
    done = {(r["model"], r["protocol"], r["view_size"]) for r in rows}
    camvid_name = f"CamVid test instances >= {args.min_pixels} px" + (
        f", every {args.every}th image" * (args.every > 1)
    )
    for spec in args.models:
        name, ckpt = spec.split("=", 1)
        out = ROOT / "runs" / "click-table" / name.replace(" ", "_")
        jobs = [
            ("GrabCut", s, grabcut, (ckpt, s, False, out / f"grabcut-{s}")) for s in map(int, args.sizes.split(","))
        ]
        if args.zoom_size is not None:
            jobs.append(("GrabCut --zoom-in", args.zoom_size, grabcut, (ckpt, args.zoom_size, True, out / "zoom")))
        if args.camvid_size is not None:
            cam = (ckpt, args.camvid_size, args.min_pixels, args.every, args.camvid_zoom)
            jobs.append((camvid_name + " --zoom-in" * args.camvid_zoom, args.camvid_size, camvid, cam))
        for s in filter(None, args.isbi_sizes.split(",")):
            jobs.append((ISBI_NAME + " --zoom-in" * args.isbi_zoom, int(s), isbi, (ckpt, int(s), args.isbi_zoom)))
        for protocol, size, fn, fn_args in jobs:
            if (name, protocol, size) in done:
                continue
            rows.append(row(name, ckpt, protocol, size, fn(*fn_args)))
            print(json.dumps(rows[-1]), flush=True)
            ROWS.write_text("".join(json.dumps(r) + "\n" for r in rows))
    command = "python benchmarks/click_table.py " + shlex.join(sys.argv[1:])
    about = (
        "Rows accumulate in benchmarks/click_table.jsonl over runs of this script (the command above made the last). "
        "GrabCut: all 50, the 128 band ignored, 20 clicks, plain protocol. CamVid: each car, pedestrian and sign "
        "connected component of the test split as one object, void ignored. ISBI cells: annotate_sim.py's isbi-cells "
        "objects (the grey slice as RGB). View size: the longer side the image "
        "is scaled to (own: resize-mode models see their training size). ms/click: the protocol's whole step "
        "(clicker and network), PyTorch, 2 threads of the row's CPU."
    )
    write_section("click-table", f"## Click models side by side (cpu)\n\n{header(command)}\n{about}\n\n{table(rows)}\n")


if __name__ == "__main__":
    main()
