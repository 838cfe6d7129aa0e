"""`unetkit train`: flags -> TrainConfig -> training.loop.fit."""

from __future__ import annotations

import argparse
from pathlib import Path

from unetkit.config import TrainConfig, parse_duration
from unetkit.config.io import add_flags, flag_values, overrides_from_flags, resolve
from unetkit.errors import ConfigError
from unetkit.training.loop import fit

HELP = "train a U-Net (on built-in demo data when --data is not given)"


def add_parser(sub) -> None:
    p = sub.add_parser("train", help=HELP, description=HELP)
    d = p.add_argument_group("data")
    d.add_argument("--data", help="folder with images/ and masks/ (or train/ val/ test/), or a CSV file")
    g = p.add_argument_group("run")
    g.add_argument("--config", help="TOML or JSON config file (sections data, model, augment, optim, loss)")
    g.add_argument("--preset", help="seed (the original recipe) or demo; default: demo without --data")
    g.add_argument("--out", help="run folder (default: runs/train-DATE-TIME)")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    g.add_argument(
        "--time-budget",
        metavar="DURATION",
        help="e.g. 30m, counted from the command's start: measure this machine and pick network, size, batch "
        "and epochs to fit",
    )
    add_flags(p, TrainConfig, skip=("root",), title="run", groups={"data": d, "run": g})


def run(args: argparse.Namespace) -> int:

    flags = flag_values(args)
    if args.data:
        flags["csv" if args.data.lower().endswith(".csv") else "root"] = args.data
    overrides = overrides_from_flags(flags)
    if args.resume:
        if args.config or args.preset or args.out or args.time_budget:
            raise ConfigError(
                "resume: --resume continues a run with its saved config; drop --config/--preset/--out/--time-budget"
            )
        result = fit(resume=args.resume, overrides=overrides)
    else:
        preset = args.preset or (None if args.data or args.config else "demo")
        config = resolve(preset, args.config, overrides)
        budget = parse_duration(args.time_budget) if args.time_budget else 0.0
        if budget:  # the user's wall clock, from the command's start
            budget = max(1.0, budget - getattr(args, "startup_s", 0.0))
        result = fit(config, out=Path(args.out) if args.out else None, time_budget=budget)
    return 130 if result.stopped == "interrupted" else 0
