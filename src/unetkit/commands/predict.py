"""`unetkit predict`: flags -> PredictConfig -> infer.predict.predict_files."""

from __future__ import annotations

import argparse
import sys

from unetkit.config import PredictConfig
from unetkit.config.io import FLAG_PREFIX, add_flags, build, flag_values
from unetkit.deploy.engines import load
from unetkit.infer.predict import predict_files

HELP = "segment images into mask files"


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help=HELP, description=HELP)
    p.add_argument("checkpoint", help="checkpoint file (.pt) written by unetkit train, or builtin:NAME")
    p.add_argument("inputs", nargs="+", help="image files, folders or globs")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--no-overlay",
        dest=FLAG_PREFIX + "overlay",
        action="store_const",
        const="false",
        help="same as --overlay false",
    )
    add_flags(p, PredictConfig, skip=("checkpoint", "inputs", "out"), title="prediction")


def run(args: argparse.Namespace) -> int:

    values = {**flag_values(args), "checkpoint": args.checkpoint, "inputs": list(args.inputs), "out": args.out}
    config = build(PredictConfig, values)
    seg = load(config.checkpoint, config.engine, config.device, config.precision)
    written = predict_files(seg, config, progress=sys.stderr.isatty())
    print(f"wrote {len(written)} mask(s) to {config.out}")
    return 0
