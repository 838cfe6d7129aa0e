"""`unetkit label-studio MODEL`: unetkit as a Label Studio ML backend (serve/ls_backend.py), on loopback
by default. Connect it in Label Studio (project Settings -> Model -> Connect Model, this URL) and paste the
labelling config `--config` prints."""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path

from unetkit.commands.annotate import add_retrain_flags, learn_config, positive
from unetkit.deploy.engines import load
from unetkit.errors import ConfigError

HELP = "serve a model as a Label Studio ML backend (pre-labels, smart keypoints, learning)"


def add_parser(sub) -> None:
    p = sub.add_parser("label-studio", help=HELP, description=HELP)
    p.add_argument("model", nargs="?", default="builtin:clicks",
                   help="checkpoint (.pt or .safetensors) or builtin:NAME (default: builtin:clicks)")  # fmt: skip
    p.add_argument("--config", action="store_true", help="print a labelling config to paste into Label Studio, exit")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=9090, help="port (default: 9090, Label Studio's usual)")
    p.add_argument("--label-studio-url", default=os.environ.get("LABEL_STUDIO_URL", ""),
                   help="Label Studio's address, to read its uploaded images (default: $LABEL_STUDIO_URL)")  # fmt: skip
    p.add_argument("--api-key", default=os.environ.get("LABEL_STUDIO_API_KEY", ""),
                   help="a Label Studio access token (Account & Settings; default: $LABEL_STUDIO_API_KEY)")  # fmt: skip
    p.add_argument("--state", default="label-studio-state",
                   help="folder of the accepted masks and learnt models (default: ./label-studio-state)")  # fmt: skip
    p.add_argument("--engine", default="torch", help="torch | onnxruntime | openvino | auto (default: torch)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--zoom-in", action=argparse.BooleanOptionalAction, default=True,
                   help="from the 2nd keypoint, predict on a box around the object (default: on)")  # fmt: skip
    p.add_argument("--auto-masks", action=argparse.BooleanOptionalAction, default=True,
                   help="click models: pre-label tasks with the automatic mask (no clicks) (default: on)")  # fmt: skip
    add_retrain_flags(p, "click models: retrain on submitted annotations (default: on)")
    p.add_argument("--slots", type=positive(int), default=1, help="concurrent inferences (default: 1)")
    p.add_argument("--queue", type=int, default=8, help="requests that may wait before 503 (default: 8)")
    p.add_argument("--max-upload-mb", type=positive(float), default=20, help="largest image (default: 20)")
    p.add_argument("--max-pixels", type=positive(int), default=40_000_000, help="largest image area")
    p.add_argument("--timeout", type=positive(float), default=60, help="seconds per request (default: 60)")


def run(args: argparse.Namespace) -> int:
    from unetkit.serve.ls_config import EXAMPLE

    if args.config:
        print(EXAMPLE)
        return 0
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("label-studio: needs fastapi and uvicorn; pip install 'unetkit[serve]'") from None
    app = build(args)
    print(f"Label Studio ML backend for {args.model} on http://{args.host}:{args.port} (state in {args.state})",
          flush=True)  # fmt: skip
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def build(args: argparse.Namespace):
    """The app, with the last accepted model of the state folder served (a restart resumes with it)."""
    from unetkit.serve.http import Limits, Served
    from unetkit.serve.learning import load_state, model_path
    from unetkit.serve.ls_backend import Backend, create_backend, learner_for
    from unetkit.serve.ls_store import AnnotationStore
    from unetkit.serve.ls_tasks import Source
    from unetkit.serve.routing import route_setter

    if args.queue < 0:
        raise ConfigError("label-studio: --queue must be >= 0")
    state = Path(args.state)
    store = AnnotationStore(state)
    saved = load_state(state, args.model)
    current = model_path(state, saved)
    seg = load(current, args.engine, args.device, "auto")
    limits = Limits(int(args.max_upload_mb * 2**20), args.max_pixels, args.slots, args.queue, args.timeout)
    served = Served(seg)
    backend = Backend(
        served,
        Source(args.label_studio_url, args.api_key),
        limits,
        store,
        zoom_in=args.zoom_in,
        auto=args.auto_masks,
        served_version=saved["version"],
    )

    def swap(path: str) -> None:
        served.seg = load(path, args.engine, args.device, "auto", log=lambda m: None)

    learn = learn_config(args)
    base = functools.partial(load, args.model, args.engine, args.device, "auto", log=lambda m: None)
    route = route_setter(served, base)
    backend.learner = learner_for(seg, state, args.model, learn if args.learn else None, store, swap, route)
    if backend.learner is None and learn.route and saved.get("route"):
        route(saved["route"])  # learning off now: the model learnt still answers only the pictures it was routed
    return create_backend(backend)
