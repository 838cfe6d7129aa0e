"""Click-model levers, one at a time: each variant differs from the base recipe in one setting, trains
for the same wall-clock budget on duts2k, and is scored by the clicks-to-IoU protocol on duts2k's own
validation split (never GrabCut). Prints and writes a RESULTS.md section.

    python benchmarks/click_levers.py [--budget 4m] [--clicks 5] [--only base,no-iter]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import header, write_section  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "duts2k"
BASE = [
    "--interactive", "--mask-threshold", "128", "--skip-bad", "--size", "192,192", "--widths", "16,32,64,128",
    "--epochs", "40", "--fill-time-limit", "--sample-every", "0",
]  # fmt: skip
VARIANTS = {
    "base": ([], "192x192, widths 16-128, zoom crops 0.5, up to 3 iterative clicks, previous mask, dice+ce"),
    "res-128": (["--size", "128,128"], "input 128x128"),
    "res-256": (["--size", "256,256"], "input 256x256"),
    "wide": (["--widths", "32,64,128,256"], "widths 32-256"),
    "no-zoom": (["--zoom-share", "0"], "no crops around the object"),
    "no-iter": (["--click-iters", "0"], "no iterative (model-placed) clicks"),
    "no-prev": (["--prev-mask", "false"], "no previous-mask feedback"),
    "ce": (["--loss", "ce"], "cross-entropy only"),
}


def run(name: str, flags: list[str], budget: str, clicks: int, out: Path) -> dict:
    """Train (unless RUN/checkpoints/best.pt exists) and evaluate (unless its summary exists)."""
    run_dir = out / name
    summary_file = run_dir / "eval-val-clicks" / "summary.json"
    if summary_file.is_file():
        return {"name": name, **json.loads(summary_file.read_text())}
    train = [sys.executable, "-m", "unetkit", "train", "--data", str(DATA), "--out", str(run_dir), *BASE,
             "--time-limit", budget, *flags]  # fmt: skip
    t = time.perf_counter()
    if not (run_dir / "checkpoints" / "best.pt").is_file():
        subprocess.run(train, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t
    evaluate = [sys.executable, "-m", "unetkit", "evaluate", str(run_dir / "checkpoints" / "best.pt"), "--data",
                str(DATA), "--split", "val", "--clicks", str(clicks), "--json", "--mask-threshold", "128",
                "--skip-bad"]  # fmt: skip
    summary = json.loads(subprocess.run(evaluate, check=True, capture_output=True, text=True).stdout)
    return {"name": name, "train_s": seconds, **summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default="4m")
    ap.add_argument("--clicks", type=int, default=5)
    ap.add_argument("--only", default=",".join(VARIANTS))
    ap.add_argument("--out", default="runs/click-levers")
    args = ap.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} not found: the levers are measured on ../shared/data/duts2k")
    rows = []
    for name in args.only.split(","):
        row = run(name, VARIANTS[name][0], args.budget, args.clicks, Path(args.out))
        rows.append(row)
        print(name, {k: row[k] for k in ("noc85", "noc90", "iou_at_clicks")}, flush=True)
    k = args.clicks
    lines = [
        "## Click-model levers (cpu, duts2k validation split)",
        "",
        header(f"python benchmarks/click_levers.py --budget {args.budget} --clicks {k} --only {args.only}"),
        f"Each variant changes one setting of the base recipe and trains for the same {args.budget} wall-clock "
        f"budget on duts2k's training split; scored on its validation split ({rows[0]['num_images']} images) with "
        f"the clicks-to-IoU protocol, up to {k} clicks (so NoC is capped at {k}).",
        "",
        f"| variant | change | NoC@85 | NoC@90 | IoU@1 | IoU@3 | IoU@{k} |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ious = r["iou_at_clicks"]
        lines.append(
            f"| {r['name']} | {VARIANTS[r['name']][1]} | {r['noc85']:.2f} | {r['noc90']:.2f} | {ious[0]:.3f} | "
            f"{ious[min(2, k - 1)]:.3f} | {ious[-1]:.3f} |"
        )
    text = "\n".join(lines)
    print(text)
    write_section("click-levers", text)


if __name__ == "__main__":
    main()
