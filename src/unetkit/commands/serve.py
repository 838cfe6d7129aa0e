"""`unetkit serve CKPT`: the HTTP API and page of serve/app.py under uvicorn, on loopback by default."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from unetkit.errors import ConfigError
from unetkit.infer import builtin

HELP = "serve a model over HTTP (API + browser page)"


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help=HELP, description=HELP)
    p.add_argument("checkpoint", help="checkpoint (.pt), .safetensors export, or builtin:NAME (unetkit models)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument(
        "--engine",
        default="torch",
        help="torch | onnxruntime | openvino | onnxruntime-int8 | openvino-int8 | auto (default: torch)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes, each with its own model and share of the cores (default: 1)",
    )
    p.add_argument("--zoom-in", action=argparse.BooleanOptionalAction, default=True,
                   help="click models: from the 2nd click, predict on a box around the object (RITM's zoom-in; "
                   "a request's zoom_in field overrides) (default: on)")  # fmt: skip
    p.add_argument("--slots", type=int, default=1, help="concurrent inferences per process (default: 1)")
    p.add_argument("--queue", type=int, default=8, help="requests per process that may wait before 503 (default: 8)")
    p.add_argument("--max-upload-mb", type=float, default=20, help="largest upload (default: 20)")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="largest image area (default: 40000000)")
    p.add_argument("--timeout", type=float, default=60, help="seconds per inference (default: 60)")


def run(args: argparse.Namespace) -> int:

    try:
        import uvicorn
    except ImportError:
        raise ConfigError("serve: needs fastapi and uvicorn; pip install 'unetkit[serve]'") from None
    from unetkit.serve.app import SPEC_ENV, Limits, ServeSpec, build_app

    numbers = (args.workers, args.slots, args.max_upload_mb, args.max_pixels, args.timeout)
    if min(numbers) <= 0 or args.queue < 0:
        raise ConfigError(
            "serve: --workers and --slots >= 1, --queue >= 0, and positive --max-upload-mb/--max-pixels/--timeout"
        )
    checkpoint = builtin.get(args.checkpoint).path if builtin.is_ref(args.checkpoint) else args.checkpoint
    if not os.path.exists(checkpoint):
        raise ConfigError(
            f"{args.checkpoint}: checkpoint not found; give the path to a .pt or .safetensors file, or builtin:NAME"
        )
    limits = Limits(int(args.max_upload_mb * 2**20), args.max_pixels, args.slots, args.queue, args.timeout)
    threads = max(1, (os.cpu_count() or 1) // args.workers) if args.workers > 1 else 0
    spec = ServeSpec(os.path.abspath(checkpoint), args.engine, args.device, limits, threads, args.zoom_in)
    where = f"http://{args.host}:{args.port}/"
    if args.workers == 1:
        app = build_app(spec)  # load errors surface here, before the port is bound
        print(f"serving {args.checkpoint} on {where} (API docs at /docs)", flush=True)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0
    build_app(spec)  # fail fast in the parent (bad checkpoint, missing engine) rather than in N workers
    os.environ[SPEC_ENV] = json.dumps(dataclasses.asdict(spec))
    print(f"serving {args.checkpoint} on {where} with {args.workers} processes x {threads} threads", flush=True)
    uvicorn.run(
        "unetkit.serve.app:app_from_env", factory=True, workers=args.workers,
        host=args.host, port=args.port, log_level="warning",
    )  # fmt: skip
    return 0
