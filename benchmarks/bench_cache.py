"""Data that outgrows memory: duts2k listed 1x, 2x and 5x (every training file under several names,
so each copy is its own cache entry), trained with a memory-cache budget. Reports epoch time, the
share of step time spent waiting for data, peak RSS of the training process, and how much went to
the disk cache once the budget was reached.

    python benchmarks/bench_cache.py [--factors 1,2,5] [--cache-memory 1G] [--steps-after 60]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import header, peak_rss_mb, run_isolated, write_section  # noqa: E402

DUTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "duts2k"
VAL = 100  # the first ids (sorted) validate, once; the others train, repeated


def listing(factor: int, folder: Path) -> Path:
    """A CSV with the training pairs under `factor` names each (symlinks) and VAL validation pairs."""
    ids = sorted(p.stem for p in (DUTS / "images").iterdir())
    links = folder / f"x{factor}"
    for sub in ("images", "masks"):
        (links / sub).mkdir(parents=True)
    rows = ["image,mask,split"] + [f"{DUTS}/images/{i}.jpg,{DUTS}/masks/{i}.png,val" for i in ids[:VAL]]
    for k in range(factor):
        for i in ids[VAL:]:
            image, mask = links / "images" / f"{k}_{i}.jpg", links / "masks" / f"{k}_{i}.png"
            image.symlink_to(DUTS / "images" / f"{i}.jpg")
            mask.symlink_to(DUTS / "masks" / f"{i}.png")
            rows.append(f"{image},{mask},train")
    out = links / "list.csv"
    out.write_text("\n".join(rows))
    return out


def single(args: dict) -> dict:
    from unetkit.api import fit, resolve

    n_train = (2000 - VAL) * args["factor"]
    steps_per_epoch = n_train // args["batch"]
    config = resolve(
        overrides={
            "data": {
                "csv": args["csv"],
                "mask_threshold": 128,
                "size": (args["size"], args["size"]),
                "cache_memory": args["cache_memory"],
                "split": (1.0, 0.0, 0.0),  # the listed val pairs validate; no test split is cut from train
            },
            "model": {"widths": tuple(args["widths"])},
            "batch_size": args["batch"],
            "epochs": 2,
            "max_steps": steps_per_epoch + args["steps_after"],
            "sample_every": 0,
        }
    )
    out = Path(args["out"])
    result = fit(config, out=out)
    n_train = len(json.loads((out / "splits.json").read_text())["train"])
    spilled = sum(f.stat().st_size for f in (out / "cache").glob("*.sample")) / 2**20
    first, second = result.history[0], result.history[-1]
    return {
        "train_pairs": n_train,
        "epoch1_s": first["seconds"],
        "epoch1_data": first["data_fraction"],
        "img_s": second["images_per_s"],
        "steady_data": second["data_fraction"],
        "steady_steps": second["step"] - first["step"],
        "peak_rss_mb": peak_rss_mb(),
        "disk_cache_mb": spilled,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--single")
    p.add_argument("--factors", default="1,2,5")
    p.add_argument("--cache-memory", default="1G")
    p.add_argument("--widths", default="16,32,64,128")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps-after", type=int, default=60, help="steps of epoch 2 (steady state) measured")
    a = p.parse_args()
    if a.single:
        print(json.dumps(single(json.loads(a.single))))
        return
    if not DUTS.is_dir():
        sys.exit(f"needs {DUTS} (../shared/data/duts2k beside the repo)")
    rows = []
    widths = [int(w) for w in a.widths.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for factor in (int(f) for f in a.factors.split(",")):
            print(
                f"measuring duts2k x{factor}: data check, epoch 1 (fills the cache), {a.steps_after} steps more ...",
                flush=True,
            )
            args = {
                "csv": str(listing(factor, Path(tmp))),
                "factor": factor,
                "cache_memory": a.cache_memory,
                "widths": widths,
                "size": a.size,
                "batch": a.batch,
                "steps_after": a.steps_after,
                "out": str(Path(tmp) / f"run{factor}"),
            }
            r = run_isolated(__file__, args)
            rows.append(
                f"| {factor}x | {r['train_pairs']} | {r['epoch1_s']:.0f} | {r['epoch1_data']:.1%} | {r['img_s']:.1f} | "
                f"{r['steady_data']:.1%} | {r['peak_rss_mb']:.0f} | {r['disk_cache_mb']:.0f} |"
            )
            print(rows[-1], flush=True)
    command = "python benchmarks/bench_cache.py " + " ".join(sys.argv[1:])
    md = [
        "## Data larger than memory (duts2k 1x / 2x / 5x)",
        "",
        header(command),
        f"Default memory cache with a {a.cache_memory} budget (`--cache-memory`), spilling to the run's disk cache "
        f"past it; `--workers auto` (0 on 2 cores: decoding on the training thread). Widths {widths} at "
        f"{a.size}x{a.size}, batch {a.batch}, masks binarised at 128. Steady state: the first {a.steps_after} steps "
        "of epoch 2. Data wait share: time waiting for a batch (cache read or decode, augmentation) over step time. "
        "Peak RSS: the whole training process (model, optimiser, cache, Python).",
        "",
        "| data | train pairs | epoch 1 s | epoch 1 data wait | steady img/s | steady data wait | peak RSS MiB "
        "| disk cache MiB |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    write_section("cache-cpu", "\n".join(md))


if __name__ == "__main__":
    main()
