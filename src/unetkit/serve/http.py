"""What every route shares: request limits (bytes, pixels, concurrency, time), the gate that bounds
running and waiting requests (beyond it: 503 with Retry-After, never unbounded memory), and uploads
checked before they are decoded and sniffed by content."""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from fastapi.responses import JSONResponse  # this package is imported only by `serve` and `annotate`
from PIL import Image, UnidentifiedImageError

from unetkit.data.imageio import image_to_array, to_channels
from unetkit.errors import DataError
from unetkit.infer.predict import save_mask
from unetkit.runtime import release_openmp_threads

FORMATS = {"PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF", "PPM"}


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    slots: int = 1  # concurrent inferences
    queue: int = 8  # requests waiting for a slot before 503
    timeout_s: float = 60.0


class Served:
    """The model the routes run, replaceable while serving (annotate's learning swaps in a better one).
    A route reads `.seg` once per request, so no request mixes two models."""

    def __init__(self, seg) -> None:
        self.seg = seg
        self.route = None  # learning's per-picture routing (serve/routing.py Router), or none

    def pick(self, image):
        """The model for this picture: the served one, or where learning routes pictures, the base or
        the retrained one (read once per request, as `.seg`)."""
        route = self.route
        return self.seg if route is None else route.pick(image, self.seg)


class Gate:
    """At most `slots` requests run and `queue` wait; the rest are turned away at once. They run on
    `slots` threads of the gate's own, ended when the app shuts down, each letting its OpenMP team go
    after a request: an idle team in one thread slows torch in every other (runtime.release_openmp_threads).
    Not where the network runs on an engine's own threads (release_openmp=False): there torch only
    resizes, and a team made again each request took time from the engine's threads on 2 cores."""

    def __init__(self, limits: Limits, release_openmp: bool = True) -> None:
        self.limits, self.release_openmp = limits, release_openmp
        self.semaphore = asyncio.Semaphore(limits.slots)
        self.waiting = 0
        self.pool = ThreadPoolExecutor(limits.slots, thread_name_prefix="unetkit-inference")

    def full(self) -> bool:
        return self.semaphore.locked() and self.waiting >= self.limits.queue


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


MAX_MASK_BYTES = 64 * 2**20


def read_sized_png(data: bytes, width: int, height: int, what: str, mode: str | None = None) -> np.ndarray:
    """A mask-like upload (a mask, a previous probability map) that must be a single-channel PNG of
    exactly width x height: its header is checked before any pixel is decoded, so a decompression
    bomb is a 413/422, never a 500."""
    expected = f"{what}: a single-channel PNG of {width}x{height} is expected"
    if len(data) > MAX_MASK_BYTES:
        raise UploadError(413, f"{what}: over {MAX_MASK_BYTES:,} bytes; {expected[len(what) + 2 :]}")
    try:
        img = Image.open(io.BytesIO(data))  # the header only
    except Image.DecompressionBombError:
        raise UploadError(413, f"{what}: the PNG claims too many pixels; {expected[len(what) + 2 :]}") from None
    except (UnidentifiedImageError, OSError):
        raise UploadError(422, f"{what}: not a readable PNG") from None
    modes = (mode,) if mode else ("L", "P", "1", "I", "I;16")
    if img.format != "PNG" or img.size != (width, height) or img.mode not in modes:
        raise UploadError(422, expected + f" (got {img.format} {img.mode} {img.width}x{img.height})")
    try:
        return np.asarray(img)
    except (OSError, SyntaxError, ValueError) as e:
        raise UploadError(422, f"{what}: the PNG could not be decoded ({e})") from None


class UploadError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def mask_png(mask: np.ndarray, num_classes: int, compress_level: int = 6) -> bytes:
    buf = io.BytesIO()
    save_mask(mask, buf, num_classes, compress_level)
    return buf.getvalue()


def busy() -> JSONResponse:
    return JSONResponse({"error": "busy: too many requests waiting"}, 503, headers={"Retry-After": "1"})


def then_release(fn, *args):
    """fn(*args), then this thread's OpenMP workers let go: an idle team left behind would slow every
    other thread's torch work (runtime.release_openmp_threads); the next request's costs microseconds."""
    try:
        return fn(*args)
    finally:
        release_openmp_threads()


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
        run = (then_release, fn) if gate.release_openmp else (fn,)
        work = asyncio.get_running_loop().run_in_executor(gate.pool, *run, *args)
        return await asyncio.wait_for(work, gate.limits.timeout_s)
    except TimeoutError:
        return JSONResponse({"error": f"inference took longer than {gate.limits.timeout_s:.0f} s"}, 504)
    finally:
        gate.semaphore.release()
