"""`POST /v1/interactive`: one click-guided prediction. The client sends the image (or the id of one
it uploaded before, kept in a bounded cache), every click so far, and the previous probability map the
server returned, as the PNG (stateless) or by the `probs_id` the answer gave (the page: no PNG to
encode, upload and decode per click); the answer is the new mask, the map's id and, unless
`return_probs=false`, the map as a PNG. With zoom-in (ClickOptions, or the request's `zoom_in`), from the
2nd click on the model sees a box around the object (RITM's rule, interactive/predictor.py): small objects
at a useful scale. The box is kept with the map it produced, so a map sent back by id carries it on; a
map uploaded as a PNG gets a box computed afresh."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from fastapi import File, Form, UploadFile
from fastapi.responses import JSONResponse, Response
from PIL import Image

from unetkit.infer.inference import foreground
from unetkit.interactive.clicks import Click
from unetkit.interactive.predictor import ClickPredictor, predict_click
from unetkit.serve.http import Limits, UploadError, busy, gated, mask_png, read_sized_png, read_upload

MAX_CLICKS = 100
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ClickOptions:
    """How a served click model takes clicks (`serve` / `annotate --zoom-in/--no-zoom-in`). zoom_in: RITM's
    zoom-in, never worse than the whole view where measured and better on small objects: ISBI cells after a
    600 s fine-tune, NoC@90 12.3 against 13.9 (a one-off check, in git history; docs/clicks.md)."""

    zoom_in: bool = True


class ImageCache:
    """Decoded uploads by content hash, least recently used dropped beyond `max_images` or `max_bytes`.
    Kept as the (C, H, W) tensors the predictor takes, so a click reuses the same tensor (and the
    predictor its resized view) instead of converting the image again. With each image, the last
    `maps_per_image` probability maps returned for it (8-bit, as the PNG would carry them): a client
    may send one back by its id instead of uploading the PNG (the page does; undo goes back by id)."""

    def __init__(self, max_images: int = 16, max_bytes: int = 512 * 2**20, maps_per_image: int = 32) -> None:
        self.max_images, self.max_bytes, self.maps_per_image = max_images, max_bytes, maps_per_image
        self.items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.maps: dict[str, OrderedDict[str, tuple[np.ndarray, Box | None]]] = {}

    def put(self, data: bytes, array: np.ndarray) -> str:
        key = hashlib.sha256(data).hexdigest()[:32]
        self.items[key] = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
        self.items.move_to_end(key)
        self.maps.setdefault(key, OrderedDict())
        self._bound()
        return key

    def get(self, key: str) -> torch.Tensor | None:
        array = self.items.get(key)
        if array is not None:
            self.items.move_to_end(key)
        return array

    def keep_map(self, key: str, probs8: np.ndarray, box: Box | None = None) -> str:
        """Remember a returned map of image `key` and the zoom box it was predicted in; its id."""
        maps = self.maps[key]
        map_id = secrets.token_hex(8)
        maps[map_id] = (probs8, box)
        maps.move_to_end(map_id)
        while len(maps) > self.maps_per_image:
            maps.popitem(last=False)
        self._bound()
        return map_id

    def get_map(self, key: str, map_id: str) -> tuple[np.ndarray, Box | None] | None:
        return self.maps.get(key, {}).get(map_id)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.items.values()) + sum(
            m.nbytes for v in self.maps.values() for m, _ in v.values()
        )

    def _bound(self) -> None:
        while len(self.items) > 1 and (len(self.items) > self.max_images or self.nbytes() > self.max_bytes):
            key, _ = self.items.popitem(last=False)
            self.maps.pop(key, None)


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


def read_inputs(cache: ImageCache, image_id: str, clicks: str, prev: bytes | None, prev_id: str):
    """The cached image, its clicks, the previous map (uploaded, or by the id a response gave) and the
    zoom box that map was predicted in (None: the whole image, or not known)."""
    array = cache.get(image_id)
    if array is None:
        raise UploadError(404, "unknown or expired image_id: send the image again")
    h, w = array.shape[1:]
    click_list = parse_clicks(clicks, h, w)
    if prev is not None:
        return array, click_list, read_prev(prev, h, w), None
    if not prev_id:
        return array, click_list, None, None
    kept = cache.get_map(image_id, prev_id)
    if kept is None:
        raise UploadError(404, "unknown or expired prev_id: send the previous map as the prev PNG, or none")
    return array, click_list, kept[0].astype(np.float32) / 255.0, kept[1]


def png_b64(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)  # ~4x faster to write than level 6
    return base64.b64encode(buf.getvalue()).decode()


def segment(
    predictor: ClickPredictor, image: torch.Tensor, clicks: list[Click], prev: np.ndarray | None, prev_box, zoom: bool
) -> tuple[np.ndarray, Box | None]:
    """(the new probability map, the box it was predicted in): RITM's zoom-in from the box the previous
    map had, and the model's first-click zoom, as every caller predicts (predictor.predict_click)."""
    return predict_click(predictor, image, clicks, prev, prev_box, zoom)


def add_click_routes(app, seg, limits: Limits) -> dict:
    """The add-on of click models (serve.app.KIND_ADD_ONS): POST /v1/interactive."""
    predictors = {id(seg): ClickPredictor(seg)}  # one per served model (annotate's learning swaps them)
    cache = ImageCache()
    options: ClickOptions = app.state.click_options  # create_app's

    def predictor_for(current) -> ClickPredictor:
        if id(current) not in predictors:
            if len(predictors) >= 2:  # the served model and, with learning's routing, the base one
                predictors.clear()
            predictors[id(current)] = ClickPredictor(current)
        return predictors[id(current)]

    @app.post("/v1/interactive")
    async def interactive(
        image: Annotated[UploadFile | None, File()] = None,
        image_id: Annotated[str, Form()] = "",
        clicks: Annotated[str, Form()] = "[]",
        prev: Annotated[UploadFile | None, File()] = None,
        prev_id: Annotated[str, Form()] = "",
        return_probs: Annotated[bool, Form()] = True,
        zoom_in: Annotated[bool | None, Form()] = None,
    ):
        if app.state.gate.full():
            return busy()
        try:
            if image is not None:
                data = await image.read(limits.max_bytes + 1)
                image_id = cache.put(data, read_upload(data, limits, seg.in_channels))
            prev_data = await prev.read(limits.max_bytes + 1) if prev is not None else None
            array, click_list, prev_map, prev_box = read_inputs(cache, image_id, clicks, prev_data, prev_id)
        except UploadError as e:
            return JSONResponse({"error": str(e)}, e.status)
        zoom = options.zoom_in if zoom_in is None else zoom_in
        served = app.state.served.seg
        predictor = predictor_for(app.state.served.pick(array))
        done = await gated(app.state.gate, segment, predictor, array, click_list, prev_map, prev_box, zoom)
        if isinstance(done, Response):
            return done
        probs, box = done
        mask = foreground(probs, predictor.threshold).astype(np.uint8)
        probs8 = (probs * 255).round().astype(np.uint8)
        h, w = mask.shape
        out = {
            "image_id": image_id,
            "width": w,
            "height": h,
            "clicks": len(click_list),
            "foreground_fraction": float(mask.mean()),
            "mask_png_base64": base64.b64encode(mask_png(mask, 2, compress_level=1)).decode(),
            "probs_id": cache.keep_map(image_id, probs8, box),
            "box": list(box) if box else None,  # y0, x0, y1, x1 of the zoom-in, or none (the whole image)
            # learning's routing gave this picture to the model annotate started with, not the retrained one
            "model": "starting" if predictor.seg is not served else "served",
        }
        if return_probs:
            out["probs_png_base64"] = png_b64(probs8)
        return JSONResponse(out)

    return {}
