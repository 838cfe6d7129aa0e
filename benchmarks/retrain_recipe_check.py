"""The offline check behind annotate's retrain recipe (issue 22): fine-tune the shipped click model on 45
CamVid cars (the largest car of each test image, as annotate_sim.py's camvid-cars domain) and score NoC@90
(up to 20 clicks) on 15 other cars, for the start model and each learning rate / view setting.
`unetkit train --interactive --init builtin:clicks` then `unetkit evaluate --clicks 20 --recorded-split false`.

    python benchmarks/retrain_recipe_check.py [--seconds 100]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from annotate_sim import camvid_cars  # noqa: E402

VARIANTS = {"lr 1e-3, view 320": ["--lr", "1e-3", "--view-size", "320"],
            "lr 1e-4, view 320": ["--lr", "1e-4", "--view-size", "320"],
            "lr 1e-4, full resolution": ["--lr", "1e-4"]}  # fmt: skip


def unetkit(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "unetkit", *args], check=True, capture_output=True, text=True).stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="retrain-check-") as tmp:
        images, masks = Path(tmp, "images"), Path(tmp, "masks")
        images.mkdir(), masks.mkdir()
        camvid_cars(images, masks, 60)
        order = sorted(images.iterdir())
        random.Random(0).shuffle(order)
        rows = [f"{p.resolve()},{(masks / (p.stem + '.png')).resolve()},{'test' if i < 15 else 'train'}"
                for i, p in enumerate(order)]  # fmt: skip
        csv = Path(tmp, "data.csv")
        csv.write_text("\n".join(["image,mask,split", *rows]))

        def score(ckpt: str, name: str) -> None:
            out = Path(tmp, "eval-" + name.replace(" ", "").replace(",", "-"))
            out = unetkit("evaluate", ckpt, "--data", str(csv), "--split", "test", "--recorded-split", "false",
                          "--clicks", "20", "--out", str(out))  # fmt: skip
            print(f"{name}: {next(line for line in out.splitlines() if 'NoC' in line)}", flush=True)

        score("builtin:clicks", "start model")
        for name, flags in VARIANTS.items():
            run = Path(tmp, name.replace(" ", "").replace(",", "-"))
            unetkit("train", "--data", str(csv), "--interactive", "--init", "builtin:clicks", "--out", str(run),
                    "--resize", "crop", "--size", "192,192", "--epochs", "1000", "--fill-time-limit", "--time-limit",
                    f"{args.seconds}s", "--sample-every", "0", "--encoder-lr-scale", "0.1", *flags)  # fmt: skip
            score(str(run / "checkpoints" / "last.pt"), name)


if __name__ == "__main__":
    main()
