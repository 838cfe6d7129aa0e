"""`unetkit models`: the pretrained weights shipped with unetkit, with what each is for and its scores."""

from __future__ import annotations

import argparse
import json

from unetkit.infer.builtin import available

HELP = "list the pretrained models shipped with unetkit (use one with --init builtin:NAME)"


def add_parser(sub) -> None:
    p = sub.add_parser("models", help=HELP, description=HELP)
    p.add_argument("--json", action="store_true", help="print the model cards as JSON")


def run(args: argparse.Namespace) -> int:

    models = available()
    if args.json:
        print(json.dumps([{"name": b.name, "ref": b.ref, **b.card} for b in models], indent=1))
        return 0
    if not models:
        print("no shipped models are installed (unetkit/weights/ is empty)")
        return 0
    for b in models:
        c = b.card
        size_kb = b.path.stat().st_size / 1024
        scores = "; ".join(f"{k} {v}" for k, v in c.get("scores", {}).items())
        print(f"{b.ref}  ({c['kind']}, {c['in_channels']} image channels, classes: {', '.join(b.classes)})")
        print(f"    {c['summary']}")
        storage = c.get("storage", "").split(" ")[0]
        net = f"{c['encoder']} encoder, decoder widths" if c.get("encoder", "unet") != "unet" else "network widths"
        print(f"    {net} {c['widths']}, {c['parameters']:,} parameters, {size_kb:.0f} KiB {storage}; "
              f"trained on {c['trained_on']}")  # fmt: skip
        if scores:
            print(f"    scores: {scores}")
        print(f"    card: {b.path.with_suffix('.md')}")
    print("start a run from one: unetkit train --data DIR --init builtin:NAME  (--init none: from scratch)")
    return 0
