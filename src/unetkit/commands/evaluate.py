"""`unetkit evaluate`: flags -> EvaluateConfig -> evaluation.evaluate_checkpoint, and its printout."""

from __future__ import annotations

import argparse
import json
import sys

from unetkit.config import EvaluateConfig
from unetkit.configio import add_flags, build, flag_values

HELP = "metrics of a checkpoint on a dataset, at the masks' own resolution"


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help=HELP, description=HELP)
    p.add_argument("checkpoint", help="checkpoint file (.pt) written by unetkit train, or builtin:NAME")
    p.add_argument("--data", required=True, help="dataset folder or CSV file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    add_flags(p, EvaluateConfig, skip=("checkpoint", "data"), title="evaluation")


def run(args: argparse.Namespace) -> int:
    from unetkit.evaluation import default_out, evaluate_checkpoint

    config = build(EvaluateConfig, {**flag_values(args), "checkpoint": args.checkpoint, "data": args.data})
    if config.clicks:
        return run_clicks(config, args.json)
    summary = evaluate_checkpoint(config, progress=not args.json)
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


def run_clicks(config: EvaluateConfig, as_json: bool) -> int:
    from unetkit.click_eval import evaluate_clicks
    from unetkit.evaluation import default_out

    summary = evaluate_clicks(config, progress=not as_json)
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
