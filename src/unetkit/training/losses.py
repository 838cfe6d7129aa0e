"""Losses as pure functions of (logits, target). Pixels labelled IGNORE count in none of them.

Binary models have one logit channel (sigmoid); multi-class models one per class (softmax).
logits: (N, C, H, W); target: long (N, H, W) with class indices or IGNORE.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from unetkit.config import LossConfig
from unetkit.data.imageio import IGNORE


def _probs_and_onehot(logits: torch.Tensor, target: torch.Tensor):
    """(probs, one-hot target, valid) as (N, K, H, W), (N, K, H, W), (N, 1, H, W); K >= 2."""
    valid = (target != IGNORE).unsqueeze(1)
    t = torch.where(valid.squeeze(1), target, torch.zeros_like(target))
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        probs = torch.cat([1 - p, p], 1)
        k = 2
    else:
        probs = torch.softmax(logits, 1)
        k = logits.shape[1]
    onehot = F.one_hot(t, k).permute(0, 3, 1, 2).to(probs.dtype)
    return probs, onehot, valid.to(probs.dtype)


def cross_entropy(logits, target, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    if logits.shape[1] == 1:
        valid = target != IGNORE
        t = (target == 1).to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits[:, 0], t, reduction="none")
        if class_weights is not None:
            loss = loss * torch.where(t > 0, class_weights[1], class_weights[0])
        return (loss * valid).sum() / valid.sum().clamp_min(1)
    return F.cross_entropy(logits, target, weight=class_weights, ignore_index=IGNORE)


def soft_dice(logits, target, smooth: float = 1.0) -> torch.Tensor:
    """1 - mean over classes of the batch soft Dice; binary: the foreground class only."""
    probs, onehot, valid = _probs_and_onehot(logits, target)
    dims = (0, 2, 3)
    inter = (probs * onehot * valid).sum(dims)
    denom = (probs * valid).sum(dims) + (onehot * valid).sum(dims)
    dice = (2 * inter + smooth) / (denom + smooth)
    if logits.shape[1] == 1:
        return 1 - dice[1]
    return 1 - dice.mean()


def focal(logits, target, gamma: float = 2.0, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    probs, onehot, valid = _probs_and_onehot(logits, target)
    pt = (probs * onehot).sum(1, keepdim=True).clamp(1e-6, 1.0)
    loss = -((1 - pt) ** gamma) * pt.log()
    if class_weights is not None:
        loss = loss * (onehot * class_weights.view(1, -1, 1, 1)).sum(1, keepdim=True)
    return (loss * valid).sum() / valid.sum().clamp_min(1)


def median_frequency_weights(pixels: torch.Tensor, image_pixels: torch.Tensor) -> torch.Tensor:
    """Class weights median(f) / f_c, f_c = pixels of class c / pixels of the images containing c
    (Eigen & Fergus 2015; SegNet's CamVid recipe): rare classes such as poles and signs count as
    much as road and sky. A class absent from the training masks gets weight 1."""
    present = pixels > 0
    freq = pixels.double() / image_pixels.double().clamp_min(1)
    weights = torch.ones_like(freq)
    if present.any():
        weights[present] = freq[present].median() / freq[present]
    return weights.float()


LOSSES: dict[str, Callable] = {"ce": cross_entropy, "dice": soft_dice, "focal": focal}


def make_loss(cfg: LossConfig, num_classes: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A loss function of (logits, target) combining the named terms with their weights."""
    weights = None
    if cfg.class_weights:
        if len(cfg.class_weights) != num_classes:
            raise ValueError(
                f"class_weights: {len(cfg.class_weights)} given for {num_classes} classes; give one per class"
            )
        weights = torch.tensor(cfg.class_weights, dtype=torch.float32)
    terms = cfg.loss.split("+")

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        w = weights.to(logits.device) if weights is not None else None
        total = logits.new_zeros(())
        for term in terms:
            if term == "ce":
                total = total + cfg.ce_weight * cross_entropy(logits, target, w)
            elif term == "focal":
                total = total + cfg.ce_weight * focal(logits, target, cfg.focal_gamma, w)
            else:
                total = total + cfg.dice_weight * soft_dice(logits, target)
        return total

    return loss_fn
