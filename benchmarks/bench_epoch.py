"""End-to-end epoch time on a real dataset, data loading and validation included, and how epoch time
grows with the amount of data.

Trains on ../shared/data/isbi2012_em (fixed 24/6 split) at 256x256, batch 8, with the seed network:
unetkit's defaults vs the same loop in fp32 NCHW. Epoch 1 fills the sample cache; the figures are
from epoch 2 (steady state). Also reports the share of step time spent waiting for data.

    python benchmarks/bench_epoch.py [--widths 64,128,256,512] [--scaling-widths 32,64,128,256]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import header, write_section  # noqa: E402

SPLIT = Path(__file__).parent / "splits" / "isbi2012_em.csv"


def run_epochs(csv_path: Path, widths, precision: str, channels_last: bool, out: Path, epochs: int = 2) -> dict:
    from unetkit.api import fit, resolve

    cfg = resolve(
        overrides={
            "data": {"csv": str(csv_path), "size": (256, 256), "in_channels": 1},
            "model": {"widths": widths},
            "batch_size": 8,
            "epochs": epochs,
            "precision": precision,
            "channels_last": channels_last,
            "sample_every": 0,
        }
    )
    result = fit(cfg, out=out)
    last = result.history[-1]
    first = result.history[0]
    return {
        "epoch_s": last["seconds"] + last["val_seconds"],
        "train_s": last["seconds"],
        "val_s": last["val_seconds"],
        "images_per_s": last["images_per_s"],
        "data_fraction": last["data_fraction"],
        "first_epoch_s": first["seconds"] + first["val_seconds"],
        "dice": last["val_dice"],
    }


def scaled_csv(factor: int, folder: Path) -> Path:
    """The benchmark split with every training pair listed `factor` times (val/test unchanged)."""
    rows = list(csv.DictReader(SPLIT.open()))
    out = folder / f"x{factor}" / "split.csv"
    out.parent.mkdir(parents=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "mask", "split"])
        w.writeheader()
        for r in rows:
            for _ in range(factor if r["split"] == "train" else 1):
                w.writerow({k: str((SPLIT.parent / r[k]).resolve()) if k != "split" else r[k] for k in r})
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--widths", default="64,128,256,512")
    p.add_argument("--scaling-widths", default="32,64,128,256")
    a = p.parse_args()
    if not SPLIT.is_file() or not (SPLIT.parent / "../../../shared/data/isbi2012_em").resolve().is_dir():
        sys.exit("needs ../shared/data/isbi2012_em and benchmarks/splits/isbi2012_em.csv")
    widths = tuple(int(w) for w in a.widths.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = scaled_csv(1, tmp)
        ours = run_epochs(base, widths, "auto", True, tmp / "ours")
        ref = run_epochs(base, widths, "fp32", False, tmp / "ref")
        scaling = []
        sw = tuple(int(w) for w in a.scaling_widths.split(","))
        for factor in (1, 2, 4):
            csv_path = base if factor == 1 else scaled_csv(factor, tmp)
            scaling.append((factor, run_epochs(csv_path, sw, "auto", True, tmp / f"scale{factor}")))
    rows = []
    for label, r in (("unetkit defaults (auto precision, channels_last)", ours), ("fp32 NCHW, same loop", ref)):
        rows.append(
            f"| {label} | {r['epoch_s']:.1f} | {r['train_s']:.1f} | {r['val_s']:.1f} | {r['images_per_s']:.2f} | "
            f"{r['images_per_s'] / ref['images_per_s']:.2f}x | {r['data_fraction']:.1%} | {r['first_epoch_s']:.1f} |"
        )
        print(rows[-1], flush=True)
    srows = [
        f"| {f}x | {r['epoch_s']:.1f} | {r['train_s']:.1f} | {r['images_per_s']:.2f} | {r['data_fraction']:.1%} |"
        for f, r in scaling
    ]
    print("\n".join(srows))
    command = "python benchmarks/bench_epoch.py " + " ".join(sys.argv[1:])
    md = [
        "## End-to-end epoch (isbi2012_em, 256x256, batch 8)",
        "",
        header(command),
        f"Network widths {list(widths)}; 24/6 split (val cut from train), training pairs per epoch rounded down "
        "to whole batches. Epoch = training + validation at original resolution; figures from epoch 2.",
        "",
        "| run | epoch s | train s | val s | train img/s | vs fp32 | data wait share | epoch 1 s (cache fill) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Epoch time vs amount of data (widths {list(sw)}, training pairs repeated):",
        "",
        "| data | epoch s | train s | img/s | data wait share |",
        "|---|---|---|---|---|",
        *srows,
    ]
    write_section("epoch-cpu", "\n".join(md))


if __name__ == "__main__":
    main()
