"""unetkit: train, evaluate and run U-Net segmentation models.

build_parser() and main(argv) -> exit code; one short cmd_* per subcommand. The CLI only turns
arguments into configs and calls one library function.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path

from unetkit import __version__


class CliError(Exception):
    pass


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    from unetkit.config import flag_index

    group = p.add_argument_group("config fields (override defaults, --preset and --config)")
    for name, (section, tp) in flag_index().items():
        if name == "root":
            continue  # that is --data
        opts = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        is_bool = tp is bool
        group.add_argument(
            *opts,
            dest=f"cfg__{name}",
            default=None,
            metavar="V",
            nargs="?" if is_bool else None,
            const="true" if is_bool else None,
            help=f"{section + '.' if section else ''}{name} ({_type_name(tp)})",
        )


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetkit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"unetkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a U-Net (on built-in demo data when --data is not given)")
    p.add_argument("--data", help="folder with images/ and masks/ (or train/ val/ test/), or a CSV file")
    p.add_argument("--config", help="TOML or JSON config file")
    p.add_argument("--preset", help="seed (the original recipe) or demo")
    p.add_argument("--out", help="run folder (default runs/train-DATE-TIME)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument(
        "--time-budget",
        metavar="DURATION",
        help="e.g. 30m: measure this machine and pick network, size, batch and epochs to fit",
    )
    _add_config_flags(p)

    p = sub.add_parser("evaluate", help="metrics of a checkpoint on a dataset split, at original resolution")
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="dataset folder or CSV")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--out", help="report folder (default: RUN/eval-SPLIT next to the checkpoint's run)")
    p.add_argument("--tta", action="store_true", help="average predictions over the flips used in training")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--largest-component", action="store_true", help="score after keeping each class's largest region")
    p.add_argument("--fill-holes", action="store_true", help="score after filling holes in each class's regions")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--skip-bad", action="store_true", help="skip pairs that fail the data check")
    _add_runtime_flags(p)

    p = sub.add_parser("predict", help="segment images into mask files")
    p.add_argument("checkpoint")
    p.add_argument("inputs", nargs="+", help="image files, folders or globs")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--tta", action="store_true", help="average predictions over the flips used in training")
    p.add_argument("--no-overlay", action="store_true", help="do not write <name>_overlay.png")
    p.add_argument("--probs", action="store_true", help="also write probability maps")
    p.add_argument("--largest-component", action="store_true", help="keep each class's largest region")
    p.add_argument("--fill-holes", action="store_true", help="fill holes inside each class's regions")
    _add_runtime_flags(p)

    p = sub.add_parser("data", help="check a dataset or write the demo dataset")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    c = dsub.add_parser("check", help="scan every pair and report problems (non-zero exit if any)")
    c.add_argument("dir", help="dataset folder or CSV file")
    c.add_argument("--config", help="config file whose [data] section describes the masks")
    for name in (
        "mask_suffix",
        "mask_mode",
        "classes",
        "colors",
        "ignore_value",
        "in_channels",
        "split",
        "split_seed",
    ):
        c.add_argument(f"--{name}", f"--{name.replace('_', '-')}", dest=f"cfg__{name}", default=None, metavar="V")
    d = dsub.add_parser("demo", help="write the procedurally generated demo dataset")
    d.add_argument("out")
    d.add_argument("--num-images", type=int, default=240)
    d.add_argument("--size", type=int, default=128)
    d.add_argument("--multiclass", action="store_true")
    d.add_argument("--seed", type=int, default=0)
    return parser


def _add_runtime_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])


def _flag_values(args: argparse.Namespace) -> dict:
    return {k[5:]: v for k, v in vars(args).items() if k.startswith("cfg__") and v is not None}


def cmd_train(args: argparse.Namespace) -> int:
    from unetkit.config import overrides_from_flags, parse_duration, resolve
    from unetkit.engine import default_run_dir, fit

    flags = _flag_values(args)
    if args.data:
        flags["csv" if args.data.endswith(".csv") else "root"] = args.data
    overrides = overrides_from_flags(flags)
    if args.resume:
        if args.config or args.preset or args.out or args.time_budget:
            raise CliError("--resume continues a run with its saved config; drop --config/--preset/--out/--time-budget")
        result = fit(resume=args.resume, overrides=overrides)
    else:
        preset = args.preset or (None if args.data or args.config else "demo")
        config = resolve(preset, args.config, overrides)
        out = Path(args.out) if args.out else default_run_dir()
        if args.time_budget:
            from unetkit.autoconfig import plan

            config = plan(config, parse_duration(args.time_budget), out)
        result = fit(config, out=out)
    return 130 if result.stopped == "interrupted" else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from unetkit.evaluate import evaluate_checkpoint

    out = args.out or Path(args.checkpoint).resolve().parent.parent / f"eval-{args.split}"
    summary = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        args.split,
        out,
        args.tta,
        args.batch_size,
        args.device,
        args.precision,
        args.skip_bad,
        progress=not args.json,
        largest_component=args.largest_component,
        fill_holes=args.fill_holes,
    )
    if args.json:
        summary = {k: v for k, v in summary.items() if k != "confusion_matrix"}
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{summary['num_images']} images ({args.split}): mean IoU {summary['mean_iou']:.4f}, "
            f"mean Dice {summary['mean_dice']:.4f}, pixel accuracy {summary['pixel_accuracy']:.4f}"
        )
        for c in summary["classes"]:
            iou = "n/a" if c["iou"] is None else f"{c['iou']:.4f}"
            dice = "n/a" if c["dice"] is None else f"{c['dice']:.4f}"
            print(f"  {c['name']:>16}: IoU {iou}  Dice {dice}")
        print(f"reports: {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from unetkit.predict import load, predict_files

    seg = load(args.checkpoint, args.device, args.precision)
    written = predict_files(
        seg,
        args.inputs,
        Path(args.out),
        args.tta,
        not args.no_overlay,
        args.probs,
        args.largest_component,
        args.fill_holes,
        progress=sys.stderr.isatty(),
    )
    print(f"wrote {len(written)} mask(s) to {args.out}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "demo":
        from unetkit.demo import write_demo

        out = write_demo(args.out, args.num_images, (args.size, args.size), args.multiclass, args.seed)
        print(f"wrote {args.num_images} demo pairs to {out} (train/ val/ test/)")
        return 0
    if args.data_command == "check":
        from unetkit.config import DataConfig, build, load_file
        from unetkit.data import check_dataset, class_names

        values = load_file(args.config).get("data", {}) if args.config else {}
        values.update(_flag_values(args))
        values["csv" if args.dir.endswith(".csv") else "root"] = args.dir
        cfg = build(DataConfig, values)
        report, _, spec = check_dataset(cfg)
        print(report.format(class_names(cfg, spec) if not cfg.classes or len(cfg.classes) == spec.num_classes else ()))
        return 0 if report.ok else 1
    raise CliError("say what to do: `unetkit data check DIR` or `unetkit data demo OUT`")


COMMANDS: dict[str, typing.Callable[[argparse.Namespace], int]] = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "data": cmd_data,
}


def main(argv: list[str] | None = None) -> int:
    from unetkit.checkpoint import CheckpointError
    from unetkit.config import ConfigError
    from unetkit.engine import TrainingError
    from unetkit.imageio import DataError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, DataError, CheckpointError, TrainingError, CliError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(
            f"error: cannot write or read {e.filename}: {e.strerror}; check the path and its permissions",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """Under torchrun: leave the process group before the interpreter exits, as PyTorch asks;
    a gloo group torn down during interpreter shutdown can abort the process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
