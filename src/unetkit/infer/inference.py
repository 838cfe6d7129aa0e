"""Image tensors in, native-resolution logits out: resizing, padding, tiling and flip TTA.

Shared by validation during training, `evaluate`, `predict` and the Python API, so the model is
always run the same way it was validated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from unetkit.data.imageio import resize_image
from unetkit.data.transforms import normalize
from unetkit.runtime import Runtime


@dataclass(frozen=True)
class InferenceSpec:
    """What a checkpoint records about how its model sees images."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str  # resize: the model runs at `size`; crop: at native resolution
    size: tuple[int, int]
    binary: bool
    threshold: float = 0.5
    tile: int = 1024  # crop mode: images with more than tile*tile pixels run in overlapping tiles
    overlap: float = 0.25
    tta_flips: tuple[int, ...] = (-1,)  # flip TTA: only the flips the model was trained with (-1 h, -2 v)
    extra_channels: int = 0  # click models: click and previous-mask channels, all zero = no clicks


def tta_flips_for(hflip: float, vflip: float, rot90: float) -> tuple[int, ...]:
    """Flips the training augmentation made the model see: a street scene upside down was never in
    training, and averaging over it drags predictions down."""
    flips = set()
    if hflip > 0:
        flips.add(-1)
    if vflip > 0:
        flips.add(-2)
    if rot90 > 0 and flips:  # rotations composed with one flip give the other
        flips |= {-1, -2}
    return tuple(sorted(flips, reverse=True))


def run_model(model, x: torch.Tensor, rt: Runtime, flips: tuple[int, ...] = ()) -> torch.Tensor:
    """x: (N, C, H, W) normalised -> (N, K, H, W) float32 logits, averaged over the given flips."""
    if rt.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with rt.autocast():
        out = model(x).float()
        for dim in flips:
            out = out + model(x.flip(dim)).float().flip(dim)
    return out / (1 + len(flips))


def gaussian_weights(h: int, w: int, device) -> torch.Tensor:
    """(h, w) weights peaking at the tile centre (sigma = size / 8), so seams blend smoothly."""
    ys = torch.arange(h, device=device, dtype=torch.float32) - (h - 1) / 2
    xs = torch.arange(w, device=device, dtype=torch.float32) - (w - 1) / 2
    wy = torch.exp(-(ys**2) / (2 * (h / 8) ** 2))
    wx = torch.exp(-(xs**2) / (2 * (w / 8) ** 2))
    weights = wy[:, None] * wx[None, :]
    return weights / weights.max() + 1e-3


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / stride) + 1
    return sorted({min(i * stride, length - tile) for i in range(n)})


def sliding_window(
    model, x: torch.Tensor, rt: Runtime, tile: int, overlap: float, flips: tuple[int, ...] = ()
) -> torch.Tensor:
    """(1, C, H, W) -> (1, K, H, W) logits from overlapping tiles blended with Gaussian weights."""
    _, _, h, w = x.shape
    th, tw = min(tile, h), min(tile, w)
    stride_h, stride_w = max(1, int(th * (1 - overlap))), max(1, int(tw * (1 - overlap)))
    weights = gaussian_weights(th, tw, x.device)
    out = acc = None
    for y in _starts(h, th, stride_h):
        for x0 in _starts(w, tw, stride_w):
            logits = run_model(model, x[:, :, y : y + th, x0 : x0 + tw], rt, flips)
            if out is None:
                out = torch.zeros(1, logits.shape[1], h, w, device=x.device)
                acc = torch.zeros(h, w, device=x.device)
            out[:, :, y : y + th, x0 : x0 + tw] += logits * weights
            acc[y : y + th, x0 : x0 + tw] += weights
    return out / acc


@torch.no_grad()
def predict_logits(model, images: torch.Tensor, spec: InferenceSpec, rt: Runtime, tta: bool = False) -> torch.Tensor:
    """images: (N, C, H, W) float in [0, 1], all one size -> (N, K, H, W) float32 logits."""
    n, _, h, w = images.shape
    x = images.float()
    if spec.resize == "resize":
        x = torch.stack([resize_image(im, spec.size) for im in x])
    x = normalize(x.to(rt.device), spec.mean, spec.std)
    if spec.extra_channels:  # a click model with no clicks and no previous mask: its automatic prediction
        x = torch.cat([x, x.new_zeros(x.shape[0], spec.extra_channels, *x.shape[-2:])], 1)
    flips = spec.tta_flips if tta else ()
    if spec.resize == "crop" and h * w > spec.tile * spec.tile:
        logits = torch.cat([sliding_window(model, x[i : i + 1], rt, spec.tile, spec.overlap, flips) for i in range(n)])
    else:
        logits = run_model(model, x, rt, flips)
    if logits.shape[-2:] != (h, w):
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return logits


def decode(logits: torch.Tensor, binary: bool, threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K, H, W) logits -> (probs, pred): probs (N, 1, H, W) the foreground probability for binary
    (one-logit) models, else (N, K, H, W) class probabilities; pred (N, H, W) uint8 class indices.
    The one place sigmoid or softmax, the threshold and argmax apply: predict, evaluate, the exported
    graphs, the click predictor and the server all call it (the graphs trace it)."""
    if binary:
        probs = torch.sigmoid(logits)
        return probs, foreground(probs[:, 0], threshold).to(torch.uint8)
    return torch.softmax(logits, 1), logits.argmax(1).to(torch.uint8)


def foreground(probs, threshold: float):
    """The binary decision on foreground probabilities kept as probabilities (a click session's map,
    tensor or array of any shape): strictly above the model's recorded threshold."""
    return probs > threshold


def postprocess(pred: np.ndarray, largest_component: bool = False, fill_holes: bool = False) -> np.ndarray:
    """Per class > 0: keep only its largest connected component and/or fill its holes."""
    if not (largest_component or fill_holes):
        return pred
    from scipy import ndimage

    out = pred.copy()
    for c in np.unique(pred):
        if c == 0:
            continue
        region = pred == c
        if largest_component:
            labels, n = ndimage.label(region)
            if n > 1:
                sizes = np.bincount(labels.ravel())[1:]
                keep = labels == (np.argmax(sizes) + 1)
                out[region & ~keep] = 0
                region = keep
        if fill_holes:
            filled = ndimage.binary_fill_holes(region)
            out[filled & (out == 0)] = c
    return out
