"""The offline check behind annotate's retrain recipe (issue 22): fine-tune the shipped click model on
ground-truth masks of one annotate_sim.py domain, as a retrain does (one thread, a time limit, crops of
192 px, the encoder at 0.1x the learning rate, view size 320), and score clicks-to-IoU (up to --clicks)
on held-out masks, for the start model and each learning rate (and each --seconds; --zoom-in scores each
model with RITM's zoom-in too). --train-scale view trains on copies of the training pictures scaled as the
view scales them when predicting (longer side 320: a 512-px ISBI slice at 0.625), where a retrain takes
its crops at the pictures' own scale. Held out: the first 15 cars of a seeded
shuffle (camvid-cars), or slices 15-24 (isbi-cells: slices 0-9 train, so a picture is never on both sides).

    python benchmarks/retrain_recipe_check.py --domain isbi-cells [--seconds 150] [--lrs 1e-4,3e-4,1e-3]
        [--clicks 10] [--zoom-in] [--train-scale native,view]

Each row (start model first) is printed and appended to benchmarks/retrain_recipe_check.jsonl.
`unetkit train --interactive --init builtin:clicks`, then `unetkit evaluate --clicks N --recorded-split false`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from annotate_sim import DOMAINS  # noqa: E402
from common import machine  # noqa: E402

ROWS = Path(__file__).with_name("retrain_recipe_check.jsonl")
VIEW = 320  # the shipped click model's view size
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # a retrain's one thread


def unetkit(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "unetkit", *args], check=True, capture_output=True, text=True, env=ENV)
    return done.stdout


def held_out(domain: str, images: list[Path]) -> set[str]:
    if domain == "isbi-cells":
        return {p.stem for p in images if int(p.stem[5:7]) >= 15}
    order = sorted(p.stem for p in images)
    random.Random(0).shuffle(order)
    return set(order[:15])


def write_csv(tmp: Path, domain: str) -> Path:
    images, masks = tmp / "images", tmp / "masks"
    images.mkdir(), masks.mkdir()
    DOMAINS[domain](images, masks, 100 if domain == "isbi-cells" else 60)
    found = sorted(images.iterdir())
    test = held_out(domain, found)
    if domain == "isbi-cells":  # slices 10-14 are in neither split
        found = [p for p in found if p.stem in test or int(p.stem[5:7]) < 10]
    rows = [f"{p.resolve()},{(masks / (p.stem + '.png')).resolve()},{'test' if p.stem in test else 'train'}"
            for p in found]  # fmt: skip
    csv = tmp / "data.csv"
    csv.write_text("\n".join(["image,mask,split", *rows]))
    return csv


def view_scaled(csv: Path, tmp: Path, view: int) -> Path:
    """The same rows with every training image (bilinear) and mask (nearest) scaled so its longer side is
    `view`: the scale the click model sees the whole picture at when it predicts. Test rows stay as they are."""
    folder = tmp / f"scaled-{view}"
    folder.mkdir(exist_ok=True)
    lines = csv.read_text().splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        image, mask, split = line.split(",")
        if split == "train":
            img, m = Image.open(image), Image.open(mask)
            k = view / max(img.size)
            size = (round(img.width * k), round(img.height * k))
            image, mask = folder / Path(image).name, folder / ("mask-" + Path(mask).name)
            img.resize(size, Image.BILINEAR).save(image)
            m.resize(size, Image.NEAREST).save(mask)
        out.append(f"{image},{mask},{split}")
    scaled = tmp / f"data-{view}.csv"
    scaled.write_text("\n".join(out))
    return scaled


def score(ckpt: str, csv: Path, out: Path, clicks: int, zoom_in: bool = False) -> dict:
    unetkit("evaluate", ckpt, "--data", str(csv), "--split", "test", "--recorded-split", "false",
            "--clicks", str(clicks), "--out", str(out), "--zoom-in", str(zoom_in).lower())  # fmt: skip
    s = json.loads((out / "summary.json").read_text())
    ious, at = s["iou_at_clicks"], sorted({k for k in (1, 3, 5, 10) if k <= clicks} | {clicks})
    return {"noc85": round(s["noc85"], 3), "noc90": round(s["noc90"], 3), "images": s["num_images"],
            "iou_at": {str(k): round(ious[k - 1], 3) for k in at}}  # fmt: skip


def fine_tune(csv: Path, run: Path, lr: str, seconds: int) -> str:
    """A retrain's command on `csv`'s training rows; the path of its last checkpoint."""
    unetkit("train", "--data", str(csv), "--interactive", "--init", "builtin:clicks", "--out", str(run),
            "--resize", "crop", "--size", "192,192", "--epochs", "1000", "--fill-time-limit",
            "--time-limit", f"{seconds}s", "--sample-every", "0", "--split", "1,0,0",
            "--view-size", str(VIEW), "--lr", lr, "--encoder-lr-scale", "0.1")  # fmt: skip
    return str(run / "checkpoints" / "last.pt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain", choices=sorted(DOMAINS), default="camvid-cars")
    ap.add_argument("--seconds", default="150", help="training time of each fine-tune; a list runs each in turn")
    ap.add_argument("--lrs", default="1e-4,3e-4,1e-3")
    ap.add_argument("--clicks", type=int, default=10)
    ap.add_argument("--zoom-in", action="store_true", help="score each model with RITM's zoom-in as well")
    ap.add_argument("--train-scale", default="native", help="native, view (training images scaled as the view "
                    "scales the picture), or both: native,view")  # fmt: skip
    args = ap.parse_args()
    info = {"domain": args.domain, "clicks": args.clicks, "cpu": machine()["cpu"]}
    info["date"] = time.strftime("%Y-%m-%d %H:%M")
    tunes = [(lr, int(s), scale) for scale in args.train_scale.split(",")
             for s in args.seconds.split(",") for lr in args.lrs.split(",")]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="retrain-check-") as tmp:
        csv = write_csv(Path(tmp), args.domain)
        data = {"native": csv}
        if "view" in args.train_scale:
            data["view"] = view_scaled(csv, Path(tmp), VIEW)
        for lr, seconds, scale in [(None, 0, "native"), *tunes]:
            name = "start model" if lr is None else f"lr {lr}" + (", view scale" if scale == "view" else "")
            ckpt = (
                fine_tune(data[scale], Path(tmp, f"{lr}-{seconds}s-{scale}"), lr, seconds) if lr else "builtin:clicks"
            )
            for zoom in (False, True) if args.zoom_in else (False,):
                out = Path(tmp, f"eval-{lr}-{seconds}s-{scale}{'-zoom' if zoom else ''}")
                row = {**info, "seconds": seconds, "variant": name + (", zoom-in" if zoom else "")}
                row.update(score(ckpt, csv, out, args.clicks, zoom))
                print(json.dumps(row), flush=True)
                with ROWS.open("a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
