"""`unetkit serve CKPT`: the HTTP API and page of serve.py under uvicorn, on loopback by default."""

from __future__ import annotations

import argparse

HELP = "serve a model over HTTP (API + browser page)"


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help=HELP, description=HELP)
    p.add_argument("checkpoint", help="checkpoint (.pt) or .safetensors export")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--engine", default="torch", help="torch | onnxruntime | openvino | auto (default: torch)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--workers", type=int, default=1, help="concurrent inferences (default: 1)")
    p.add_argument("--queue", type=int, default=8, help="requests that may wait before 503 (default: 8)")
    p.add_argument("--max-upload-mb", type=float, default=20, help="largest upload (default: 20)")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="largest image area (default: 40000000)")
    p.add_argument("--timeout", type=float, default=60, help="seconds per inference (default: 60)")


def run(args: argparse.Namespace) -> int:
    from unetkit.errors import ConfigError

    try:
        import uvicorn
    except ImportError:
        raise ConfigError("serve: needs fastapi and uvicorn; pip install 'unetkit[serve]'") from None
    from unetkit.predict import Segmenter
    from unetkit.serve import Limits, create_app

    if args.workers < 1 or args.queue < 0 or args.max_upload_mb <= 0 or args.max_pixels < 1 or args.timeout <= 0:
        raise ConfigError("serve: --workers >= 1, --queue >= 0, and positive --max-upload-mb/--max-pixels/--timeout")
    seg = Segmenter.load(args.checkpoint, args.device, "auto", args.engine)
    limits = Limits(int(args.max_upload_mb * 2**20), args.max_pixels, args.workers, args.queue, args.timeout)
    print(f"serving {args.checkpoint} on http://{args.host}:{args.port}/ (API docs at /docs)")
    uvicorn.run(create_app(seg, limits), host=args.host, port=args.port, log_level="warning")
    return 0
