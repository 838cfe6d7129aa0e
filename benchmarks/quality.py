"""Quality on real data at a fixed training-time budget: train from scratch, evaluate on the test split.

Datasets (../shared/data): grabcut (fixed seeded 35/15 split, band 128 ignored), isbi2012_em (fixed
24/6 split), camvid (official split subset, void ignored), drive (official split; pixels outside the
field of view ignored, so Dice is measured inside the FOV). Recipes: `seed` (the original recipe,
bugs fixed), `default` (unetkit's defaults, epochs fitted to the budget so the schedule completes),
`auto` (`--time-budget`: network, size, batch and epochs chosen by measuring this machine),
`init:NAME` (`--time-budget` starting from the shipped model NAME: benchmarks/finetune.py),
`imagenet` (`--time-budget --encoder efficientnet-lite0`: from the ImageNet encoder, no shipped model).

    python benchmarks/quality.py --budget 10m --datasets grabcut,isbi2012_em --recipes default,seed --seeds 0
    python benchmarks/quality.py --table   # rewrite the RESULTS.md table from quality_results.jsonl

Every finished run appends one JSON line to benchmarks/quality_results.jsonl; the table in
RESULTS.md is made from those lines, so it only ever shows what was run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent
DATA = Path(os.environ.get("UNETKIT_DATA", HERE.parent.parent / "shared" / "data"))
RESULTS_JSONL = HERE / "quality_results.jsonl"
CACHE = HERE / ".cache"
sys.path.insert(0, str(HERE))

CAMVID_CLASSES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)


def drive_with_fov() -> Path:
    """DRIVE with mask value 128 outside the field of view (ignored in loss and metrics)."""
    root = CACHE / "drive_fov"
    for split in ("train", "test"):
        src = DATA / "drive" / split
        if not src.is_dir():
            continue
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for img in sorted((src / "images").iterdir()):
            link = root / split / "images" / img.name
            if not link.exists():
                link.symlink_to(img.resolve())
            out = root / split / "masks" / f"{img.stem}.png"
            if not out.exists():
                mask = np.asarray(Image.open(src / "masks" / f"{img.stem}.png"))
                fov = np.asarray(Image.open(src / "fov" / f"{img.stem}.png"))
                Image.fromarray(np.where(fov > 0, mask, 128).astype(np.uint8)).save(out)
    return root


def dataset_options(name: str) -> tuple[dict, str]:
    """(data config overrides, path given to evaluate) for a benchmark dataset."""
    if name == "grabcut":
        csv = str(HERE / "splits" / "grabcut.csv")
        return {"csv": csv, "ignore_value": 128, "mask_mode": "binary"}, csv
    if name == "isbi2012_em":
        csv = str(HERE / "splits" / "isbi2012_em.csv")
        return {"csv": csv, "in_channels": 1, "mask_mode": "binary"}, csv
    if name == "camvid":
        root = str(DATA / "camvid")
        return {"root": root, "ignore_value": 11, "mask_mode": "index", "classes": CAMVID_CLASSES}, root
    if name == "drive":
        root = str(drive_with_fov())
        return {"root": root, "ignore_value": 128, "mask_mode": "binary"}, root
    raise SystemExit(f"unknown dataset {name}")


def mean_sd(vals: list[float], with_n: bool = False) -> str:
    """One table cell: "-", the value, or mean ± sample standard deviation over seeds."""
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1):.3f}" + (f" (n={len(vals)})" if with_n else "")


def recipe_config(recipe: str, data: dict, budget_s: float, seed: int, out: Path):
    from unetkit.api import check_dataset, epochs_for_budget, plan, resolve, resolve_norm, time_step

    # From scratch unless the recipe is init:NAME[/encS] (a shipped model, fine-tuned, the encoder at S x lr:
    # benchmarks/finetune.py).
    init, _, enc = (recipe.split(":", 1)[1] if recipe.startswith("init:") else "none").partition("/enc")
    finetune = {"init": init if init == "none" else f"builtin:{init}", "encoder_lr_scale": float(enc) if enc else None}
    overrides = {"data": data, "seed": seed, "sample_every": 0, "time_limit": f"{int(budget_s)}s", "finetune": finetune}
    if recipe == "imagenet":  # from the ImageNet EfficientNet-Lite0 encoder, the decoder planned by the budget
        overrides["model"] = {"encoder": "efficientnet-lite0", "encoder_weights": "imagenet"}
        return plan(resolve(None, None, overrides), budget_s, out)
    if recipe == "seed":
        return resolve("seed", None, {**overrides, "epochs": 100000})
    config = resolve(None, None, overrides)
    if recipe == "auto" or recipe.startswith("init:"):
        return plan(config, budget_s, out)
    # default: fit the epoch count to the budget so the cosine schedule runs to its end.
    _, splits, spec = check_dataset(config.data)
    config = resolve_norm(config, len(splits["train"]))
    step = time_step(config, spec.num_classes)
    steps_per_epoch = max(1, len(splits["train"]) // config.batch_size)
    epochs, _ = epochs_for_budget(budget_s, steps_per_epoch, step, len(splits["val"]), config.batch_size)
    # A first estimate: training re-measures its epochs and re-sets them to fill the budget, as auto does.
    return dataclasses.replace(config, epochs=epochs, fill_time_limit=True)


def headline_metrics(summary: dict) -> dict:
    """The numbers the tables report, from an evaluate summary (fg_* only for binary data)."""
    fg = summary["classes"][1] if len(summary["classes"]) == 2 else None
    return {
        "mean_iou": summary["mean_iou"],
        "pixel_accuracy": summary["pixel_accuracy"],
        "fg_iou": fg["iou"] if fg else None,
        "fg_dice": fg["dice"] if fg else None,
    }


def run_one(dataset: str, recipe: str, budget_s: float, seed: int, results_path: Path = RESULTS_JSONL) -> dict:
    import torch

    from common import machine
    from unetkit import EvaluateConfig
    from unetkit.api import evaluate_checkpoint, fit

    data, eval_path = dataset_options(dataset)
    out = HERE / "quality" / f"{dataset}-{recipe.replace(':', '-').replace('/', '-')}-b{int(budget_s)}-s{seed}"
    t0 = time.monotonic()
    config = recipe_config(recipe, data, budget_s, seed, out)
    result = fit(config, out=out)
    train_s = time.monotonic() - t0
    best = str(result.best_checkpoint)
    plain = EvaluateConfig(checkpoint=best, data=str(eval_path), split="test", out=str(out / "eval-test"))
    summary = evaluate_checkpoint(plain, progress=False)
    classes = summary["classes"]
    resolved = json.loads((out / "config.json").read_text())
    row = {
        "dataset": dataset,
        "recipe": recipe,
        "budget_s": budget_s,
        "seed": seed,
        "train_seconds": round(train_s, 1),
        "epochs": result.epochs_done,
        "steps": result.steps,
        "stopped": result.stopped,
        "fill_time_limit": config.fill_time_limit,
        "widths": list(config.model.widths),
        "size": list(config.data.size),
        "batch_size": config.batch_size,
        "precision": resolved["runtime"]["precision"],
        "norm": resolved["model"]["norm"],
        "optimizer": f"{resolved['optim']['optimizer']} lr {resolved['optim']['lr']} {resolved['optim']['schedule']}",
        "num_test_images": summary["num_images"],
        "mean_iou": summary["mean_iou"],
        "pixel_accuracy": summary["pixel_accuracy"],
        "pixel_error": 1 - summary["pixel_accuracy"],
        "fg_iou": classes[1]["iou"] if len(classes) == 2 else None,
        "fg_dice": classes[1]["dice"] if len(classes) == 2 else None,
        "per_class_iou": {c["name"]: c["iou"] for c in classes},
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{machine()['cpu']}, {torch.get_num_threads()} thread(s)",
    }
    # The same checkpoint with flip TTA (only the flips it was trained with): reported beside, not instead.
    tta = evaluate_checkpoint(dataclasses.replace(plain, out=str(out / "eval-test-tta"), tta=True), progress=False)
    row["tta"] = headline_metrics(tta)
    with results_path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return row


def fmt(v, pct=False):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:.3f}"


def early_checkpoint_notes(rows: list[dict]) -> list[str]:
    """A longer run that scores exactly what a shorter run of the same recipe and seed scored kept a
    best-validation checkpoint from within the shorter run's epochs: say so, not "N epochs of training"."""
    notes = []
    for long in rows:
        for short in rows:
            same = all(long[k] == short[k] for k in ("dataset", "recipe", "seed", "mean_iou", "pixel_accuracy"))
            if same and short["budget_s"] < long["budget_s"] and short["epochs"] < long["epochs"]:
                notes.append(
                    f"- {long['dataset']} {long['recipe']} {long['budget_s'] / 60:.0f} min (seed {long['seed']}): test "
                    f"scores identical to its {short['budget_s'] / 60:.0f}-minute run's ({short['epochs']} epochs), so "
                    f"its best-validation checkpoint is from one of the first {short['epochs']} of its "
                    f"{long['epochs']} epochs; later epochs never improved validation."
                )
    return ["", "Early best checkpoints (from the records):", "", *notes] if notes else []


def table(results_path: Path = RESULTS_JSONL, title: str = "CPU") -> str:
    from common import header

    rows = [json.loads(line) for line in results_path.read_text().splitlines() if line.strip()]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        # Runs that filled their budget are never averaged with runs that planned epochs once.
        groups.setdefault((r["dataset"], r["recipe"], r["budget_s"], bool(r.get("fill_time_limit"))), []).append(r)
    lines = [
        "| dataset | recipe | budget | seeds | network, input, batch | epochs (seconds) | headline metric (test) "
        "| other |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (ds, recipe, budget, _), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1], kv[0][3])):

        def stat(key, rs=rs):
            return mean_sd([r[key] for r in rs if r.get(key) is not None])

        def tta(key, rs=rs):
            vals = [r["tta"][key] for r in rs if r.get("tta", {}).get(key) is not None]
            if not vals:
                return ""
            part = f", {len(vals)} of {len(rs)} seeds" if len(vals) < len(rs) else ""
            return f" (TTA {np.mean(vals):.3f}{part})"

        r0 = rs[0]
        net = f"{r0['widths']}, {'x'.join(map(str, r0['size']))}, b{r0['batch_size']}"
        if r0.get("norm") == "group":
            net += ", GN"
        if ds == "camvid":
            head = f"mIoU {stat('mean_iou')}{tta('mean_iou')}"
            other = f"global acc {stat('pixel_accuracy')}"
        elif ds == "isbi2012_em":
            head = f"fg IoU {stat('fg_iou')}{tta('fg_iou')}"
            other = f"pixel error {stat('pixel_error')}"
        elif ds == "drive":
            head = f"vessel Dice (FOV) {stat('fg_dice')}{tta('fg_dice')}"
            other = f"vessel IoU {stat('fg_iou')}"
        else:
            head = f"fg IoU {stat('fg_iou')}{tta('fg_iou')}"
            other = f"fg Dice {stat('fg_dice')}"
        seconds = "/".join(f"{r['train_seconds']:.0f}" for r in rs)
        fill = ", fill" if r0.get("fill_time_limit") else ""
        epochs = f"{'/'.join(str(r['epochs']) for r in rs)} ({seconds} s{fill})"
        lines.append(f"| {ds} | {recipe} | {budget / 60:.0f} min | {len(rs)} | {net} | {epochs} | {head} | {other} |")
    lines += early_checkpoint_notes(rows)
    cam = [r for r in rows if r["dataset"] == "camvid"]
    if cam:
        best = max(cam, key=lambda r: r["mean_iou"])
        lines += [
            "",
            f"CamVid per-class test IoU, best run ({best['recipe']}, {best['budget_s'] / 60:.0f} min, "
            f"seed {best['seed']}):",
            "",
            "| " + " | ".join(best["per_class_iou"]) + " |",
            "|" + "---|" * len(best["per_class_iou"]),
            "| " + " | ".join(fmt(v) for v in best["per_class_iou"].values()) + " |",
        ]
    md = [
        f"## Quality on real data (fixed training-time budget, {title})",
        "",
        header(f"python benchmarks/quality.py --budget ... (rows from benchmarks/{results_path.name})"),
        "Trained from scratch within the budget (measurement for auto-configuration included), evaluated on the "
        "test split at original resolution with the best-validation checkpoint. ± is the standard deviation "
        "over seeds. GN: GroupNorm (norm auto, under 100 training images). TTA: the same checkpoint with flip "
        "averaging. Rows labelled -v1 used the recipe before 2026-11-26 (AdamW 3e-3 + cosine, stronger "
        "augmentation, BatchNorm, no class weights); the default changed after benchmarks/ablate.py. "
        "Seconds: wall time from planning to the end of training. fill: the run re-measured its epoch time "
        "after the first epochs and re-set its epochs to end at the budget (fill_time_limit, 2026-11-26 on); "
        "earlier rows planned their epochs once, for 85% of the budget.",
        "",
        *lines,
    ]
    return "\n".join(md)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--budget", default="10m")
    p.add_argument("--datasets", default="grabcut,isbi2012_em,camvid,drive")
    p.add_argument("--recipes", default="default,seed")
    p.add_argument("--seeds", default="0")
    p.add_argument("--table", action="store_true", help="only rewrite the RESULTS.md table")
    p.add_argument("--results", default=str(RESULTS_JSONL), help="JSON-lines file the runs are appended to")
    p.add_argument("--title", default="CPU", help="machine named in the RESULTS.md section title")
    a = p.parse_args()
    from common import write_section

    if not a.table:
        if not DATA.is_dir():
            raise SystemExit(f"{DATA} not found: the datasets live in ../shared/data beside the repo")
        from unetkit.api import parse_duration

        budget = parse_duration(a.budget)
        for seed in (int(s) for s in a.seeds.split(",")):
            for dataset in a.datasets.split(","):
                for recipe in a.recipes.split(","):
                    run_one(dataset, recipe, budget, seed, Path(a.results))
    name = "quality" if a.title == "CPU" else f"quality-{a.title}"
    write_section(name, table(Path(a.results), a.title))


if __name__ == "__main__":
    main()
