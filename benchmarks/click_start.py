"""What the ImageNet encoder is worth to a click model (issue 21, item 4): the shipped click recipe
(scripts/builtin_weights.py's first stage: duts2k train + duts_extra, 192 px crops, Lite0 encoder,
decoder 16-128, AdamW 1e-3) trained twice at the same time for the same minutes, one from the ImageNet
encoder weights and one from random weights, each pinned to one core (taskset, OMP_NUM_THREADS=1) so
both get the same CPU; then both are scored by click_table.py (GrabCut plain and CamVid instances).

    python benchmarks/click_start.py --minutes 40 [--skip-train]

Neither run starts from a shipped model (the shipped clicks started from objects, itself from ImageNet).
Runs: runs/click-start-imagenet, runs/click-start-none. GrabCut and CamVid are never trained on.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from builtin_weights import CLICKS_RUN, SPLIT  # noqa: E402

STARTS = ("imagenet", "none")


def train_command(weights: str, minutes: int) -> list[str]:
    flags = [*CLICKS_RUN[:-1], f"{minutes}m"]  # the recipe's own --time-limit, replaced
    out = ROOT / "runs" / f"click-start-{weights}"
    return [sys.executable, "-m", "unetkit", "train", "--data", SPLIT, "--out", str(out), *flags,
            "--encoder-weights", weights, "--workers", "0"]  # fmt: skip


def train_both(minutes: int) -> None:
    """Both runs at once, one core each: equal CPU minutes on the same machine at the same time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = []
    for core, weights in enumerate(STARTS):
        cmd = ["taskset", "-c", str(core), *train_command(weights, minutes)]
        print(" ".join(cmd), flush=True)
        log = open(ROOT / "runs" / f"click-start-{weights}.log", "w")  # noqa: SIM115 (closed with the process)
        procs.append((subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    for proc, log in procs:
        proc.wait()
        log.close()
        if proc.returncode:
            sys.exit(f"error: a training run failed (exit {proc.returncode}); see {log.name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=int, default=40, help="training minutes of one core per run")
    ap.add_argument("--skip-train", action="store_true", help="score the existing runs only")
    ap.add_argument("--camvid-every", type=int, default=6, help="CamVid: every N-th test image")
    args = ap.parse_args()
    (ROOT / "runs").mkdir(exist_ok=True)
    if not args.skip_train:
        train_both(args.minutes)
    names = {"imagenet": "from the ImageNet encoder", "none": "from random weights"}
    best = {w: ROOT / "runs" / f"click-start-{w}" / "checkpoints" / "best.pt" for w in STARTS}
    models = [f"click recipe {names[w]}, --time-limit {args.minutes}m on 1 core={best[w]}" for w in STARTS]
    table = [sys.executable, str(ROOT / "benchmarks" / "click_table.py"), *models, "--sizes", "320",
             "--camvid-size", "320", "--every", str(args.camvid_every)]  # fmt: skip
    subprocess.run(table, cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
