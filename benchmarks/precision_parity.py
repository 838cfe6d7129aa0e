"""bf16 does not cost quality: train the same configuration for the same number of steps with
--precision auto (bf16 where the CPU supports it) and --precision fp32, then compare test metrics.

    python benchmarks/precision_parity.py [--epochs 30] [--widths 16,32,64,128] [--size 256]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from common import header, write_section  # noqa: E402

SPLIT = HERE / "splits" / "isbi2012_em.csv"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--widths", default="16,32,64,128")
    p.add_argument("--size", type=int, default=256)
    a = p.parse_args()
    from unetkit import EvaluateConfig
    from unetkit.api import evaluate_checkpoint, fit, resolve

    widths = tuple(int(w) for w in a.widths.split(","))
    rows, results = [], {}
    for precision in ("auto", "fp32"):
        out = HERE / "quality" / f"parity-{precision}"
        cfg = resolve(
            overrides={
                "data": {"csv": str(SPLIT), "in_channels": 1, "size": (a.size, a.size)},
                "model": {"widths": widths},
                "epochs": a.epochs,
                "precision": precision,
                "sample_every": 0,
                "seed": 0,
            }
        )
        r = fit(cfg, out=out)
        # Evaluate both checkpoints the same way (fp32 inference) so only training precision differs.
        ev = EvaluateConfig(checkpoint=str(r.last_checkpoint), data=str(SPLIT), split="test", precision="fp32")
        s = evaluate_checkpoint(ev, progress=False)
        chosen = json.loads((out / "config.json").read_text())["runtime"]["precision"]
        results[precision] = s
        sec = sum(h["seconds"] for h in r.history)
        rows.append(
            f"| {precision} ({chosen}) | {r.steps} | {sec:.0f} | {r.history[-1]['val_dice']:.4f} | "
            f"{s['classes'][1]['dice']:.4f} | {s['classes'][1]['iou']:.4f} | {s['mean_iou']:.4f} |"
        )
        print(rows[-1], flush=True)
    d_dice = results["auto"]["classes"][1]["dice"] - results["fp32"]["classes"][1]["dice"]
    d_iou = results["auto"]["mean_iou"] - results["fp32"]["mean_iou"]
    command = "python benchmarks/precision_parity.py " + " ".join(sys.argv[1:])
    md = [
        "## bf16 vs fp32 training quality (isbi2012_em)",
        "",
        header(command),
        f"Widths {list(widths)}, {a.size}px, batch 8, {a.epochs} epochs, same seed and steps; test split (6 images) "
        "evaluated in fp32 from the last checkpoint.",
        "",
        "| training precision | steps | train s | last val Dice | test fg Dice | test fg IoU | test mean IoU |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Difference auto - fp32: fg Dice {d_dice:+.4f}, mean IoU {d_iou:+.4f}.",
    ]
    write_section("precision-parity", "\n".join(md))


if __name__ == "__main__":
    main()
