"""What passes between Label Studio and the backend for one task: its image (fetched from where Label
Studio keeps it, bounded like serve's uploads), the smart keypoints of a request as clicks, and masks
as Label Studio results (brush RLE at the image's own size, or polygons in percent of it)."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass

import numpy as np

from unetkit.data.formats.geometry import trace
from unetkit.data.formats.labelstudio import mask_to_rle
from unetkit.interactive.clicks import Click
from unetkit.serve.http import Limits, UploadError, read_upload
from unetkit.serve.ls_config import LabelConfig

MAX_CLICKS = 100


@dataclass
class Source:
    """Where task images come from: Label Studio's own URLs (/data/upload/..., /data/local-files/...) are
    read from `url` with the API key; http(s) URLs as they are (the key only for Label Studio's host)."""

    url: str = ""  # Label Studio's address, e.g. http://127.0.0.1:8080 (--label-studio-url, or /setup's hostname)
    api_key: str = ""
    timeout_s: float = 10.0

    def resolve(self, ref: str) -> tuple[str, dict]:
        """A task's image reference -> (absolute URL, headers)."""
        if ref.startswith("/"):
            if not self.url:
                raise UploadError(422, f"{ref}: a Label Studio path, but no Label Studio URL is known; start the "
                                       "backend with --label-studio-url URL --api-key KEY")  # fmt: skip
            ref = self.url.rstrip("/") + ref
        parsed = urllib.parse.urlparse(ref)
        if parsed.scheme not in ("http", "https"):
            raise UploadError(422, f"{ref[:200]}: only http(s) image URLs and Label Studio's own paths are read")
        ours = self.url and urllib.parse.urlparse(self.url).netloc == parsed.netloc
        return ref, ({"Authorization": f"Token {self.api_key}"} if ours and self.api_key else {})

    def fetch(self, ref: str, limits: Limits) -> bytes:
        """The image's bytes, at most limits.max_bytes, within the timeout."""
        url, headers = self.resolve(ref)
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=self.timeout_s) as r:
                data = r.read(limits.max_bytes + 1)
        except urllib.error.HTTPError as e:
            raise UploadError(
                502, f"{url}: Label Studio answered {e.code} for the image (is --api-key right?)"
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise UploadError(502, f"{url}: the image could not be fetched ({e})") from None
        if len(data) > limits.max_bytes:
            raise UploadError(413, f"{url}: over the {limits.max_bytes:,}-byte limit")
        return data


def task_image(task: dict, config: LabelConfig, source: Source, limits: Limits, in_channels: int):
    """(image bytes, decoded float (H, W, C) array) of a task, checked as serve checks an upload."""
    ref = (task.get("data") or {}).get(config.value)
    if not isinstance(ref, str) or not ref:
        raise UploadError(422, f"task {task.get('id')}: no '{config.value}' field with the image's URL in its data")
    data = source.fetch(ref, limits)
    return data, read_upload(data, limits, in_channels)


def negative_label(name: str | None) -> bool:
    """A keypoint label the config names as negative: "negative", "background", or a leading "-" ("-1",
    "-car", as the SAM backend's configs alias them)."""
    n = (name or "").strip().lower()
    return n.startswith("-") or n in ("negative", "background", "neg", "bg")


def context_clicks(context: dict | None, h: int, w: int) -> tuple[list[Click], str | None]:
    """The smart keypoints of a request (percent of the image) as clicks in pixels: positive unless Label
    Studio marks them is_positive false or their label is a negative one (negative_label); and the label
    the first positive one carries."""
    clicks, label = [], None
    for r in (context or {}).get("result") or []:
        if r.get("type") != "keypointlabels":
            continue
        v = r.get("value") or {}
        try:
            x, y = float(v["x"]) * w / 100, float(v["y"]) * h / 100
        except (KeyError, TypeError, ValueError):
            raise UploadError(422, "a keypoint without x and y in percent of the image") from None
        name = next(iter(v.get("keypointlabels") or []), None)
        positive = bool(r.get("is_positive", True)) and not negative_label(name)
        clicks.append(Click(min(max(y, 0.0), h - 1), min(max(x, 0.0), w - 1), positive))
        label = label or (name if positive else None)
    if len(clicks) > MAX_CLICKS:
        raise UploadError(422, f"{len(clicks)} keypoints; at most {MAX_CLICKS} per request")
    return clicks, label


def mask_results(mask: np.ndarray, config: LabelConfig, label: str, score: float | None = None) -> list[dict]:
    """A mask as Label Studio result regions: one brush region (RLE at the image's size), or one polygon
    per connected part (traced along pixel edges, holes joined in; points in percent)."""
    h, w = mask.shape
    if not mask.any():
        return []
    base = {"from_name": config.output.name, "to_name": config.image, "original_width": w, "original_height": h,
            "image_rotation": 0, "type": config.kind}  # fmt: skip
    if score is not None:
        base["score"] = round(float(score), 4)
    if config.kind == "brushlabels":
        value = {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": [label]}
        return [{"id": uuid.uuid4().hex[:10], **base, "value": value}]
    out = []
    for ring in trace(mask):
        points = [[x * 100 / w, y * 100 / h] for x, y in zip(ring[0::2], ring[1::2], strict=True)]
        value = {"points": points, "closed": True, "polygonlabels": [label]}
        out.append({"id": uuid.uuid4().hex[:10], **base, "value": value})
    return out
