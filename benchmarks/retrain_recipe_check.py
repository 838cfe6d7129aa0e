"""The offline check behind annotate's retrain recipe (issue 22): fine-tune the shipped click model on
ground-truth masks of one annotate_sim.py domain, as a retrain does (one thread, a time limit, crops of
192 px, the encoder at 0.1x the learning rate, view size 320), and score clicks-to-IoU (up to --clicks)
on held-out masks, for the start model and each learning rate. Held out: the first 15 cars of a seeded
shuffle (camvid-cars), or slices 15-24 (isbi-cells: slices 0-9 train, so a picture is never on both sides).

    python benchmarks/retrain_recipe_check.py --domain isbi-cells [--seconds 150] [--lrs 1e-4,3e-4,1e-3]

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

sys.path.insert(0, str(Path(__file__).parent))
from annotate_sim import DOMAINS  # noqa: E402
from common import machine  # noqa: E402

ROWS = Path(__file__).with_name("retrain_recipe_check.jsonl")
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


def score(ckpt: str, csv: Path, out: Path, clicks: int) -> dict:
    unetkit("evaluate", ckpt, "--data", str(csv), "--split", "test", "--recorded-split", "false",
            "--clicks", str(clicks), "--out", str(out))  # fmt: skip
    s = json.loads((out / "summary.json").read_text())
    ious = s["iou_at_clicks"]
    return {"noc85": round(s["noc85"], 3), "noc90": round(s["noc90"], 3), "images": s["num_images"],
            "iou_at": {str(k): round(ious[k - 1], 3) for k in (1, 3, 5, clicks)}}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain", choices=sorted(DOMAINS), default="camvid-cars")
    ap.add_argument("--seconds", type=int, default=150, help="training time of each fine-tune")
    ap.add_argument("--lrs", default="1e-4,3e-4,1e-3")
    ap.add_argument("--clicks", type=int, default=10)
    args = ap.parse_args()
    info = {"domain": args.domain, "seconds": args.seconds, "clicks": args.clicks, "cpu": machine()["cpu"],
            "date": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="retrain-check-") as tmp:
        csv = write_csv(Path(tmp), args.domain)
        runs = [("start model", "builtin:clicks", None)] + [(f"lr {lr}", None, lr) for lr in args.lrs.split(",")]
        for name, ckpt, lr in runs:
            if ckpt is None:
                run = Path(tmp, name.replace(" ", ""))
                unetkit("train", "--data", str(csv), "--interactive", "--init", "builtin:clicks", "--out", str(run),
                        "--resize", "crop", "--size", "192,192", "--epochs", "1000", "--fill-time-limit",
                        "--time-limit", f"{args.seconds}s", "--sample-every", "0", "--split", "1,0,0",
                        "--view-size", "320", "--lr", lr, "--encoder-lr-scale", "0.1")  # fmt: skip
                ckpt = str(run / "checkpoints" / "last.pt")
            row = {**info, "variant": name, **score(ckpt, csv, Path(tmp, f"eval-{name.replace(' ', '')}"), args.clicks)}
            print(json.dumps(row), flush=True)
            with ROWS.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
