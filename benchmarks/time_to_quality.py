"""Time to a quality, the figure a user feels (issue 23, item 5): milesial/Pytorch-UNet's README recipe,
written here as a reference loop, against `unetkit train --time-budget T`, on ISBI 2012 as RGB with the
fixed split benchmarks/splits/isbi2012_em.csv (24 train, 6 test), both measured in the same run.

The reference (as milesial's train.py and predict.py do it): the seed network with 2 output classes,
images at half scale (bicubic; masks nearest), 10% of the training images held out for validation
(random_split, seed 0), 5 epochs, batch 1, RMSprop lr 1e-5 momentum 0.999 weight decay 1e-8,
cross-entropy + Dice on the softmax, gradient norm clipped at 1.0, validation Dice 5 times per epoch
driving ReduceLROnPlateau (max, patience 5), fp32 NCHW. Test: the prediction at half scale upsampled
(bilinear) to the mask's size, argmax; foreground IoU from one confusion matrix over the test images.

unetkit: `unetkit train --data CSV --in-channels 3 --time-budget T` for each T (default: 1/10, 1/5 and
1/3 of the reference's training time), then `unetkit evaluate --split test`. The row says how long
each took in all (planning, training, evaluation) and its test foreground IoU. With --seeds, each run
is repeated per seed (the reference's weights and order, unetkit's --seed; the budgets are shares of the
references' mean time) and the verdict compares means: one seed moves test IoU by about 0.005.

    python benchmarks/time_to_quality.py [--budgets 0.1,0.2,0.33] [--epochs 5] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_class, header, machine, write_section  # noqa: E402

HERE = Path(__file__).parent
SPLIT = HERE / "splits" / "isbi2012_em.csv"
ROWS = HERE / "time_to_quality.jsonl"


def pairs(split: str) -> list[tuple[Path, Path]]:
    with SPLIT.open() as f:
        return [(SPLIT.parent / r["image"], SPLIT.parent / r["mask"]) for r in csv.DictReader(f) if r["split"] == split]


def load(image: Path, mask: Path, scale: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """milesial's BasicDataset: RGB /255 at `scale` (bicubic), mask at `scale` (nearest) as 0/1."""
    img, m = Image.open(image).convert("RGB"), Image.open(mask).convert("L")
    size = (int(img.width * scale), int(img.height * scale))
    x = np.asarray(img.resize(size, Image.BICUBIC), np.float32).transpose(2, 0, 1) / 255.0
    y = (np.asarray(m.resize(size, Image.NEAREST)) > 127).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """milesial's multiclass Dice loss: 1 - mean over classes of the batch Dice of softmax vs one-hot."""
    probs = F.softmax(logits, 1).flatten(2)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float().flatten(2)
    inter = (probs * onehot).sum(-1)
    dice = (2 * inter + eps) / (probs.sum(-1) + onehot.sum(-1) + eps)
    return 1 - dice.mean()


def val_dice(model, val) -> float:
    model.eval()
    scores = []
    with torch.no_grad():
        for x, y in val:
            pred = model(x[None]).argmax(1)[0]
            fg, t = pred == 1, y == 1
            scores.append(1.0 if not t.any() and not fg.any() else float(2 * (fg & t).sum() / (fg.sum() + t.sum())))
    model.train()
    return float(np.mean(scores))


def reference(epochs: int, seed: int = 0) -> tuple[torch.nn.Module, float]:
    """Train with the README recipe; (model, seconds of training including its validation). The
    validation split stays milesial's (seed 0); `seed` sets the weights and the order of the images."""
    from unetkit import UNet

    torch.manual_seed(seed)
    data = [load(i, m) for i, m in pairs("train")]
    n_val = int(len(data) * 0.1)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0)).tolist()
    val, train = [data[i] for i in order[:n_val]], [data[i] for i in order[n_val:]]
    model = UNet(3, 2, (64, 128, 256, 512))
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-5, weight_decay=1e-8, momentum=0.999, foreach=True)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, "max", patience=5)
    every = max(1, len(train) // 5)
    t0, step = time.perf_counter(), 0
    for epoch in range(epochs):
        model.train()
        for i in torch.randperm(len(train), generator=torch.Generator().manual_seed(1000 * seed + epoch)).tolist():
            x, y = train[i]
            logits = model(x[None])
            loss = F.cross_entropy(logits, y[None]) + dice_loss(logits, y[None])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % every == 0:
                plateau.step(val_dice(model, val))
        print(f"reference: epoch {epoch + 1}/{epochs} done at {time.perf_counter() - t0:.0f} s", flush=True)
    return model, time.perf_counter() - t0


def reference_test_iou(model) -> float:
    """milesial's predict.py on each test image (half scale in, logits upsampled, argmax): fg IoU."""
    model.eval()
    inter = union = 0
    with torch.no_grad():
        for image, mask in pairs("test"):
            x, _ = load(image, mask)
            full = np.asarray(Image.open(mask).convert("L")) > 127
            logits = F.interpolate(model(x[None]), size=full.shape, mode="bilinear", align_corners=False)
            pred = logits.argmax(1)[0].numpy() == 1
            inter, union = inter + int((pred & full).sum()), union + int((pred | full).sum())
    return inter / union


def unetkit_run(budget_s: float, work: Path, seed: int = 0) -> dict:
    """`unetkit train --time-budget` then `unetkit evaluate --split test`: seconds and test fg IoU."""
    out = work / f"unetkit-{budget_s:.0f}s-seed{seed}"
    t0 = time.perf_counter()
    train = [sys.executable, "-m", "unetkit", "train", "--data", str(SPLIT), "--in-channels", "3",
             "--time-budget", f"{budget_s:.0f}s", "--out", str(out), "--sample-every", "0",
             "--seed", str(seed)]  # fmt: skip
    log = subprocess.run(train, check=True, capture_output=True, text=True).stdout
    trained = time.perf_counter() - t0
    inits = [ln[6:].split(" (")[0].split(": ")[0] for ln in log.splitlines() if ln.startswith("init: ")]
    init = inits[0] if inits else "from scratch"
    evaluate = [sys.executable, "-m", "unetkit", "evaluate", str(out / "checkpoints" / "best.pt"), "--data", str(SPLIT),
                "--split", "test", "--json"]  # fmt: skip
    summary = json.loads(subprocess.run(evaluate, check=True, capture_output=True, text=True).stdout)
    config = json.loads((out / "config.json").read_text())
    return {"budget_s": budget_s, "seed": seed, "train_seconds": round(trained, 1),
            "fg_iou": summary["classes"][1]["iou"],
            "precision": config["runtime"]["precision"], "widths": config["model"]["widths"],
            "size": config["data"]["size"], "init": init}  # fmt: skip


def table(rows: list[dict], command: str) -> str:
    refs = [r for r in rows if r["run"] == "reference"]
    ref_s, ref_iou = np.mean([r["train_seconds"] for r in refs]), np.mean([r["fg_iou"] for r in refs])
    lines = [
        f"## Time to a quality: milesial's recipe vs `unetkit train --time-budget` (cpu, {cpu_class()}, ISBI as RGB)",
        "",
        header(command),
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        "| run | seed | training seconds | share of the reference's time | test fg IoU | reaches the reference? |",
        "|---|---|---|---|---|---|",
        *[
            f"| reference (5 epochs, batch 1, fp32) | {r.get('seed', 0)} | {r['train_seconds']:.0f} | 1 "
            f"| {r['fg_iou']:.3f} | - |"
            for r in refs
        ],  # fmt: skip
    ]
    runs = [r for r in rows if r["run"] == "unetkit"]
    for r in runs:
        share = ref_s / r["train_seconds"]
        lines.append(f"| {describe(r)} | {r.get('seed', 0)} | {r['train_seconds']:.0f} | 1/{share:.1f} "
                     f"| {r['fg_iou']:.3f} | {reach(r['fg_iou'], ref_iou)} |")  # fmt: skip
    if len(refs) > 1:
        lines.append(f"| **reference, mean of {len(refs)} seeds** | all | {ref_s:.0f} | 1 | {ref_iou:.3f} | - |")
        for budget in dict.fromkeys(r["budget_s"] for r in runs):
            same = [r for r in runs if r["budget_s"] == budget]
            sec, score = np.mean([r["train_seconds"] for r in same]), np.mean([r["fg_iou"] for r in same])
            lines.append(f"| **{describe(same[0])}, mean of {len(same)}** | all | {sec:.0f} | 1/{ref_s / sec:.1f} "
                         f"| {score:.3f} | {reach(score, ref_iou)} |")  # fmt: skip
    return "\n".join(lines)


def describe(r: dict) -> str:
    return (f"unetkit --time-budget {r['budget_s']:.0f}s ({r['precision']}, widths {r['widths']}, {r['size']} px, "
            f"init: {r.get('init', '?')})")  # fmt: skip


def reach(score: float, ref: float) -> str:
    return "yes" if score >= ref else f"no ({score - ref:+.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", default="0.1,0.2,0.33", help="unetkit's budgets as shares of the reference's time")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds, each run once per seed")
    args = ap.parse_args()
    if not pairs("test")[0][0].is_file():
        raise SystemExit(f"{pairs('test')[0][0]} not found: ISBI 2012 lives in ../shared/data beside the repo")
    seeds = [int(v) for v in args.seeds.split(",")]
    rows = []
    for seed in seeds:
        model, seconds = reference(args.epochs, seed)
        rows.append({"run": "reference", "seed": seed, "train_seconds": round(seconds, 1),
                     "fg_iou": reference_test_iou(model)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    ref_s = float(np.mean([r["train_seconds"] for r in rows]))
    with tempfile.TemporaryDirectory(prefix="ttq-") as tmp:
        for share in (float(v) for v in args.budgets.split(",")):
            for seed in seeds:
                rows.append({"run": "unetkit", **unetkit_run(share * ref_s, Path(tmp), seed)})
                print(json.dumps(rows[-1]), flush=True)
    stamp = {"machine": machine()["cpu"], "date": time.strftime("%Y-%m-%d %H:%M")}
    with ROWS.open("a") as f:
        f.writelines(json.dumps({**r, **stamp}) + "\n" for r in rows)
    command = "python benchmarks/time_to_quality.py " + " ".join(sys.argv[1:])
    write_section(f"time-to-quality-cpu-{cpu_class()}", table(rows, command))  # one section per CPU class


if __name__ == "__main__":
    main()
