"""`unetkit serve`: an HTTP API and a browser page around a Segmenter (FastAPI + uvicorn, imported
lazily: `pip install 'unetkit[serve]'`). Uploads are bounded (bytes and pixels, checked before decoding),
sniffed by content, and inference runs in a bounded number of slots with a bounded queue: beyond it,
503 with Retry-After, never unbounded memory."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile  # this module is imported only by `serve`
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image, UnidentifiedImageError

from unetkit import __version__, plots
from unetkit.errors import DataError
from unetkit.imageio import image_to_array, to_channels

FORMATS = {"PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF", "PPM"}
PAGE = Path(__file__).with_name("static") / "index.html"


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    slots: int = 1  # concurrent inferences
    queue: int = 8  # requests waiting for a slot before 503
    timeout_s: float = 60.0


@dataclass(frozen=True)
class ServeSpec:
    """What each server process needs to build its app: one process, or one per uvicorn worker."""

    checkpoint: str
    engine: str = "torch"
    device: str = "auto"
    limits: Limits = Limits()
    threads: int = 0  # torch threads in this process; 0 = torch's default (all cores)


SPEC_ENV = "UNETKIT_SERVE_SPEC"


def build_app(spec: ServeSpec):
    """Load the model (weights only) and wrap it in the app."""
    import torch

    from unetkit.predict import Segmenter

    if spec.threads:
        torch.set_num_threads(spec.threads)
    return create_app(Segmenter.load(spec.checkpoint, spec.device, "auto", spec.engine), spec.limits)


def app_from_env():
    """uvicorn's factory for --workers > 1: every worker process loads its own model from the spec
    the parent put in the environment (uvicorn starts workers from an import string, not an object)."""
    raw = json.loads(os.environ[SPEC_ENV])
    return build_app(ServeSpec(**{**raw, "limits": Limits(**raw["limits"])}))


class Gate:
    """At most `slots` requests run and `queue` wait; the rest are turned away at once."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.semaphore = asyncio.Semaphore(limits.slots)
        self.waiting = 0

    def full(self) -> bool:
        return self.semaphore.locked() and self.waiting >= self.limits.queue


def model_info(seg) -> dict:
    meta = seg.meta
    palette = plots.palette(len(meta.classes))
    return {
        "classes": list(meta.classes),
        "colors": [palette[i].tolist() for i in range(len(meta.classes))],
        "binary": meta.binary,
        "threshold": meta.threshold,
        "interactive": meta.interactive,
        "input": {"in_channels": meta.in_channels, "resize": meta.resize, "size": list(meta.size)},
        "engine": seg.engine,
        "unetkit_version": __version__,
    }


def read_upload(data: bytes, limits: Limits, in_channels: int) -> np.ndarray:
    """Bytes -> float (H, W, C) image, or (status, message) as a ValueError for the client."""
    if len(data) > limits.max_bytes:
        raise UploadError(413, f"upload is {len(data):,} bytes; the limit is {limits.max_bytes:,}")
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as e:
        raise UploadError(413, f"image too large ({e})") from None
    except (UnidentifiedImageError, OSError):
        raise UploadError(415, "not an image this server reads (PNG, JPEG, BMP, TIFF, WebP, GIF, PPM)") from None
    if img.format not in FORMATS:
        raise UploadError(415, f"image format {img.format} is not accepted")
    if img.width * img.height > limits.max_pixels:
        raise UploadError(413, f"{img.width}x{img.height} pixels is over the {limits.max_pixels:,} pixel limit")
    try:
        img.load()
        return to_channels(image_to_array(img), in_channels, "upload")
    except DataError as e:
        raise UploadError(422, str(e)) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UploadError(422, f"the image could not be decoded ({e})") from None


class UploadError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def mask_png(mask: np.ndarray, num_classes: int) -> bytes:
    from unetkit.predict import save_mask

    buf = io.BytesIO()
    save_mask(mask, buf, num_classes)
    return buf.getvalue()


def busy() -> JSONResponse:
    return JSONResponse({"error": "busy: too many requests waiting"}, 503, headers={"Retry-After": "1"})


async def gated(gate: Gate, fn, *args):
    """Run fn(*args) in a worker thread once a slot is free: its result, or a 503/504 response."""
    if gate.full():
        return busy()
    gate.waiting += 1
    try:
        await gate.semaphore.acquire()
    finally:
        gate.waiting -= 1
    try:
        return await asyncio.wait_for(asyncio.to_thread(fn, *args), gate.limits.timeout_s)
    except TimeoutError:
        return JSONResponse({"error": f"inference took longer than {gate.limits.timeout_s:.0f} s"}, 504)
    finally:
        gate.semaphore.release()


def create_app(seg, limits: Limits | None = None, extra_info: dict | None = None):
    """The app around a Segmenter; `extra_info` joins GET /v1/model (the page reads its modes there)."""
    limits = limits or Limits()
    app = FastAPI(title="unetkit", version=__version__, description="U-Net segmentation of uploaded images")
    app.state.gate = Gate(limits)
    info = {**model_info(seg), **(extra_info or {})}

    @app.middleware("http")
    async def log_requests(request: Request, call_next):
        t = time.perf_counter()
        response = await call_next(request)
        size = request.headers.get("content-length", "0")
        ms = (time.perf_counter() - t) * 1000
        print(f"{request.method} {request.url.path} {response.status_code} {size} B {ms:.0f} ms", file=sys.stderr)
        return response

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "pid": os.getpid()}

    @app.get("/v1/model")
    def model() -> dict:
        return {**info, "limits": asdict(limits)}

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text()

    @app.post("/v1/predict")
    async def predict(
        image: Annotated[UploadFile, File()],
        format: Annotated[str, Query(pattern="^(png|json)$")] = "png",
        tta: bool = False,
    ):
        if app.state.gate.full():
            return busy()
        data = await image.read(limits.max_bytes + 1)
        try:
            array = read_upload(data, limits, seg.in_channels)
        except UploadError as e:
            return JSONResponse({"error": str(e)}, e.status)
        mask = await gated(app.state.gate, seg.predict, array, tta)
        if isinstance(mask, Response):
            return mask
        png = mask_png(mask, len(info["classes"]))
        if format == "png":
            return Response(png, media_type="image/png")
        counts = np.bincount(mask.ravel(), minlength=len(info["classes"]))
        total = int(mask.size)
        return {
            "width": int(mask.shape[1]),
            "height": int(mask.shape[0]),
            "classes": [
                {"name": n, "pixels": int(c), "fraction": float(c) / total}
                for n, c in zip(info["classes"], counts, strict=False)
            ],
            "mask_png_base64": base64.b64encode(png).decode(),
        }

    if seg.meta.interactive:
        from unetkit.serve_clicks import add_click_routes

        add_click_routes(app, seg, limits)
    return app
