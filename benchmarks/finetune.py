"""Fine-tuned from a shipped model vs trained from scratch, at equal wall-clock budgets (issue: start
from a trained model). Both recipes are `--time-budget` runs (benchmarks/quality.py: `auto` from
scratch with --init none, `init:objects` from builtin:objects, the duts2k-only model); each is scored
on the dataset's test split with its best-validation checkpoint. GrabCut also gets the shipped model
as it is, on all 50 images (no GrabCut image in any of its training).

    python benchmarks/finetune.py --budgets 2m,5m,10m --recipes auto,init:objects --seeds 0
    python benchmarks/finetune.py --budgets 5m --recipes init:objects/enc0.1   # encoder at 0.1 x lr
    python benchmarks/finetune.py --zero-shot          # builtin:objects on all of GrabCut
    python benchmarks/finetune.py --table              # rewrite the RESULTS.md section
    python benchmarks/finetune.py --budgets 5m,10m --recipes auto,imagenet,init:objects \\
        --results benchmarks/finetune_starting_points.jsonl --starting-points   # scratch / ImageNet / shipped

Runs append to benchmarks/finetune_results.jsonl; the table shows only what is in it. The published
rows ran two at a time on the 2-core machine, each pinned to one core (taskset -c N, OMP_NUM_THREADS=1),
so a budget there is wall-clock minutes of one core.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import quality
from common import header, write_section

HERE = Path(__file__).parent
RESULTS = HERE / "finetune_results.jsonl"
METRIC = {"isbi2012_em": "fg_iou", "drive": "fg_dice", "camvid": "mean_iou", "grabcut": "fg_iou"}
METRIC_NAME = {"fg_iou": "fg IoU", "fg_dice": "vessel Dice (FOV)", "mean_iou": "mIoU"}
SCRATCH = "auto"
TIE = 0.005  # starting points within this of the best cell count as equally good


def zero_shot(name: str = "objects", results: Path = RESULTS) -> dict:
    """The shipped model on every GrabCut image, untouched by GrabCut."""
    from unetkit import EvaluateConfig
    from unetkit.api import evaluate_checkpoint

    out = HERE / "quality" / f"grabcut-zero-shot-{name}"
    config = EvaluateConfig(checkpoint=f"builtin:{name}", data=str(quality.DATA / "grabcut"), split="all",
                            ignore_value=128, out=str(out))  # fmt: skip
    s = evaluate_checkpoint(config, progress=False)
    row = {"dataset": "grabcut", "recipe": f"builtin:{name} as shipped", "budget_s": 0, "seed": 0,
           "num_test_images": s["num_images"], "fg_iou": s["classes"][1]["iou"], "fg_dice": s["classes"][1]["dice"],
           "mean_iou": s["mean_iou"], "date": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
    with results.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return row


def picked(dataset: str) -> str | None:
    """The recipe for the shipped model `unetkit train` starts from on this dataset by itself (None: none fits)."""
    from unetkit.api import builtin_models

    options, _ = quality.dataset_options(dataset)
    classes = len(options.get("classes", ())) or 2
    fits = [b for b in builtin_models() if b.fits(options.get("in_channels", 3), False, classes)]
    return f"init:{fits[0].name}" if fits else None


def cell(rows: list[dict], key: str) -> str:
    return quality.mean_sd([r[key] for r in rows if r.get(key) is not None], with_n=True)


def grid(rows: list[dict], recipes: list[str]) -> list[str]:
    """A markdown table: one row per dataset and budget, one column per recipe (from scratch first)."""
    budgets = sorted({r["budget_s"] for r in rows if r["budget_s"]})
    head = "| dataset (test metric) | budget | from scratch | " + " | ".join(f"from {r}" for r in recipes) + " |"
    lines = [head, "|" + "---|" * (3 + len(recipes))]
    for ds, key in METRIC.items():
        for b in budgets:
            at = [r for r in rows if r["dataset"] == ds and r["budget_s"] == b]
            if at:
                cells = [cell([r for r in at if r["recipe"] == rec], key) for rec in (SCRATCH, *recipes)]
                lines.append(f"| {ds} ({METRIC_NAME[key]}) | {b / 60:.0f} min | " + " | ".join(cells) + " |")
    return lines


def verdicts(rows: list[dict], recipes: list[str]) -> list[str]:
    """The target, fine-tuned at 5 min >= from scratch at 10 min, per dataset and recipe, then counted."""
    lines, met, by_default = [], {}, {}
    default = {ds: picked(ds) for ds in METRIC}  # reads the cards and data options once per dataset
    for ds, key in METRIC.items():
        sc10 = [r[key] for r in rows if r["dataset"] == ds and r["recipe"] == SCRATCH and r["budget_s"] == 600]
        for rec in recipes:
            ft5 = [r[key] for r in rows if r["dataset"] == ds and r["recipe"] == rec and r["budget_s"] == 300]
            if not (ft5 and sc10):
                continue
            ok = bool(np.mean(ft5) >= np.mean(sc10))
            met.setdefault(rec, []).append(ok)
            if rec == (default[ds] or "init:objects"):
                by_default[ds] = ok
            lines.append(
                f"- {ds}: from {rec} at 5 min {np.mean(ft5):.3f} vs from scratch at 10 min {np.mean(sc10):.3f}: "
                + ("fine-tuned at 5 min is as good or better" if ok else "from scratch at 10 min is better")
            )
    lines += [f"- from {rec}: met on {sum(m)} of {len(m)}" for rec, m in met.items()]
    defaults = ", ".join(f"{ds}: {rec or 'none fits, init:objects given'}" for ds, rec in default.items())
    lines.append(
        f"- from the shipped model `unetkit train` picks by itself ({defaults}): "
        f"met on {sum(by_default.values())} of {len(by_default)}"
    )
    return lines


def table(results: Path = RESULTS) -> str:
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    recipes = sorted({r["recipe"] for r in rows if r["budget_s"] and r["recipe"] != SCRATCH})
    notes = {r["recipe"]: r["note"] for r in rows if r.get("note")}
    current = [rec for rec in recipes if rec not in notes]
    shipped = [r for r in rows if not r["budget_s"]]
    extra = [
        f"- {r['dataset']}, {r['recipe']}, all {r['num_test_images']} images, no GrabCut image in its training: "
        f"fg IoU {r['fg_iou']:.3f}, fg Dice {r['fg_dice']:.3f}"
        for r in shipped
    ]
    md = [
        "## Fine-tuned vs from scratch (cpu, equal wall-clock budgets)",
        "",
        header("python benchmarks/finetune.py ... (rows from benchmarks/finetune_results.jsonl)"),
        "Each run: `--time-budget` planning (fine-tuning: the shipped model's network; its input scale kept when "
        "it already does the task, >= 0.5 IoU on val as it is, else planned with half the from-scratch steps), "
        "best-validation checkpoint, test split at original resolution (GrabCut: the fixed 35/15 split; DRIVE: "
        "inside the field of view; CamVid: void ignored; ISBI: 24/6 split, grey images, so the RGB model's first "
        "kernels are summed). Two runs at a time, each pinned to one of the 2 cores: a budget is minutes of one "
        "core. ± is the standard deviation over seeds (n runs); cells without n are one seed (0). `objects` was "
        "trained on duts2k only; `general` on duts2k (through objects) and then CamVid's train split, so on CamVid "
        "it is a head start on the same data, not transfer. `init:NAME` is what `--time-budget` does by itself: "
        "the encoder at 0.1 x lr when the source already does the task (GrabCut from objects, CamVid from general; "
        "rows from d180ec0 on), else at the full lr; `/encS` gives S (`/enc1`: the full lr, as all fine-tunes had "
        "before d180ec0). Rows dated 2026-11-27 01:27 or later ran at d180ec0, with the time-limit planner's "
        "second look (f6bfb22), which uses more of the budget; earlier rows had its first look only.",
        "",
        *grid(rows, current),
        "",
        "Target (fine-tuned at 5 min >= from scratch at 10 min):",
        "",
        *verdicts(rows, current),
        *(["", "The shipped model as it is:", "", *extra] if extra else []),
        "",
        "Earlier fine-tuning rules, replaced after these rows (kept for the record):",
        "",
        *grid(rows, list(notes)),
        *[f"\n{rec}: {note}." for rec, note in notes.items()],
    ]
    return "\n".join(md)


def shipped_recipe(dataset: str) -> str:
    """The shipped model a fine-tune starts from: the one `train` picks, or objects where none fits (ISBI, grey)."""
    return picked(dataset) or "init:objects"


def starting_points(results: Path, command: str) -> str:
    """One table: from scratch vs from the ImageNet encoder vs from the shipped model, per dataset and
    budget, and the best of the three at each (issue 21, item 5)."""
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    machines = sorted({r.get("machine", "?") for r in rows})
    lines = [
        "| dataset (test metric) | budget | from scratch | from the ImageNet encoder | from the shipped model | best |",
        "|---|---|---|---|---|---|",
    ]
    for ds, key in METRIC.items():
        shipped = shipped_recipe(ds)
        for b in sorted({r["budget_s"] for r in rows if r["dataset"] == ds and r["budget_s"]}):
            at = [r for r in rows if r["dataset"] == ds and r["budget_s"] == b]
            means = {rec: [r[key] for r in at if r["recipe"] == rec] for rec in (SCRATCH, "imagenet", shipped)}
            cells = [cell([r for r in at if r["recipe"] == rec], key) for rec in means]
            scored = {rec: float(np.mean(v)) for rec, v in means.items() if v}
            top = max(scored.values(), default=0.0)
            names = {SCRATCH: "from scratch", "imagenet": "ImageNet encoder"}
            label = " = ".join(names.get(r, r) for r, v in scored.items() if v >= top - TIE) or "-"
            lines.append(f"| {ds} ({METRIC_NAME[key]}) | {b / 60:.0f} min | " + " | ".join(cells[:2])
                         + f" | {cells[2]} ({shipped}) | {label} |")  # fmt: skip
    about = (
        "Three starting points at equal budgets, each a `--time-budget` run scored on the dataset's test split with "
        "its best-validation checkpoint: from scratch (`--init none`: the seed network family, planned), from the "
        "ImageNet EfficientNet-Lite0 encoder (`--init none --encoder efficientnet-lite0`, decoder widths planned), "
        "and fine-tuned from the shipped model `unetkit train` picks by itself (`objects` for binary RGB data, "
        "`general` for CamVid's classes; ISBI's grey images fit none, so `objects` is given). Two runs at a time, "
        "each pinned to one of the 2 cores (taskset, OMP_NUM_THREADS=1): a budget is minutes of one core. "
        f"Machine of the rows: {', '.join(machines)}. One seed (0) per cell; best: the starting points within "
        f"{TIE} of the top cell."
    )
    title = "## Where a starting point helps: scratch vs ImageNet encoder vs shipped model (cpu, equal budgets)"
    return "\n".join([title, "", header(command), about, "", *lines])


# What made the rows (the table is rewritten from the results file by any run): two lanes at a time.
STARTING_POINTS_COMMAND = (
    "OMP_NUM_THREADS=1 taskset -c N python benchmarks/finetune.py --budgets 5m,10m --datasets D "
    "--recipes auto,imagenet,init:objects (camvid: init:general) --results benchmarks/finetune_starting_points.jsonl"
    "; then --starting-points --table"
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budgets", default="2m,5m,10m")
    p.add_argument("--datasets", default="isbi2012_em,drive,camvid,grabcut")
    p.add_argument("--recipes", default=f"{SCRATCH},init:objects")
    p.add_argument("--seeds", default="0")
    p.add_argument("--zero-shot", action="store_true", help="only score builtin:objects on all of GrabCut")
    p.add_argument("--table", action="store_true", help="only rewrite the RESULTS.md section")
    p.add_argument("--results", default=str(RESULTS), help="JSON-lines file the runs are appended to")
    p.add_argument(
        "--starting-points", action="store_true", help="write the scratch / ImageNet / shipped table from --results"
    )
    a = p.parse_args()
    results = Path(a.results)
    if a.zero_shot:
        zero_shot(results=results)
    elif not a.table:
        if not quality.DATA.is_dir():
            raise SystemExit(f"{quality.DATA} not found: the datasets live in ../shared/data beside the repo")
        from unetkit.api import parse_duration

        for seed in (int(s) for s in a.seeds.split(",")):
            for budget in a.budgets.split(","):
                for dataset in a.datasets.split(","):
                    for recipe in a.recipes.split(","):
                        quality.run_one(dataset, recipe, parse_duration(budget), seed, results)
    if a.starting_points:
        write_section("finetune-starting-points", starting_points(results, STARTING_POINTS_COMMAND))
    elif results.resolve() == RESULTS.resolve():  # the finetune section is of the default file's rows only
        write_section("finetune", table(results))
    else:
        print(f"rows appended to {results}; --starting-points --table writes their table")


if __name__ == "__main__":
    main()
