"""`unetkit evaluate`: flags -> EvaluateConfig -> infer.evaluation.evaluate_checkpoint (or, with
--clicks, interactive.evaluate.evaluate_clicks), and its printout."""

from __future__ import annotations

import argparse
import json
import sys

from unetkit.config import EvaluateConfig
from unetkit.config.io import add_flags, build, flag_values
from unetkit.deploy.engines import load
from unetkit.infer.evaluation import default_out, evaluate_checkpoint
from unetkit.interactive.evaluate import evaluate_clicks

HELP = "metrics of a checkpoint on a dataset, at the masks' own resolution"


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help=HELP, description=HELP)
    p.add_argument("checkpoint", help="checkpoint file (.pt) written by unetkit train, or builtin:NAME")
    p.add_argument("--data", required=True, help="dataset folder or CSV file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    add_flags(p, EvaluateConfig, skip=("checkpoint", "data"), title="evaluation")


def run(args: argparse.Namespace) -> int:

    config = build(EvaluateConfig, {**flag_values(args), "checkpoint": args.checkpoint, "data": args.data})
    seg = load(config.checkpoint, config.engine, config.device, config.precision)
    if config.clicks:
        return run_clicks(config, seg, args.json)
    summary = evaluate_checkpoint(config, not args.json, seg)
    for note in summary["notes"]:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "confusion_matrix"}, indent=2))
        return 0
    print(
        f"{summary['num_images']} images ({summary['split']}): mean IoU {summary['mean_iou']:.4f}, "
        f"mean Dice {summary['mean_dice']:.4f}, pixel accuracy {summary['pixel_accuracy']:.4f}"
    )
    for c in summary["classes"]:
        iou = "n/a" if c["iou"] is None else f"{c['iou']:.4f}"
        dice = "n/a" if c["dice"] is None else f"{c['dice']:.4f}"
        print(f"  {c['name']:>16}: IoU {iou}  Dice {dice}")
    print(f"reports: {default_out(config, summary['split'])}")
    return 0


def run_clicks(config: EvaluateConfig, seg, as_json: bool) -> int:

    summary = evaluate_clicks(config, not as_json, seg)
    for note in summary["notes"]:
        print(f"note: {note}", file=sys.stderr)
    if as_json:
        print(json.dumps(summary, indent=2))
        return 0
    ious = summary["iou_at_clicks"]
    at = ", ".join(f"{k}: {ious[k - 1]:.3f}" for k in (1, 3, 5, 10, 20) if k <= len(ious))
    print(
        f"{summary['num_images']} images ({summary['split']}), up to {summary['max_clicks']} clicks: "
        f"NoC@85 {summary['noc85']:.2f}, NoC@90 {summary['noc90']:.2f}, NoF@90 {summary['nof90']}; "
        f"IoU after clicks {at}; {summary['seconds_per_click'] * 1000:.0f} ms/click"
    )
    print(f"reports: {default_out(config, summary['split'] + '-clicks')}")
    return 0
