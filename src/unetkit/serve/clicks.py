"""`POST /v1/interactive`: one click-guided prediction, stateless. The client sends the image (or the
id of one it uploaded before, kept in a bounded cache), every click so far, and the previous
probability map the server returned; the answer is the new mask and probability map."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections import OrderedDict
from typing import Annotated

import numpy as np
import torch
from fastapi import File, Form, UploadFile
from fastapi.responses import JSONResponse, Response
from PIL import Image

from unetkit.infer.inference import foreground
from unetkit.interactive.clicks import Click
from unetkit.interactive.predictor import ClickPredictor
from unetkit.serve.http import Limits, UploadError, busy, gated, mask_png, read_sized_png, read_upload

MAX_CLICKS = 100


class ImageCache:
    """Decoded uploads by content hash, least recently used dropped beyond `max_images` or `max_bytes`.
    Kept as the (C, H, W) tensors the predictor takes, so a click reuses the same tensor (and the
    predictor its resized view) instead of converting the image again."""

    def __init__(self, max_images: int = 16, max_bytes: int = 512 * 2**20) -> None:
        self.max_images, self.max_bytes = max_images, max_bytes
        self.items: OrderedDict[str, torch.Tensor] = OrderedDict()

    def put(self, data: bytes, array: np.ndarray) -> str:
        key = hashlib.sha256(data).hexdigest()[:32]
        self.items[key] = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
        self.items.move_to_end(key)
        while len(self.items) > self.max_images or sum(a.nbytes for a in self.items.values()) > self.max_bytes:
            if len(self.items) == 1:
                break
            self.items.popitem(last=False)
        return key

    def get(self, key: str) -> torch.Tensor | None:
        array = self.items.get(key)
        if array is not None:
            self.items.move_to_end(key)
        return array


def parse_clicks(text: str, height: int, width: int) -> list[Click]:
    try:
        raw = json.loads(text)
        assert isinstance(raw, list) and len(raw) <= MAX_CLICKS
        clicks = [Click.from_dict(c) for c in raw]
    except (ValueError, TypeError, KeyError, AssertionError):
        raise UploadError(
            422, f'clicks: a JSON list of at most {MAX_CLICKS} {{"x": .., "y": .., "positive": true|false}}'
        ) from None
    for c in clicks:
        if not (0 <= c.y < height and 0 <= c.x < width):
            raise UploadError(422, f"click ({c.x}, {c.y}) is outside the {width}x{height} image")
    return clicks


def read_prev(data: bytes, height: int, width: int) -> np.ndarray:
    """The previous probability map as the 8-bit grey PNG this API returned."""
    return read_sized_png(data, width, height, "prev", mode="L").astype(np.float32) / 255.0


def png_b64(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)  # ~4x faster to write than level 6
    return base64.b64encode(buf.getvalue()).decode()


def add_click_routes(app, seg, limits: Limits) -> dict:
    """The add-on of click models (serve.app.KIND_ADD_ONS): POST /v1/interactive."""
    predictors = {id(seg): ClickPredictor(seg)}  # one per served model (annotate's learning swaps them)
    cache = ImageCache()

    def predictor_for(current) -> ClickPredictor:
        if id(current) not in predictors:
            predictors.clear()
            predictors[id(current)] = ClickPredictor(current)
        return predictors[id(current)]

    def segment(predictor, image: torch.Tensor, clicks: list[Click], prev: np.ndarray | None) -> np.ndarray:
        return predictor.probs(image, clicks, prev)

    @app.post("/v1/interactive")
    async def interactive(
        image: Annotated[UploadFile | None, File()] = None,
        image_id: Annotated[str, Form()] = "",
        clicks: Annotated[str, Form()] = "[]",
        prev: Annotated[UploadFile | None, File()] = None,
    ):
        if app.state.gate.full():
            return busy()
        predictor = predictor_for(app.state.served.seg)
        try:
            if image is not None:
                data = await image.read(limits.max_bytes + 1)
                image_id = cache.put(data, read_upload(data, limits, seg.in_channels))
            array = cache.get(image_id)
            if array is None:
                raise UploadError(404, "unknown or expired image_id: send the image again")
            h, w = array.shape[1:]
            click_list = parse_clicks(clicks, h, w)
            prev_map = read_prev(await prev.read(limits.max_bytes + 1), h, w) if prev is not None else None
        except UploadError as e:
            return JSONResponse({"error": str(e)}, e.status)
        probs = await gated(app.state.gate, segment, predictor, array, click_list, prev_map)
        if isinstance(probs, Response):
            return probs
        mask = foreground(probs, predictor.threshold).astype(np.uint8)
        return {
            "image_id": image_id,
            "width": w,
            "height": h,
            "clicks": len(click_list),
            "foreground_fraction": float(mask.mean()),
            "mask_png_base64": base64.b64encode(mask_png(mask, 2)).decode(),
            "probs_png_base64": png_b64((probs * 255).round().astype(np.uint8)),
        }

    return {}
