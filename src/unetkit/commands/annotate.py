"""`unetkit annotate DIR [--model CKPT]`: label a folder's images in the browser, starting from the
model's automatic masks (serve/annotate.py), on loopback by default."""

from __future__ import annotations

import argparse
from pathlib import Path

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
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--engine", default="torch", help="torch | onnxruntime | openvino | auto (default: torch)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")


def run(args: argparse.Namespace) -> int:

    try:
        import uvicorn
    except ImportError:
        raise ConfigError("annotate: needs fastapi and uvicorn; pip install 'unetkit[serve]'") from None
    from unetkit.serve.annotate import annotate_routes, scan
    from unetkit.serve.app import create_app

    seg = load(args.model, args.engine, args.device, "auto")
    items = scan(Path(args.folder), seg)
    app = create_app(seg, add_ons=[annotate_routes(items)])
    done = sum(it.mask.exists() for it in items)
    print(f"annotating {args.folder}: {len(items)} images, {done} with masks; open http://{args.host}:{args.port}/")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
