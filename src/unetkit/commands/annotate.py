"""`unetkit annotate DIR [--model CKPT]`: label a folder's images in the browser, starting from the
model's automatic masks (serve/annotate.py), on loopback by default."""

from __future__ import annotations

import argparse
from pathlib import Path

from unetkit.data.labels import export_labels
from unetkit.deploy.engines import load
from unetkit.errors import ConfigError

HELP = "label a folder's images in the browser, starting from a model's masks (clicks fix them)"


def add_parser(sub) -> None:
    p = sub.add_parser("annotate", help=HELP, description=HELP)
    p.add_argument("folder", help="folder with images/; accepted masks are written to FOLDER/masks/<stem>.png")
    p.add_argument(
        "--model",
        default="builtin:clicks",
        help="checkpoint (.pt or .safetensors) or builtin:NAME; a click model enables clicks (default: builtin:clicks)",
    )
    p.add_argument("--zoom-in", action=argparse.BooleanOptionalAction, default=True,
                   help="from the 2nd click, predict on a box around the object (RITM's zoom-in), also when a "
                   "retrain scores its models (default: on)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument(
        "--engine",
        default="torch",
        help="torch | onnxruntime | openvino | onnxruntime-int8 | openvino-int8 | auto (default: torch)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    add_retrain_flags(p, "retrain the click model on the accepted masks while you label (default: on)")

    export = ("write the labels and exit: coco OUT.json (RLE instances), yolo|labelme|voc OUT (a new folder in "
              "that layout) or unetkit OUT.csv (a split)")  # fmt: skip
    p.add_argument("--export", nargs=2, metavar=("FORMAT", "OUT"), help=export)
    p.add_argument(
        "--classes",
        default=None,
        help="class names, background first, comma-separated: a multi-class folder (the page picks the class of each "
        "clicked object) and the COCO categories",
    )


def add_retrain_flags(p, learn_help: str) -> None:
    """The learning flags `annotate` and `label-studio` share (serve/learning.py's LearnConfig)."""
    from unetkit.serve.learning import LearnConfig  # no optional dependency: only the defaults

    d = LearnConfig()
    p.add_argument("--learn", action=argparse.BooleanOptionalAction, default=True, help=learn_help)
    p.add_argument("--retrain-every", type=positive(int), default=d.every,
                   help=f"retrain after this many newly accepted masks (default: {d.every})")  # fmt: skip
    p.add_argument("--retrain-minutes", type=positive(float), default=d.minutes,
                   help=f"training time bound of one retrain (default: {d.minutes:g})")  # fmt: skip
    p.add_argument("--retrain-heldout", choices=("latest+earlier", "latest", "hash"), default=d.heldout,
                   help="which accepted masks score a retrained model, which must do no worse on each group: the "
                        "latest ones and a stable share of the earlier ones (default), the latest alone, or a "
                        "stable share by name")  # fmt: skip
    p.add_argument("--retrain-threads", type=positive(int), default=d.threads,
                   help=f"compute threads of a retrain, at nice 10 (default: every core, {d.threads})")  # fmt: skip
    p.add_argument("--retrain-keep-base", type=share, default=d.keep_base,
                   help="the starting model's share in every retrained model: its weights and the retrained ones "
                        "averaged, so objects unlike those labelled so far are not forgotten (0-1; default: 0 with "
                        "--retrain-route, 0.5 without; 0 = the retrained model alone)")  # fmt: skip
    p.add_argument("--retrain-route", action=argparse.BooleanOptionalAction, default=d.route,
                   help="serve each picture with the starting or the retrained model, whichever needed fewer clicks "
                        "on the held-out pictures most like it (a folder of several kinds of objects keeps the "
                        "starting model where a retrain does worse; default: on)")  # fmt: skip


def learn_config(args: argparse.Namespace):
    """LearnConfig from add_retrain_flags' flags (and --zoom-in)."""
    from unetkit.serve.learning import LearnConfig

    return LearnConfig(every=args.retrain_every, minutes=args.retrain_minutes, threads=args.retrain_threads,
                       zoom_in=args.zoom_in, heldout=args.retrain_heldout,
                       keep_base=args.retrain_keep_base, route=args.retrain_route)  # fmt: skip


def share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a share between 0 and 1")
    return value


def positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r}: give a number above 0")
        return value

    return parse


def run(args: argparse.Namespace) -> int:
    names = [c.strip() for c in args.classes.split(",")] if args.classes else None
    if names is not None and len(names) < 2:
        raise ConfigError(f"--classes {args.classes!r}: give at least two names, background first")
    if args.export:
        print(export_labels(Path(args.folder), args.export[0], Path(args.export[1]), names))
        return 0

    try:
        import uvicorn
    except ImportError:
        raise ConfigError("annotate: needs fastapi and uvicorn; pip install 'unetkit[serve]'") from None
    from unetkit.serve.annotate import LearnSpec, annotate_routes, scan
    from unetkit.serve.app import create_app
    from unetkit.serve.clicks import ClickOptions
    from unetkit.serve.learning import load_state, model_path

    folder = Path(args.folder)
    config = learn_config(args)
    learn = LearnSpec(folder, args.model, config, args.engine, args.device) if args.learn else None
    state = load_state(folder, args.model)
    model = model_path(folder, state) if args.learn else args.model
    if model != args.model:
        print(f"annotate: resuming with the model learnt here, version {state['version']} ({model})")
    seg = load(model, args.engine, args.device, "auto")
    items = scan(folder, seg)
    app = create_app(seg, add_ons=[annotate_routes(items, learn, names)], clicks=ClickOptions(args.zoom_in))
    done = sum(it.mask.exists() for it in items)
    print(f"annotating {args.folder}: {len(items)} images, {done} with masks; open http://{args.host}:{args.port}/")
    if learn:
        print(f"learning: a retrain after every {config.every} accepted masks, {config.minutes:g} min each")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
