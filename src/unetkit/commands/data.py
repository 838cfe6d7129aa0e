"""`unetkit data check DIR`, `unetkit data convert SRC OUT` and `unetkit data demo OUT`."""

from __future__ import annotations

import argparse

from unetkit.config import DataConfig
from unetkit.config.io import add_flags, build, flag_values, load_file
from unetkit.data.check import check_dataset, class_names
from unetkit.data.convert import convert
from unetkit.data.demo import write_demo
from unetkit.errors import ConfigError

HELP = "check a dataset or write the demo dataset"
CHECK_FIELDS = (
    "mask_suffix",
    "mask_mode",
    "mask_threshold",
    "classes",
    "colors",
    "ignore_value",
    "in_channels",
    "split",
    "split_seed",
    "labels",
    "overlap",
    "images",
    "annotator",
)


def add_parser(sub) -> None:
    p = sub.add_parser("data", help=HELP, description=HELP)
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    c = dsub.add_parser("check", help="scan every pair and report problems (non-zero exit if any)")
    c.add_argument("dir", help="dataset folder or CSV file")
    c.add_argument("--config", help="config file whose [data] section describes the masks")
    add_flags(c, DataConfig, title="data", only=CHECK_FIELDS)
    v = dsub.add_parser("convert", help="write a dataset (folder or label file) as unetkit, COCO, YOLO, LabelMe or VOC")
    v.add_argument(
        "src", help="dataset folder, CSV, or label file/folder (COCO, LabelMe, YOLO, VOC, CVAT, Label Studio)"
    )
    v.add_argument("out", help="new folder to write")
    v.add_argument("--to", default="unetkit", help="unetkit | coco | yolo | labelme | voc (default: unetkit)")
    v.add_argument("--polygons", action="store_true", help="coco: traced polygons instead of exact RLE masks")
    v.add_argument("--tolerance", type=float, default=0.5, help="polygon simplification in pixels (default: 0.5)")
    add_flags(v, DataConfig, title="data", only=CHECK_FIELDS)
    d = dsub.add_parser("demo", help="write the procedurally generated demo dataset")
    d.add_argument("out", help="folder to write train/ val/ test/ into")
    d.add_argument("--num-images", type=int, default=240, help="pairs in all (default: 240)")
    d.add_argument("--size", type=int, default=128, help="image side in pixels (default: 128)")
    d.add_argument("--multiclass", action="store_true", help="4 classes instead of binary")
    d.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "demo":
        if args.num_images < 3 or args.size < 16:
            raise ConfigError("data demo: need --num-images >= 3 and --size >= 16")
        out = write_demo(args.out, args.num_images, (args.size, args.size), args.multiclass, args.seed)
        print(f"wrote {args.num_images} demo pairs to {out} (train/ val/ test/)")
        return 0
    if args.data_command == "convert":
        if args.tolerance < 0:
            raise ConfigError("--tolerance: must be >= 0 pixels")
        cfg = build(DataConfig, {**flag_values(args), "csv" if args.src.lower().endswith(".csv") else "root": args.src})
        print(convert(cfg, args.out, args.to, args.polygons, args.tolerance))
        return 0
    if args.data_command == "check":
        values = load_file(args.config).get("data", {}) if args.config else {}
        values.update(flag_values(args))
        values["csv" if args.dir.lower().endswith(".csv") else "root"] = args.dir
        cfg = build(DataConfig, values)
        report, _, spec = check_dataset(cfg)
        names = class_names(cfg, spec) if not cfg.classes or len(cfg.classes) == spec.num_classes else ()
        print(report.format(names))
        return 0 if report.ok else 1
    raise ConfigError(
        "data: say what to do: `unetkit data check DIR`, `unetkit data convert SRC OUT` or `unetkit data demo OUT`"
    )
