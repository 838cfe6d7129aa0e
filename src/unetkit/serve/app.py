"""`unetkit serve`: an HTTP API and a browser page around a Segmenter (FastAPI + uvicorn, imported
only by the serve and annotate commands: `pip install 'unetkit[serve]'`). Limits and uploads are
http.py's. Add-ons join through one pattern: an `AddOn` is called with (app, segmenter, limits),
registers its routes and returns what it adds to GET /v1/model. A kind of model brings its own
(KIND_ADD_ONS: click models get clicks.py's routes); a command adds more (annotate's routes)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from fastapi import FastAPI, File, Query, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response

from unetkit import plots
from unetkit._version import __version__
from unetkit.deploy.engines import load
from unetkit.infer.predict import Segmenter
from unetkit.runtime import release_openmp_threads
from unetkit.serve.clicks import ClickOptions, add_click_routes
from unetkit.serve.http import Gate, Limits, Served, UploadError, busy, gated, mask_png, read_upload

PAGE = Path(__file__).with_name("static") / "index.html"
AddOn = Callable[[FastAPI, Segmenter, Limits], dict]
KIND_ADD_ONS: dict[str, tuple[AddOn, ...]] = {"segmentation": (), "interactive": (add_click_routes,)}


@dataclass(frozen=True)
class ServeSpec:
    """What each server process needs to build its app: one process, or one per uvicorn worker."""

    checkpoint: str
    engine: str = "torch"
    device: str = "auto"
    limits: Limits = Limits()
    threads: int = 0  # torch threads in this process; 0 = torch's default (all cores)
    zoom_in: bool = ClickOptions.zoom_in  # click models: RITM's zoom-in (serve/clicks.py)


SPEC_ENV = "UNETKIT_SERVE_SPEC"


def build_app(spec: ServeSpec):
    """Load the model (weights only) and wrap it in the app."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    seg = load(spec.checkpoint, spec.engine, spec.device, "auto")
    return create_app(seg, spec.limits, clicks=ClickOptions(spec.zoom_in))


def app_from_env():
    """uvicorn's factory for --workers > 1: every worker process loads its own model from the spec
    the parent put in the environment (uvicorn starts workers from an import string, not an object)."""
    raw = json.loads(os.environ[SPEC_ENV])
    return build_app(ServeSpec(**{**raw, "limits": Limits(**raw["limits"])}))


def model_info(seg) -> dict:
    meta = seg.meta
    return {
        "classes": list(meta.classes),
        "colors": plots.legend_colors(len(meta.classes)),
        "binary": meta.binary,
        "threshold": meta.threshold,
        "interactive": meta.interactive,
        "input": {"in_channels": meta.in_channels, "resize": meta.resize, "size": list(meta.size)},
        "engine": seg.engine,
        "unetkit_version": __version__,
    }


def create_app(
    seg: Segmenter,
    limits: Limits | None = None,
    extra_info: dict | None = None,
    add_ons: Sequence[AddOn] = (),
    clicks: ClickOptions | None = None,
):
    """The app around a Segmenter, with its kind's add-ons and then `add_ons`; `extra_info` and what each
    add-on returns join GET /v1/model (the page reads its modes there). `clicks`: how a click model takes
    clicks (app.state.click_options, read by the click routes)."""
    limits = limits or Limits()
    release_openmp_threads()  # the model was loaded on this thread and runs on the gate's (see there)
    gate = Gate(limits, release_openmp=seg.engine == "torch")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        gate.pool.shutdown(wait=False)  # its thread ends, and with it its OpenMP team

    app = FastAPI(title="unetkit", version=__version__, description="U-Net segmentation of uploaded images",
                  lifespan=lifespan)  # fmt: skip
    app.state.gate = gate
    app.state.served = Served(seg)
    app.state.click_options = clicks or ClickOptions()
    info = {**model_info(seg), **(extra_info or {})}
    app.add_middleware(RequestLog)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "pid": os.getpid()}

    @app.get("/v1/model")
    def model() -> dict:
        return {**info, "limits": asdict(limits)}

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text()

    add_predict_route(app, seg, limits)
    for add_on in (*KIND_ADD_ONS[seg.meta.kind], *add_ons):
        info.update(add_on(app, seg, limits))
    return app


class RequestLog:
    """One stderr line per request: method, path, status, upload size, time. Plain ASGI, not
    `app.middleware("http")`: that wraps every request and response in extra tasks and streams,
    a cost paid on every click."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t, status = time.perf_counter(), [500]

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            size = dict(scope["headers"]).get(b"content-length", b"0").decode()
            ms = (time.perf_counter() - t) * 1000
            print(f"{scope['method']} {scope['path']} {status[0]} {size} B {ms:.0f} ms", file=sys.stderr)


def add_predict_route(app: FastAPI, seg: Segmenter, limits: Limits) -> None:
    """POST /v1/predict: an image in, its mask out (PNG, or JSON with class fractions)."""
    classes = list(seg.classes)  # a swapped-in model has the same classes

    @app.post("/v1/predict")
    async def predict(
        image: Annotated[UploadFile, File()],
        format: Annotated[str, Query(pattern="^(png|json)$")] = "png",
        tta: bool = False,
    ):
        if app.state.gate.full():
            return busy()
        seg = app.state.served.seg
        data = await image.read(limits.max_bytes + 1)
        try:
            array = read_upload(data, limits, seg.in_channels)
        except UploadError as e:
            return JSONResponse({"error": str(e)}, e.status)
        mask = await gated(app.state.gate, seg.predict, array, tta)
        if isinstance(mask, Response):
            return mask
        png = mask_png(mask, len(classes))
        if format == "png":
            return Response(png, media_type="image/png")
        counts = np.bincount(mask.ravel(), minlength=len(classes))
        total = int(mask.size)
        return {
            "width": int(mask.shape[1]),
            "height": int(mask.shape[0]),
            "classes": [
                {"name": n, "pixels": int(c), "fraction": float(c) / total}
                for n, c in zip(classes, counts, strict=False)
            ],
            "mask_png_base64": base64.b64encode(png).decode(),
        }
