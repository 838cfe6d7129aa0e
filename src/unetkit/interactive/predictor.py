"""Click-guided inference: an image, its clicks and the previous mask -> a new foreground probability.

`ClickPredictor.probs` is stateless (what the HTTP API calls); `ClickSession` keeps the clicks and the
previous mask of one image, with undo and RITM's optional zoom-in (from the 2nd click on, predict on a
box around the current mask and positive clicks, x1.4 and at least 200 px, resized so its longer side
is the network's input size; the box is recomputed when a click falls outside it)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from unetkit.data.imageio import resize_image
from unetkit.data.transforms import normalize
from unetkit.errors import ConfigError
from unetkit.infer.inference import decode, foreground, run_model
from unetkit.interactive.clicks import RADIUS, Click, View, click_maps

ZOOM_EXPANSION = 1.4
ZOOM_MIN_SIZE = 200


class ClickPredictor:
    """A click model (a Segmenter whose checkpoint records clicks) ready for clicks."""

    def __init__(self, seg, view_size: int | None = None, first_zoom: float | None = None) -> None:
        if not seg.meta.interactive:
            raise ConfigError("this checkpoint is not a click model; train one with `unetkit train --interactive`")
        self.seg = seg
        self.radius = float(seg.meta.clicks.get("radius", RADIUS))
        self.threshold = seg.meta.click_threshold
        self.view_size = seg.meta.click_view_size if view_size is None else view_size
        self.first_zoom = seg.meta.click_first_zoom if first_zoom is None else first_zoom
        self._view: tuple | None = None  # (image, box, size, normalised view): the last one, reused per click

    def net_size(self, box: tuple[int, int, int, int], whole: bool) -> tuple[int, int]:
        """Resize-mode models see any box at their training size. Crop-mode models are fully
        convolutional: the box is scaled so its longer side is `view_size` (aspect kept); without one,
        the whole image stays at its own size and a zoomed box goes to the training size."""
        meta = self.seg.meta
        bh, bw = box[2] - box[0], box[3] - box[1]
        if meta.resize == "resize":
            return tuple(meta.size)
        if whole and not self.view_size:
            return bh, bw
        s = (self.view_size or max(meta.size)) / max(bh, bw)
        return max(1, round(bh * s)), max(1, round(bw * s))

    @torch.no_grad()
    def probs(self, image: torch.Tensor, clicks: list[Click], prev: np.ndarray | None = None, box=None) -> np.ndarray:
        """image (C, H, W) in [0, 1] -> (H, W) foreground probability; outside `box`, 0 (as RITM)."""
        seg = self.seg
        _, h, w = image.shape
        box = box or (0, 0, h, w)
        y0, x0, y1, x1 = box
        view = View(box, self.net_size(box, box == (0, 0, h, w)))
        x = self.normalized_view(image, box, view.size)
        maps = click_maps(clicks, view, self.radius)[None]
        p = torch.zeros(1, 1, *view.size)
        if prev is not None:
            crop = torch.from_numpy(np.ascontiguousarray(prev[y0:y1, x0:x1], dtype=np.float32))[None, None]
            p = F.interpolate(crop, size=view.size, mode="bilinear", align_corners=False)
        x = torch.cat([x, maps, p], 1).to(seg.rt.device)
        if getattr(seg.model, "training", False):  # training's validation hands over a model in train mode
            seg.model.eval()  # (only then: eval() walks all the click model's 162 modules)
        logits = run_model(seg.model, x, seg.rt)
        logits = F.interpolate(logits, size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False)
        out = np.zeros((h, w), np.float32)
        out[y0:y1, x0:x1] = decode(logits, True, self.threshold)[0][0, 0].cpu().numpy()
        return out

    def normalized_view(self, image: torch.Tensor, box, size) -> torch.Tensor:
        """The box of the image resized to the network's view and normalised: computed once per image,
        box and size (every click on an image asks for the same one), ~15% of a click at 512 px."""
        last = self._view
        if last is not None and last[0] is image and last[1] == box and last[2] == size:
            return last[3]
        y0, x0, y1, x1 = box
        x = normalize(resize_image(image[:, y0:y1, x0:x1].float(), size)[None], self.seg.meta.mean, self.seg.meta.std)
        self._view = (image, box, size, x)
        return x

    def session(self, image, zoom_in: bool = False) -> ClickSession:
        return ClickSession(self, self.seg.to_tensor(image), zoom_in)


def zoom_box(mask: np.ndarray, clicks: list[Click]) -> tuple[int, int, int, int] | None:
    """RITM's object ROI: the box of the mask and the positive clicks, x1.4, at least 200 px a side,
    inside the image; None when there is nothing to zoom on."""
    obj = mask.copy()
    for c in clicks:
        if c.positive:
            obj[int(c.y), int(c.x)] = True
    if not obj.any():
        return None
    h, w = obj.shape
    ys, xs = np.nonzero(obj)
    box = []
    for lo, hi, limit in ((ys.min(), ys.max(), h), (xs.min(), xs.max(), w)):
        size = max((hi - lo + 1) * ZOOM_EXPANSION, ZOOM_MIN_SIZE)
        centre = (lo + hi) / 2
        a = int(round(max(0, centre - size / 2)))
        b = int(round(min(limit, centre + size / 2)))
        box.append((a, max(b, a + 1)))
    return box[0][0], box[1][0], box[0][1], box[1][1]


def next_box(box, probs: np.ndarray, clicks: list[Click], threshold: float) -> tuple[int, int, int, int] | None:
    """RITM's zoom-in rule for the click just added (the last of `clicks`): from the 2nd click on, the box
    around the current mask (`probs`, before this click) and the positive clicks, kept while clicks land
    inside it; None (the whole image) before that or when there is nothing to zoom on."""
    if len(clicks) < 2:
        return None
    if box is not None and View(box, (1, 1)).contains(clicks[-1]):
        return box
    return zoom_box(foreground(probs, threshold), clicks)


def first_box(probs: np.ndarray, clicks: list[Click], threshold: float, share: float):
    """After the 1st click: when the object found is small in the image (its box's longer side below
    `share` of the image's), the zoom box around it (zoom_box: x1.4, at least 200 px), where the network
    sees it larger; None otherwise. A 400-pixel car in a 480x360 street scene is a 13-pixel blob in a
    320-pixel view of the whole image and 32 pixels in the box's."""
    if share <= 0 or len(clicks) != 1:
        return None
    mask = foreground(probs, threshold)
    ys, xs = np.nonzero(mask)
    extent = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) if len(ys) else 0
    if extent >= share * max(mask.shape):
        return None
    return zoom_box(mask, clicks)


def predict_click(predictor: ClickPredictor, image: torch.Tensor, clicks: list[Click], prev, prev_box, zoom: bool):
    """One click's prediction, the same for evaluate, serve and annotate: (probability map, the box it
    was predicted in or None). RITM's zoom-in (`zoom`) from the 2nd click; the model's first-click zoom
    (its checkpoint's first_zoom) after the 1st, with the whole image's prediction as the previous mask."""
    h, w = image.shape[-2:]
    box = next_box(prev_box, prev if prev is not None else np.zeros((h, w), np.float32), clicks,
                   predictor.threshold) if zoom else None  # fmt: skip
    probs = predictor.probs(image, clicks, prev, box)
    small = first_box(probs, clicks, predictor.threshold, predictor.first_zoom) if box is None else None
    if small is not None:
        return predictor.probs(image, clicks, probs, small), small
    return probs, box


@dataclass
class ClickSession:
    """The clicks on one image and the mask they give; each click re-predicts from the previous mask."""

    predictor: ClickPredictor
    image: torch.Tensor  # (C, H, W) in [0, 1]
    zoom_in: bool = False
    clicks: list[Click] = field(default_factory=list)
    history: list[np.ndarray] = field(default_factory=list)  # probabilities before each click
    box: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        self.probs = np.zeros(self.image.shape[-2:], np.float32)

    def add(self, click: Click) -> np.ndarray:
        self.history.append(self.probs)
        self.clicks.append(click)
        self.probs, self.box = predict_click(
            self.predictor, self.image, self.clicks, self.probs, self.box, self.zoom_in
        )
        return self.probs

    def undo(self) -> np.ndarray:
        if self.clicks:
            self.clicks.pop()
            self.probs = self.history.pop()
        return self.probs

    @property
    def mask(self) -> np.ndarray:
        return foreground(self.probs, self.predictor.threshold).astype(np.uint8)
